"""Where a path's dataset files are: a file, a save_to_disk folder, a folder of shards, a glob."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import LabelLintError
from ..files import read_error, read_json, regular, stat_path

PARQUET = (".parquet", ".pq")
ARROW = (".arrow", ".feather", ".ipc")
JSONL = (".jsonl", ".json", ".ndjson")
COMPRESSED = (".gz", ".bz2")
# JSON files a dataset folder holds that are not rows (Hugging Face snapshots, save_to_disk).
METADATA = frozenset({"dataset_info.json", "dataset_infos.json", "state.json",
                      "dataset_dict.json", "config.json"})
MAX_DEPTH = 8  # folders below the path given that are searched for datasets
GLOB = re.compile(r"[*?\[]")


def file_format(path: Path) -> str | None:
    name = path.name.lower()
    for compressed in COMPRESSED:
        name = name.removesuffix(compressed)
    suffix = Path(name).suffix
    if suffix in PARQUET and name == path.name.lower():
        return "parquet"
    if suffix in ARROW and name == path.name.lower():
        return "arrow"
    if suffix in JSONL:
        return "jsonl"
    return None


def _plain_name(value: Any, path: Path, key: str) -> str:
    """A name of a file or folder directly inside the dataset's folder, nothing else."""
    if (not isinstance(value, str) or not value or value in (".", "..") or "/" in value
            or "\\" in value or "\0" in value or os.path.isabs(value)):
        raise LabelLintError(f"{path}: {key} {value!r} is not the plain name of a file or "
                             "folder beside it")
    return value


@dataclass(frozen=True)
class Located:
    """One source a path names: its data files and the metadata files read to find them."""

    name: str
    files: tuple[Path, ...]
    save_to_disk: bool = False
    metadata: tuple[Path, ...] = ()


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError as e:
        raise read_error(folder, e) from None


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return False


def _dataset_files(folder: Path) -> list[Path]:
    """The data files directly in `folder`. A `.json` file counts only where it is the only
    kind there: beside shards it is metadata (dataset_infos.json, a config).

    An entry named as data that is neither a file nor a folder (a FIFO, a socket, a dangling
    symbolic link) is refused, not passed over: its rows would be missing from the check
    without a word. A folder named like a file (Spark's `x.parquet/`) is a folder.
    """
    files = []
    for p in _entries(folder):
        if not file_format(p):
            continue
        try:
            mode = os.stat(p).st_mode
        except OSError:
            stat_path(p)  # says why
            raise
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode):
            regular(p)
        files.append(p)
    data = [p for p in files if not is_plain_json(p)]
    return data or [p for p in files if p.name.lower() not in METADATA]


def is_plain_json(path: Path) -> bool:
    name = path.name.lower()
    for compressed in COMPRESSED:
        name = name.removesuffix(compressed)
    return name.endswith(".json")


def _save_to_disk(folder: Path) -> Located:
    """A `Dataset.save_to_disk` folder: the Arrow files its state.json lists, in order."""
    state_path = folder / "state.json"
    state = read_json(state_path)
    listed = state.get("_data_files")
    if not isinstance(listed, list) or not listed:
        raise LabelLintError(f"{state_path}: no `_data_files` list naming the Arrow files")
    files = []
    for entry in listed:
        if not isinstance(entry, dict) or "filename" not in entry:
            raise LabelLintError(f"{state_path}: a `_data_files` entry without a `filename`: "
                                 f"{json.dumps(entry)[:100]}")
        file = folder / _plain_name(entry["filename"], state_path, "filename")
        regular(file)
        files.append(file)
    return Located(str(folder), tuple(files), save_to_disk=True, metadata=(state_path,))


def _dataset_dict(folder: Path) -> list[Located]:
    """A `DatasetDict.save_to_disk` folder: one save_to_disk folder per split, named in
    dataset_dict.json. A split is the plain name of a folder beside it: `.` or `..` would read
    the dict again (and again)."""
    meta = folder / "dataset_dict.json"
    splits = read_json(meta).get("splits")
    if not isinstance(splits, list) or not splits:
        raise LabelLintError(f"{meta}: no `splits` list naming the split folders")
    out = []
    for split in splits:
        name = _plain_name(split, meta, "split")
        if splits.count(split) > 1:
            raise LabelLintError(f"{meta}: split {split!r} is listed {splits.count(split)} times")
        sub = folder / name
        if not _is_dir(sub):
            stat_path(sub)
            raise LabelLintError(f"{sub}: split {name!r} of {meta} is not a folder")
        if not (sub / "state.json").exists():
            raise LabelLintError(f"{sub}: split {name!r} has no state.json (not a save_to_disk "
                                 "folder)")
        found = _save_to_disk(sub)
        out.append(replace(found, metadata=(meta, *found.metadata)))
    return out


def locate(path: Path, *, depth: int = 0, seen: frozenset = frozenset()) -> list[Located]:
    """Where the data of a file, folder or glob is: every file each of its sources reads.

    `seen` holds the folders above (device, inode): a symbolic link back up is a loop, refused.
    """
    if not str(path):
        raise LabelLintError("an empty path names no file or folder")
    if GLOB.search(str(path)) and not os.path.lexists(path):
        return [_glob(path)]
    st = stat_path(path)
    if not stat.S_ISDIR(st.st_mode):
        return [_data_file(path)]
    key = (st.st_dev, st.st_ino)
    if key in seen:
        raise LabelLintError(f"{path}: a folder that contains itself (a symbolic link loop)")
    seen = seen | {key}
    if os.path.lexists(path / "dataset_dict.json"):
        return _dataset_dict(path)
    if os.path.lexists(path / "state.json"):
        return [_save_to_disk(path)]
    shards = _dataset_files(path)
    if shards:
        return [Located(str(path), tuple(shards))]
    nested = _nested(path, depth=depth, seen=seen)
    if not nested:
        raise LabelLintError(f"{path}: no dataset here (no save_to_disk state.json, "
                             "no parquet, arrow or jsonl files)")
    return nested


def _data_file(path: Path) -> Located:
    """A path that is not a folder: one data file of a format labellint reads."""
    if file_format(path) is None:
        raise LabelLintError(f"{path}: unknown format "
                             f"{''.join(path.suffixes) or '(no suffix)'}; labellint reads "
                             "parquet, arrow, feather, jsonl (.gz) and save_to_disk folders")
    regular(path)
    return Located(str(path), (path,))


def _nested(path: Path, *, depth: int, seen: frozenset) -> list[Located]:
    """A repository layout (data/train/, data/test/): each folder below holding a dataset,
    down to MAX_DEPTH folders."""
    nested: list[Located] = []
    if depth < MAX_DEPTH:
        for sub in _entries(path):
            if sub.name.startswith(".") or not _is_dir(sub) or not _holds_dataset(sub):
                continue
            nested += locate(sub, depth=depth + 1, seen=seen)
    return nested


def input_files(path: str | os.PathLike) -> list[Path]:
    """Every file that reading `path` reads (data and metadata), for writers to keep off."""
    return [f for found in locate(Path(path)) for f in (*found.metadata, *found.files)]


def _holds_dataset(folder: Path, depth: int = 3) -> bool:
    if os.path.lexists(folder / "state.json") or os.path.lexists(folder / "dataset_dict.json"):
        return True
    try:
        if _dataset_files(folder):
            return True
    except LabelLintError:
        return True  # reading it says what is wrong there
    return depth > 0 and any(_holds_dataset(sub, depth - 1) for sub in _entries(folder)
                             if not sub.name.startswith(".") and _is_dir(sub))


def _glob_parts(pattern: str) -> tuple[str, list[str]]:
    """The folder a pattern starts from (no wildcard in it) and the parts that follow."""
    parts = pattern.split(os.sep)
    fixed = next(i for i, p in enumerate(parts) if GLOB.search(p))
    root = os.sep.join(parts[:fixed]) or ("" if not pattern.startswith(os.sep) else os.sep)
    return root, parts[fixed:]


def _matches(parts: list[str], names: list[str]) -> bool:
    """glob's rules for one path: `**` is any number of folders, `*` never starts a hidden
    name."""
    if not parts:
        return not names
    if parts[0] == "**":
        return any(_matches(parts[1:], names[i:]) for i in range(len(names) + 1)
                   if not any(n.startswith(".") for n in names[:i]))
    return (bool(names) and not (names[0].startswith(".") and not parts[0].startswith("."))
            and fnmatch.fnmatchcase(names[0], parts[0]) and _matches(parts[1:], names[1:]))


def _glob(pattern: Path) -> Located:
    """A glob's data files, found without following symbolic links to folders.

    glob.glob follows them under `**`, so two links back up make it walk 2^40 paths (a hang);
    links to files are followed as any file is.
    """
    root, parts = _glob_parts(str(pattern))
    depth = len(parts) if "**" not in parts else None
    found = []
    for folder, dirs, files in os.walk(root or ".", followlinks=False):
        rel = os.path.relpath(folder, root or ".")
        names = [] if rel == "." else rel.split(os.sep)
        if depth is not None and len(names) >= depth - 1:
            dirs[:] = []
        for entry in files:  # a FIFO or a dangling link is among them: _regular refuses it
            full = Path(os.path.normpath(os.path.join(folder, entry)))
            if _matches(parts, [*names, entry]) and file_format(full):
                found.append(full)
    if not found:
        raise LabelLintError(f"{pattern}: no parquet, arrow or jsonl file matches")
    for f in found:
        regular(f)
    return Located(str(pattern), tuple(sorted(found)))


def glob_root(pattern: str) -> str:
    """The folder a glob pattern's files are found from (its part before any wildcard)."""
    return _glob_parts(pattern)[0] or "."
