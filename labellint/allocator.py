"""The C allocator's thresholds, raised so that chunk-sized scratch arrays are reused."""

from __future__ import annotations

import sys

_done = False


def keep_freed_memory() -> None:
    """Let glibc reuse freed chunk-sized blocks instead of returning them to the system.

    By default arrays over 128 KB are mmap-ed and unmapped when freed, so each chunk's scratch
    arrays fault their pages in again: about 45% of a check's time on a fresh process. Raising
    the thresholds (once per process; the command, its workers and `check` alike) keeps up to a
    few chunks' worth of freed memory for reuse.
    """
    global _done
    if _done:
        return
    _done = True
    import ctypes

    if not sys.platform.startswith("linux"):
        return
    try:
        # The process's own symbols, which hold libc's: ctypes.util.find_library would run
        # ldconfig in a subprocess, tens of milliseconds of start-up.
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: its defaults stand
