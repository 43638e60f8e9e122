"""Running one `labellint.check` in a fresh process: its time, and the memory of its processes.

Each measurement is a process of its own, so that peak RSS is that run's alone (a child
inherits its parent's peak RSS across fork and exec, so the measuring process stays small).
Memory is sampled every 5 ms over the checking process and its worker processes together:
anonymous memory (the processes' own) and file-backed resident memory (mapped file pages,
which labellint lets go after each chunk). Peak RSS is the kernel's figure for the checking
process, and for its largest worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHECK = """
import json, os, resource, sys, threading, time
import labellint
from labellint.hf_facts import load_tokenizer
args = json.loads(sys.argv[1])
tokenizer = load_tokenizer(args["tokenizer"]) if args["tokenizer"] else None
peak, anon, done = {"RssAnon": 0, "RssFile": 0}, [], threading.Event()
def status(pid):
    out = {}
    try:
        for line in open(f"/proc/{pid}/status"):
            key = line.split(":")[0]
            if key in peak:
                out[key] = int(line.split()[1])
    except OSError:
        pass
    return out
def children():
    out = []
    for task in os.listdir("/proc/self/task"):
        try:
            out += open(f"/proc/self/task/{task}/children").read().split()
        except OSError:
            pass
    return out
def sample():
    while not done.wait(0.005):
        now = [status("self"), *map(status, children())]
        total = {k: sum(s.get(k, 0) for s in now) for k in peak}
        for k, v in total.items():
            peak[k] = max(peak[k], v)
        anon.append(total["RssAnon"])
threading.Thread(target=sample, daemon=True).start()
t0 = time.perf_counter()
report = labellint.check(args["path"], tokenizer, jobs=args["jobs"], **args["facts"])
t1 = time.perf_counter()
done.set()
print(json.dumps({
    "check_s": t1 - t0, "tokens": sum(s.tokens for s in report.sources),
    "anon_gb": peak["RssAnon"] / 2**20, "file_gb": peak["RssFile"] / 2**20,
    "anon_median_gb": sorted(anon)[len(anon) // 2] / 2**20 if anon else 0.0,
    "worker_rss_gb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20,
    "findings": {f.code: [f.count_rows, list(f.rows)] for f in report.findings}}))
"""


def measure(argv: list[str]) -> dict:
    """Run a command; its JSON output, wall time and peak RSS (from the kernel's rusage)."""
    env = dict(os.environ, PYTHONPATH=str(HERE), HF_HUB_OFFLINE="1")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        _, status, rusage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"{argv[:3]} failed: {stderr.decode()[-2000:]}")
    result = json.loads(stdout) if stdout.strip().startswith(b"{") else {}
    result["wall_s"] = wall
    result["rss_gb"] = rusage.ru_maxrss / 2**20
    return result


def check_run(path: Path, *, jobs: int, facts: dict, tokenizer: Path | None = None) -> dict:
    """`labellint.check(path, tokenizer, jobs=jobs, **facts)` in a fresh process, the tokenizer
    loaded before the clock starts."""
    args = {"path": str(path), "jobs": jobs, "facts": facts,
            "tokenizer": str(tokenizer) if tokenizer else None}
    return measure([sys.executable, "-c", CHECK, json.dumps(args)])
