"""Run `labellint.cli.main` on many argument lists in a child process, surviving hangs and
crashes: a read that blocks or a segfault inside pyarrow must fail the case, not pytest."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

CHILD = r"""
import contextlib, io, json, os, signal, sys
os.environ["HF_HUB_OFFLINE"] = "1"
from labellint import cli

class Hung(BaseException):
    pass

def alarm(*_):
    raise Hung()

signal.signal(signal.SIGALRM, alarm)
per_case = float(sys.argv[1])
for line in sys.stdin:
    case = json.loads(line)
    print(json.dumps({"start": case["id"]}), flush=True)
    err, out = io.StringIO(), io.StringIO()
    signal.setitimer(signal.ITIMER_REAL, per_case)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            rc = cli.main(case["argv"])
    except Hung:
        rc = "hung"
    except SystemExit as e:
        rc = e.code
    except BaseException as e:
        rc = f"raised {type(e).__name__}: {e}"
    signal.setitimer(signal.ITIMER_REAL, 0)
    print(json.dumps({"id": case["id"], "rc": rc, "stderr": err.getvalue()}), flush=True)
"""


@dataclass
class Outcome:
    rc: object  # an exit code, "hung", "raised ...", or "killed by signal N"
    stderr: str


def _pump(stream, put) -> None:
    for line in stream:
        put(line)
    put(None)


def run_cases(cases: dict[str, list[str]], *, per_case: float = 10.0,
              cwd: Path | None = None) -> dict[str, Outcome]:
    """Each case's exit code and stderr. A case that kills the child, or that blocks inside C
    code where the alarm cannot reach it, is recorded, and the cases after it run in a fresh
    child."""
    results: dict[str, Outcome] = {}
    todo = list(cases)
    while todo:
        proc, messages, errors = _start_child(cases, todo, per_case=per_case, cwd=cwd)
        started = _read_outcomes(proc, messages, results, todo, per_case=per_case)
        _record_exit(proc.wait(), started, errors, results, todo)
        todo = [k for k in todo if k not in results]
    return results


def _start_child(cases: dict[str, list[str]], todo: list[str], *, per_case: float,
                 cwd: Path | None) -> tuple[subprocess.Popen, queue.Queue, list[str]]:
    """A child running the cases in `todo`; its stdout lines arrive on the queue (None at its
    end) and its stderr lines in the list, both read by threads so that neither pipe fills."""
    lines = "".join(json.dumps({"id": k, "argv": [str(a) for a in cases[k]]}) + "\n"
                    for k in todo)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(per_case)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    messages: queue.Queue = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, messages.put), daemon=True).start()
    errors: list[str] = []
    threading.Thread(target=_pump, args=(proc.stderr, errors.append), daemon=True).start()
    proc.stdin.write(lines)
    proc.stdin.close()
    return proc, messages, errors


def _read_outcomes(proc: subprocess.Popen, messages: queue.Queue, results: dict[str, Outcome],
                   todo: list[str], *, per_case: float) -> str | None:
    """Record the child's outcomes until it ends, hangs, or has run every case in `todo`; the
    case it was inside when it stopped, if any."""
    started, limit = None, per_case + 60  # the first case pays the start-up
    while not all(k in results for k in todo):
        try:
            line = messages.get(timeout=limit)
        except queue.Empty:  # blocked where the alarm does not reach: kill it
            proc.kill()
            proc.wait()
            if started is not None:
                results[started] = Outcome("hung", "")
            break
        if line is None:
            break
        msg = _message(line)
        if "start" in msg:
            started, limit = msg["start"], per_case + 5
        elif "id" in msg:
            results[msg["id"]] = Outcome(msg["rc"], msg["stderr"])
            started = None
    return started


def _message(line: str) -> dict:
    """One of the child's messages; {} for a case's own output that escaped the redirect (a C
    library's)."""
    try:
        msg = json.loads(line)
    except ValueError:
        return {}
    return msg if isinstance(msg, dict) else {}


def _record_exit(code: int, started: str | None, errors: list[str],
                 results: dict[str, Outcome], todo: list[str]) -> None:
    """A child that died inside a case fails that case; one that failed outside any case
    fails the run, since no case can be blamed."""
    if started is not None and started not in results:  # the child died inside this case
        results[started] = Outcome(f"killed by signal {-code}",
                                   "".join(e for e in errors if e)[-500:])
    elif not all(k in results for k in todo) and code != 0 and started is None:
        tail = "".join(e for e in errors if e)[-2000:]
        raise RuntimeError(f"the child failed outside any case: {tail}")
