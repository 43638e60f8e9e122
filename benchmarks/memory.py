"""labellint's memory on every input form, at two sizes: is it bounded, whatever the size?

    python benchmarks/memory.py [--tokens 30e6 300e6] [--data /tmp/labellint-memory] [--infer]

Builds (or reuses) the synthetic dataset at each size as a save_to_disk folder, four parquet
shards, one parquet file and one Arrow IPC file, then checks each with `labellint.check(path)`
in a fresh process: peak RSS (the kernel's rusage), peak anonymous and file-backed resident
memory (sampled from /proc/self/status; anon also its median over the run) and time. Memory
that is bounded is the same at both sizes: the last lines are anon at the largest size over
anon at the smallest.
`measure_memory(tokens, data_dir)` is the measurement, for other benchmarks to call.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FORMS = ("save_to_disk", "parquet", "single.parquet", "single.arrow")

CHECK = """
import json, sys, threading, time
import labellint
if sys.argv[3] == "cli":
    from labellint.cli import _keep_freed_memory
    _keep_freed_memory()  # as `labellint check` does in its own process, and bench.py
peak, done = {"RssAnon": 0, "RssFile": 0}, threading.Event()
anon = []
def sample():
    while not done.wait(0.005):
        for line in open("/proc/self/status"):
            key = line.split(":")[0]
            if key in peak:
                peak[key] = max(peak[key], int(line.split()[1]))
                if key == "RssAnon":
                    anon.append(int(line.split()[1]))
threading.Thread(target=sample, daemon=True).start()
facts = json.loads(sys.argv[2])
t0 = time.perf_counter()
report = labellint.check(sys.argv[1], **facts)
t1 = time.perf_counter()
done.set()
print(json.dumps({"check_s": t1 - t0, "tokens": report.sources[0].tokens,
                  "anon_gb": peak["RssAnon"] / 2**20,
                  "anon_median_gb": sorted(anon)[len(anon) // 2] / 2**20 if anon else 0.0,
                  "file_gb": peak["RssFile"] / 2**20,
                  "findings": {f.code: f.count_rows for f in report.findings}}))
"""

GIVEN = {"eos_id": 2, "bos_id": 1, "pad_id": 0, "vocab_size": 32000}  # as bench.py gives them


def build(tokens: float, data_dir: Path) -> Path:
    """The dataset of `tokens` tokens in every form, built in a process of its own (a child
    inherits its parent's peak RSS, so this process must stay small)."""
    out = data_dir / f"{int(tokens / 1e6)}M"
    if not all((out / f).exists() for f in ("sft", "parquet", "single.parquet", "single.arrow")):
        subprocess.run([sys.executable, str(HERE / "synthetic.py"), str(int(tokens)), str(out),
                        "--single"], check=True)
    return out


def _run(path: Path, facts: dict, allocator: str) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", CHECK, str(path), json.dumps(facts),
                                 allocator],
                                stdout=out, stderr=err, env=env)
        _, status, rusage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"checking {path} failed: {stderr.decode()[-2000:]}")
    return {**json.loads(stdout), "wall_s": wall, "rss_gb": rusage.ru_maxrss / 2**20}


def measure_memory(tokens: float, data_dir: Path, *, infer: bool = False,
                   forms: tuple[str, ...] = FORMS, allocator: str = "cli") -> list[dict]:
    """Check the `tokens`-token dataset in each form in a fresh process; a row per form with
    its peak RSS, peak anon and file-backed resident memory (GB), times and findings.
    infer: give no facts (they are inferred from the data) rather than bench.py's.
    allocator: "cli" sets glibc's thresholds as `labellint check` does (and bench.py's CHECK);
    "default" leaves them, as a host process calling labellint.check would."""
    out = build(tokens, data_dir)
    paths = {"save_to_disk": out / "sft", "parquet": out / "parquet",
             "single.parquet": out / "single.parquet", "single.arrow": out / "single.arrow"}
    return [{"form": form, "tokens_planned": tokens, "facts": "inferred" if infer else "given",
             **_run(paths[form], {} if infer else GIVEN, allocator)} for form in forms]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=float, nargs="+", default=[30e6, 300e6])
    p.add_argument("--data", type=Path, default=Path("/tmp/labellint-memory"))
    p.add_argument("--infer", action="store_true", help="give no facts: infer them")
    p.add_argument("--allocator", choices=("cli", "default"), default="cli",
                   help="glibc's thresholds as the CLI sets them, or its defaults")
    p.add_argument("--forms", nargs="+", default=list(FORMS), choices=FORMS)
    args = p.parse_args()
    rows = [r for t in args.tokens
            for r in measure_memory(t, args.data, infer=args.infer, forms=tuple(args.forms),
                                    allocator=args.allocator)]
    print(f"\n{os.cpu_count()} cores, facts {'inferred' if args.infer else 'given'}, "
          f"allocator {args.allocator}\n")
    print(f"{'form':<16}{'M tokens':>10}{'check s':>9}{'M tok/s':>9}{'peak RSS GB':>13}"
          f"{'anon GB':>9}{'median':>8}{'file GB':>9}")
    for r in rows:
        print(f"{r['form']:<16}{r['tokens'] / 1e6:>10.0f}{r['check_s']:>9.1f}"
              f"{r['tokens'] / r['check_s'] / 1e6:>9.1f}{r['rss_gb']:>13.2f}"
              f"{r['anon_gb']:>9.2f}{r['anon_median_gb']:>8.2f}{r['file_gb']:>9.2f}")
    small, large = min(args.tokens), max(args.tokens)
    for form in args.forms:
        a = {r["tokens_planned"]: r["anon_gb"] for r in rows if r["form"] == form}
        if small != large:
            print(f"{form}: anon at {large / 1e6:.0f}M / anon at {small / 1e6:.0f}M = "
                  f"{a[large] / a[small]:.2f}")


if __name__ == "__main__":
    main()
