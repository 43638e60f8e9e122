"""Worker processes for the parts of a source: a Partial per part, or a fixed file each."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import warnings
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterator, Sequence, TypeVar

from . import engine
from .allocator import keep_freed_memory
from .errors import LabelLintError
from .partial import Partial, merge, shifted
from .sources import PartReader

T = TypeVar("T")

# The work of the pool being run: forked workers inherit it, so that nothing but a part's
# number goes to a worker and nothing but its Partial comes back (no rule, facts or data is
# serialised, and a rule defined in a notebook works in a worker too).
_WORK: tuple[engine.Prepared, Sequence[PartReader]] | None = None
# One pool at a time per process: checks from several threads take turns (_WORK is the pool's).
_POOL_LOCK = threading.Lock()
_IN_WORKER = False  # a worker checks its parts itself: a check inside a rule forks no pool


def can_fork() -> bool:
    """Whether parts can go to forked workers from here: not inside a worker itself."""
    return not _IN_WORKER and "fork" in multiprocessing.get_all_start_methods()


def default_jobs() -> int:
    """Every core this process may run on, as ruff does, on Linux; elsewhere 1, since forking
    is unsafe on macOS (its system libraries) and missing on Windows."""
    if not sys.platform.startswith("linux"):
        return 1
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_parts(prepared: engine.Prepared, parts: Sequence[PartReader], *, jobs: int,
                progress: Callable[[int, int], None] | None = None) -> Partial:
    """The merged Partial of every part, checked by up to `jobs` forked worker processes.

    Each part is checked as if it started at row 0 and renumbered here once the rows of the
    parts before it are known, so the result is the one pass's, whatever the number of jobs.
    A part that fails raises its error (of the parts failed by then, the first in the source's
    order) and the parts not yet started are cancelled; a worker that dies
    (killed, out of memory) fails the check with one line naming a part it was reading.
    """
    with _POOL_LOCK:
        return _check_parts(prepared, parts, jobs, progress)


def _check_parts(prepared: engine.Prepared, parts: Sequence[PartReader], jobs: int,
                 progress: Callable[[int, int], None] | None) -> Partial:
    global _WORK
    _WORK = (prepared, parts)
    try:
        with _quiet_fork():
            pool = ProcessPoolExecutor(max_workers=max(1, min(jobs, len(parts))),
                                       mp_context=multiprocessing.get_context("fork"),
                                       initializer=_start_worker)
            futures = [pool.submit(_check, i) for i in range(len(parts))]
        try:
            results = _collect(futures, parts, prepared.source, progress)
        except BaseException:
            _stop(pool)  # a failed part or Ctrl-C: the rest of the check is not wanted
            raise
        pool.shutdown()
    finally:
        _WORK = None
    rows, out = 0, []
    for partial in results:
        out.append(shifted(partial, rows))
        rows += partial.rows
    return merge(*out)


# The task of a map_forked pool: forked workers inherit it, so only an index goes to a worker.
_TASK: Callable[[int], object] | None = None


def map_forked(task: Callable[[int], T], count: int, *, jobs: int,
               name: Callable[[int], str]) -> list[T]:
    """task(0), ..., task(count - 1) in up to `jobs` forked workers, the results in order.

    The workers are check's (same start, same quiet fork, same stop): a failing task raises
    its error (the first in order of those failed by then) and the tasks not yet started are
    cancelled; a worker that dies fails with one line naming a task it left unfinished.
    """
    global _TASK
    with _POOL_LOCK:
        _TASK = task
        try:
            with _quiet_fork():
                pool = ProcessPoolExecutor(max_workers=max(1, min(jobs, count)),
                                           mp_context=multiprocessing.get_context("fork"),
                                           initializer=_start_worker)
                futures = [pool.submit(_run_task, i) for i in range(count)]
            try:
                wait(futures, return_when=FIRST_EXCEPTION)
                failed = [i for i, f in enumerate(futures) if f.done() and f.exception()]
                if failed:
                    error = futures[failed[0]].exception()
                    if isinstance(error, BrokenProcessPool):
                        raise LabelLintError(
                            f"a worker process died while working on {name(failed[0])} "
                            "(killed, or out of memory); --jobs 1 works in this process") \
                            from None
                    raise error
                results = [f.result() for f in futures]
            except BaseException:
                _stop(pool)
                raise
            pool.shutdown()
        finally:
            _TASK = None
    return results


def _run_task(index: int) -> object:
    assert _TASK is not None, "a worker is forked with its task"
    return _TASK(index)


def _collect(futures: list, parts: Sequence[PartReader], source: str,
             progress: Callable[[int, int], None] | None) -> list[Partial]:
    pending = set(futures)
    while pending:
        done, pending = wait(pending, return_when=FIRST_EXCEPTION)
        failed = [f for f in futures if f.done() and f.exception() is not None]
        if failed:
            for f in pending:
                f.cancel()
            first = failed[0]
            error = first.exception()
            if isinstance(error, BrokenProcessPool):
                unfinished = next(i for i, f in enumerate(futures) if not f.done()
                                  or f.exception() is not None)
                raise LabelLintError(
                    f"{source}: a worker process died while checking {parts[unfinished][0]} "
                    "(killed, or out of memory); --jobs 1 checks in this process") from None
            raise error
        if progress is not None:
            for f in done:
                progress(f.result().rows, f.result().tokens)
    return [f.result() for f in futures]


def _stop(pool: ProcessPoolExecutor) -> None:
    """End the pool soon: its queued parts cancelled, only the parts already being checked
    (a few hundred milliseconds each) let finish. A worker is not terminated mid-part: one
    killed while writing its result to the queue could leave the pool's reader waiting
    forever on half a message."""
    pool.shutdown(wait=True, cancel_futures=True)


def _start_worker() -> None:
    global _IN_WORKER
    _IN_WORKER = True
    # Ctrl-C reaches every process of the group: the parent stops the check, and a worker
    # printing its own KeyboardInterrupt traceback would only bury the one line.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    keep_freed_memory()
    # The workers are the parallelism: Arrow's own decoding threads, one pool per worker,
    # would only contend with the other workers for the cores.
    import pyarrow

    pyarrow.set_cpu_count(1)


def _check(index: int) -> Partial:
    assert _WORK is not None, "a worker is forked with its work"
    prepared, parts = _WORK
    # A part maps its file afresh and lets the map go at its end, and a part is about one chunk
    # (at least chunk_rows rows): a worker's file pages stay bounded without release_pages.
    return engine.check_part(prepared, parts[index][1](), part=index, row_start=0)


@contextlib.contextmanager
def _quiet_fork() -> Iterator[None]:
    """Forking without the warnings that do not apply to these workers.

    The tokenizers library warns in each forked child when its thread pool was used before the
    fork, unless TOKENIZERS_PARALLELISM is set: the workers never tokenize, so it is set for
    them (their environment is copied at the fork) and put back for this process. Python 3.12+
    warns that forking a process with threads may deadlock a child that takes a lock one of
    them held: the workers run numpy and Arrow (whose thread pools are re-made after a fork),
    and this process's own threads (read-ahead) are stopped first.
    """
    key = "TOKENIZERS_PARALLELISM"
    saved = os.environ.get(key)
    if saved is None:
        os.environ[key] = "false"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning,
                                    message=".*fork.*")
            yield
    finally:
        if saved is None:
            os.environ.pop(key, None)
