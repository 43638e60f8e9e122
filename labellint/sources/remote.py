"""Dataset files behind a URL (s3://, gs://, hf://, memory://), reached through fsspec.

A URL is read through the filesystem fsspec names for its scheme, which the user installs
(s3fs, gcsfs, huggingface_hub): labellint requires none of them, and a missing one is one line
naming the package. Reads go through the file object in ranges (parquet: the footer, then each
row group's projected column chunks; Arrow: batch by batch; JSON Lines: block by block), so
memory is bounded by a row group or a block, never the whole file. `file://` is not read here:
it is a local path, read as one (mapped, in parts for worker processes).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ..errors import LabelLintError
from ..files import JSON_BYTES
from .locate import GLOB, MAX_DEPTH, METADATA, Located, file_format, is_plain_json

URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
# Packages whose filesystem a scheme needs when fsspec's own message names none.
PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "hf": "huggingface_hub",
            "az": "adlfs", "abfs": "adlfs", "abfss": "adlfs"}
BLOCK_BYTES = 8 << 20  # a remote file's read-ahead: a range request per 8 MiB read


def is_url(source: Any) -> bool:
    """A string with a scheme of two letters or more (`C://` stays a Windows drive)."""
    return isinstance(source, str) and URL.match(source) is not None


def local_path(url: str) -> str | None:
    """The local path a `file://` URL names; None for any other scheme."""
    if not url.lower().startswith("file://"):
        return None
    path = url[len("file://"):]
    if not path.startswith("/"):
        raise LabelLintError(f"{url}: a file:// URL names an absolute path (file:///data/x)")
    return path


def _failure(url: str, error: BaseException) -> LabelLintError:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return LabelLintError(f"{url}: cannot read it ({reason[:300]})")


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem of `url` and the path in it; a missing package is one line."""
    scheme = URL.match(url).group(1).lower()
    try:
        from fsspec.core import url_to_fs
    except ImportError:
        raise LabelLintError(f"{url}: reading a URL needs fsspec "
                             f"(pip install fsspec{_package(scheme, ' ')})") from None
    try:
        return url_to_fs(url)
    except ImportError as e:
        if scheme in PACKAGES:
            raise LabelLintError(f"{url}: reading {scheme}:// needs the {PACKAGES[scheme]} "
                                 f"package (pip install {PACKAGES[scheme]})") from None
        raise LabelLintError(f"{url}: reading {scheme}:// needs a package that is not "
                             f"installed ({str(e).strip().splitlines()[0]})") from None
    except ValueError as e:
        if "protocol not known" in str(e).lower():
            raise LabelLintError(f"{url}: {scheme}:// is not a filesystem fsspec knows") from None
        raise _failure(url, e) from None
    except Exception as e:  # a filesystem's own: credentials, configuration, the network
        raise _failure(url, e) from None


def _package(scheme: str, sep: str) -> str:
    return f"{sep}{PACKAGES[scheme]}" if scheme in PACKAGES else ""


class _Guarded:
    """A remote file object whose every failure is an OSError naming the URL.

    Filesystem packages raise their own errors (botocore's, aiohttp's, the hub's): the readers
    turn an OSError into one line, and nothing else a remote read raises escapes as a traceback.
    """

    def __init__(self, file: BinaryIO, url: str) -> None:
        self._file, self._url = file, url
        self.closed = False

    def _call(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self._file, name)(*args)
        except OSError:
            raise
        except Exception as e:
            raise OSError(f"{type(e).__name__}: {e}") from None

    def read(self, n: int = -1) -> bytes:
        return self._call("read", n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._call("seek", offset, whence)

    def tell(self) -> int:
        return self._call("tell")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._call("close")

    def __enter__(self) -> _Guarded:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclass(frozen=True)
class RemoteFile:
    """One file behind a URL: what a reader opens, and what messages name (the URL).

    A worker process forked to read a part opens the file through a filesystem of its own,
    made again from the URL: an fsspec filesystem's sessions (s3fs', gcsfs') are not safe to
    use across a fork (fsspec's async ones refuse to).
    """

    fs: Any
    path: str
    url: str
    pid: int = field(default_factory=os.getpid, compare=False)

    def filesystem(self) -> Any:
        if self.pid == os.getpid():
            return self.fs
        return filesystem(self.url)[0]  # fsspec caches instances per process

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))

    def __str__(self) -> str:
        return self.url

    def open(self, cache: str = "readahead") -> _Guarded:
        """The file for reading in ranges, read only (the mode is "rb", always).

        cache: fsspec's cache type; "readahead" turns the many small reads of a stream (JSON
        blocks, Arrow message headers) into a request per BLOCK_BYTES, "none" leaves each
        read a range request of its own (parquet asks for whole column chunks).
        """
        try:
            file = self.filesystem().open(self.path, "rb", block_size=BLOCK_BYTES,
                                          cache_type=cache)
        except FileNotFoundError:
            raise LabelLintError(f"{self.url}: no such file") from None
        except Exception as e:
            raise _failure(self.url, e) from None
        return _Guarded(file, self.url)

    def native(self, cache: str = "readahead") -> Any:
        """The file as pyarrow's random-access file, for the parquet and Arrow readers."""
        import pyarrow as pa

        return pa.PythonFile(self.open(cache), mode="r")

    def read_json(self) -> dict:
        """A small JSON object (state.json, dataset_dict.json), as files.read_json reads one."""
        with self.open() as f:
            try:
                raw = f.read(JSON_BYTES + 1)
            except OSError as e:
                raise _failure(self.url, e) from None
        if len(raw) > JSON_BYTES:
            raise LabelLintError(f"{self.url}: over {JSON_BYTES >> 20} MiB, too large for "
                                 "metadata")
        try:
            value = json.loads(raw.decode("utf-8-sig"))
        except (ValueError, RecursionError) as e:
            raise LabelLintError(f"{self.url}: not valid JSON "
                                 f"({str(e).splitlines()[0][:200]})") from None
        if not isinstance(value, dict):
            raise LabelLintError(f"{self.url}: holds a JSON {type(value).__name__}, "
                                 "not an object")
        return value


class _Tree:
    """Listings of one filesystem, each failure one line naming the URL."""

    def __init__(self, fs: Any, root: str, url: str) -> None:
        self.fs, self.root, self.url = fs, root, url.rstrip("/") or url

    def url_of(self, path: str) -> str:
        if path.startswith(self.root):
            return self.url + path[len(self.root):]
        return self.fs.unstrip_protocol(path)

    def file(self, path: str) -> RemoteFile:
        return RemoteFile(self.fs, path, self.url_of(path))

    def info(self, path: str) -> dict | None:
        try:
            return self.fs.info(path)
        except FileNotFoundError:
            return None
        except Exception as e:
            raise _failure(self.url_of(path), e) from None

    def entries(self, path: str) -> list[dict]:
        try:
            return sorted(self.fs.ls(path, detail=True), key=lambda e: e["name"])
        except Exception as e:
            raise _failure(self.url_of(path), e) from None

    def glob(self, pattern: str) -> list[str]:
        try:
            return sorted(self.fs.glob(pattern))
        except Exception as e:
            raise _failure(self.url, e) from None


def _plain(value: Any, where: RemoteFile, key: str) -> str:
    if not isinstance(value, str) or not value or value in (".", "..") or "/" in value \
            or "\\" in value or "\0" in value:
        raise LabelLintError(f"{where}: {key} {value!r} is not the plain name of a file or "
                             "folder beside it")
    return value


def _save_to_disk(tree: _Tree, folder: str) -> Located:
    state = tree.file(posixpath.join(folder, "state.json"))
    listed = state.read_json().get("_data_files")
    if not isinstance(listed, list) or not listed:
        raise LabelLintError(f"{state}: no `_data_files` list naming the Arrow files")
    files = []
    for entry in listed:
        if not isinstance(entry, dict) or "filename" not in entry:
            raise LabelLintError(f"{state}: a `_data_files` entry without a `filename`")
        file = tree.file(posixpath.join(folder, _plain(entry["filename"], state, "filename")))
        if (tree.info(file.path) or {}).get("type") != "file":
            raise LabelLintError(f"{file}: no such file (listed in {state})")
        files.append(file)
    return Located(tree.url_of(folder), tuple(files), save_to_disk=True, metadata=(state,))


def _dataset_dict(tree: _Tree, folder: str) -> list[Located]:
    meta = tree.file(posixpath.join(folder, "dataset_dict.json"))
    splits = meta.read_json().get("splits")
    if not isinstance(splits, list) or not splits:
        raise LabelLintError(f"{meta}: no `splits` list naming the split folders")
    if len(set(map(str, splits))) != len(splits):
        raise LabelLintError(f"{meta}: a split is listed twice")
    return [_save_to_disk(tree, posixpath.join(folder, _plain(s, meta, "split")))
            for s in splits]


def _data_files(tree: _Tree, entries: list[dict]) -> list[RemoteFile]:
    """As locate's: a `.json` file counts only where no other kind of data file is there."""
    files = [tree.file(e["name"]) for e in entries
             if e.get("type") == "file" and file_format(tree.file(e["name"]))]
    data = [f for f in files if not is_plain_json(f)]
    return data or [f for f in files if f.name.lower() not in METADATA]


def _locate(tree: _Tree, path: str, depth: int) -> list[Located]:
    entries = tree.entries(path)
    names = {posixpath.basename(e["name"].rstrip("/")) for e in entries}
    if "dataset_dict.json" in names:
        return _dataset_dict(tree, path)
    if "state.json" in names:
        return [_save_to_disk(tree, path)]
    shards = _data_files(tree, entries)
    if shards:
        return [Located(tree.url_of(path), tuple(shards))]
    nested: list[Located] = []
    if depth < MAX_DEPTH:
        for e in entries:
            base = posixpath.basename(e["name"].rstrip("/"))
            if e.get("type") == "directory" and not base.startswith("."):
                try:
                    nested += _locate(tree, e["name"], depth + 1)
                except _NoDataset:
                    continue
    if not nested:
        raise _NoDataset(f"{tree.url_of(path)}: no dataset here (no save_to_disk state.json, "
                         "no parquet, arrow or jsonl files)")
    return nested


class _NoDataset(LabelLintError):
    pass


def locate_remote(url: str) -> list[Located]:
    """Where the data behind `url` is, as `locate` finds it on a local path: a file, a glob,
    a save_to_disk or DatasetDict folder, a folder of shards, or folders of them."""
    fs, root = filesystem(url)
    tree = _Tree(fs, root, url)
    if GLOB.search(root):
        found = [tree.file(p) for p in tree.glob(root)]
        found = [f for f in found if file_format(f) and
                 (tree.info(f.path) or {}).get("type") == "file"]
        if not found:
            raise LabelLintError(f"{url}: no parquet, arrow or jsonl file matches")
        return [Located(url, tuple(found))]
    info = tree.info(root)
    if info is None:
        raise LabelLintError(f"{url}: no such file or folder")
    if info.get("type") == "directory":
        return _locate(tree, root, 0)
    file = RemoteFile(fs, root, url)
    if info.get("type") != "file":
        raise LabelLintError(f"{url}: a {info.get('type')}, not a data file")
    if file_format(file) is None:
        raise LabelLintError(f"{url}: unknown format; labellint reads parquet, arrow, feather, "
                             "jsonl (.gz) and save_to_disk folders")
    return [Located(url, (file,))]
