"""Opening the files labellint reads: regular files only, so that no read blocks or runs away.

A FIFO would block a read forever, a device never ends, and some devices act when opened: every
file is stat-ed first, opened non-blocking, and checked again on its descriptor. A memory-mapped
file's pages are let go as its chunks are checked (`release_pages`), so that what stays resident
does not grow with the file.
"""

from __future__ import annotations

import errno
import json
import mmap
import os
import stat
import threading
import weakref
from pathlib import Path
from typing import Any

import pyarrow as pa

from .errors import LabelLintError

JSON_BYTES = 1 << 26  # a state.json or config.json past this is not metadata


def read_error(path: Path, error: Exception) -> LabelLintError:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return LabelLintError(f"{path}: cannot read it ({reason})")


_NOT_REGULAR = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"))


def stat_path(path: Path) -> os.stat_result:
    """os.stat (through symbolic links), with one line for each way a path fails."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise LabelLintError(f"{path}: a symbolic link to {os.readlink(path)}, which does "
                                 "not exist") from None
        raise LabelLintError(f"{path}: no such file or folder") from None
    except OSError as e:
        reason = {errno.ELOOP: "a symbolic link loop",
                  errno.ENAMETOOLONG: "the name is too long for the file system (255 bytes a "
                                      f"name, {len(os.fsencode(path.name))} here)",
                  errno.ENOTDIR: "no such file or folder (a part of the path is a file)",
                  errno.EACCES: "permission denied"}.get(e.errno, e.strerror or str(e))
        raise LabelLintError(f"{path}: {reason}") from None


def _kind_of(mode: int) -> str:
    return next((name for test, name in _NOT_REGULAR if test(mode)), "not a regular file")


def regular(path: Path, what: str = "a data file") -> os.stat_result:
    """The stat of a regular file; anything else is refused, naming what it is."""
    st = stat_path(path)
    if not stat.S_ISREG(st.st_mode):
        raise LabelLintError(f"{path}: {_kind_of(st.st_mode)}, not {what}; labellint reads "
                             "regular files only")
    return st


def open_fd(path: Path) -> int:
    """A read-only descriptor of a regular file; anything else is refused before it is opened.

    A FIFO would block the read forever and a device never ends, and opening some devices has
    effects of its own: hence the stat first. The open is non-blocking and the descriptor is
    checked again, so a file swapped for a FIFO in between cannot block it either.
    """
    regular(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise read_error(path, e) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise LabelLintError(f"{path}: {_kind_of(st.st_mode)}, not a data file")
    return fd


# The maps `mapped` made that are still open, held weakly: a map closes when the last array
# over it goes, and then drops out of here.
_MAPS: list[weakref.ref] = []
_MAPS_LOCK = threading.Lock()


def _new_lock_in_child() -> None:
    global _MAPS_LOCK
    _MAPS_LOCK = threading.Lock()  # one held by another thread at a fork is never released


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_in_child)


def mapped(path: Path) -> pa.Buffer:
    """The whole file, memory-mapped (read-only, zero-copy for Arrow).

    Its pages stay in the process once read; `release_pages` lets them go.
    """
    fd = open_fd(path)
    try:
        if os.fstat(fd).st_size == 0:
            raise LabelLintError(f"{path}: the file is empty")
        file_map = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as e:
        raise read_error(path, e) from None
    finally:
        os.close(fd)  # the map keeps its own reference to the file
    with _MAPS_LOCK:
        _MAPS[:] = [m for m in _MAPS if m() is not None]
        _MAPS.append(weakref.ref(file_map))
    return pa.py_buffer(file_map)


def release_pages() -> None:
    """Take every open map's pages out of the process, as after each chunk is checked.

    A mapped file's pages, once read, count in the process's resident memory until the map is
    closed: a whole file's worth by its end. The maps are shared and read-only, so a page let go
    is still in the kernel's page cache and is read from it again, unchanged, if an array over
    it is used again: letting go is always safe, and only costs time when a page is read twice
    (a chunk read ahead). Through the map object, never a bare address: a closed map raises
    instead of advising memory that may since belong to something else.
    """
    advice = getattr(mmap, "MADV_DONTNEED", None)  # absent where the OS has no madvise
    with _MAPS_LOCK:
        maps = [m() for m in _MAPS] if advice is not None else []
    for file_map in maps:
        if file_map is None:
            continue
        try:
            file_map.madvise(advice)
        except (OSError, ValueError):
            pass  # closed meanwhile: its pages went with it


def read_json(path: Path, wanted: type = dict) -> Any:
    """A small JSON file (state.json, dataset_dict.json, a model's config.json), decoded and of
    the `wanted` type (`object` for any).

    A UTF-8 BOM is accepted: datasets writes none, but an editor may add one, and it changes
    nothing in what the file says.
    """
    fd = open_fd(path)
    with os.fdopen(fd, "rb") as f:
        try:
            raw = f.read(JSON_BYTES + 1)
        except OSError as e:
            raise read_error(path, e) from None
    if len(raw) > JSON_BYTES:
        raise LabelLintError(f"{path}: over {JSON_BYTES >> 20} MiB, too large for metadata")
    try:
        value = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise LabelLintError(f"{path}: not UTF-8 (byte {e.start})") from None
    except (ValueError, RecursionError) as e:
        raise LabelLintError(f"{path}: not valid JSON ({str(e).splitlines()[0][:200]})") from None
    if not isinstance(value, wanted):
        raise LabelLintError(f"{path}: holds a JSON {type(value).__name__}, not an object")
    return value
