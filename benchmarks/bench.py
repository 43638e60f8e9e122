"""labellint's speed and memory on a synthetic SFT dataset, in one run.

    python benchmarks/bench.py [--tokens 80e6] [--data /tmp/labellint-bench]

Builds the dataset once (seeded; reused when present), then measures, each in a fresh process
so that peak RSS is that run's alone:
  - `labellint check` on the save_to_disk folder and on the parquet shards: wall time of the
    whole command, and the time inside `check` (without interpreter start-up and imports),
    with its peak anonymous memory (peak RSS also counts the mapped file's pages);
  - pyarrow's own read of the same parquet columns;
  - a naive per-row Python checker of the same rules, on a slice, as tokens/s.
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
sys.path.insert(0, str(HERE))

CHECK = """
import json, sys, threading, time
t0 = time.perf_counter()
import labellint
from labellint.cli import _keep_freed_memory
_keep_freed_memory()  # as `labellint check` does in its own process
# Peak RSS also counts mapped file pages (let go after each chunk, files.release_pages); the
# process's own memory is the anonymous part, sampled here.
anon, done = [0], threading.Event()
def sample():
    while not done.wait(0.005):
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                anon[0] = max(anon[0], int(line.split()[1]))
threading.Thread(target=sample, daemon=True).start()
t1 = time.perf_counter()
report = labellint.check(sys.argv[1], eos_id=2, bos_id=1, pad_id=0, vocab_size=32000)
t2 = time.perf_counter()
done.set()
print(json.dumps({"import_s": t1 - t0, "check_s": t2 - t1, "tokens": report.sources[0].tokens,
                  "anon_gb": anon[0] / 2**20,
                  "findings": {f.code: f.count_rows for f in report.findings}}))
"""

PYARROW_READ = """
import json, sys, time
t0 = time.perf_counter()
import pyarrow.parquet as pq
t1 = time.perf_counter()
table = pq.read_table(sys.argv[1], columns=["input_ids", "attention_mask", "labels"])
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "check_s": t2 - t1, "tokens": None}))
"""

NAIVE = """
import json, sys, time
import pyarrow as pa
import pyarrow.compute
from naive import check_table
table = pa.ipc.open_stream(pa.memory_map(sys.argv[1])).read_all().slice(0, int(sys.argv[2]))
tokens = pa.compute.list_value_length(table.column("input_ids")).to_numpy().sum().item()
t0 = time.perf_counter()
hits = check_table(table)
t1 = time.perf_counter()
print(json.dumps({"check_s": t1 - t0, "tokens": tokens, "findings": dict(hits)}))
"""


def measure(argv: list[str]) -> dict:
    """Run a command; its JSON output, wall time and peak RSS (from the kernel's rusage)."""
    env = dict(os.environ, PYTHONPATH=str(HERE), HF_HUB_OFFLINE="1")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        _, status, rusage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{argv[:3]} failed: {stderr.decode()[-2000:]}")
    result = json.loads(stdout) if stdout.strip().startswith(b"{") else {}
    result["wall_s"] = wall
    result["rss_gb"] = rusage.ru_maxrss / 2**20
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=float, default=80e6)
    p.add_argument("--data", type=Path, default=Path("/tmp/labellint-bench"))
    p.add_argument("--naive-rows", type=int, default=5000)
    args = p.parse_args()

    import synthetic

    out = args.data / f"{int(args.tokens / 1e6)}M"
    if not (out / "sft").exists() or not (out / "parquet").exists():
        # In a process of its own: a child inherits its parent's peak RSS across fork and exec,
        # so this process must stay small for the measurements below to be each run's own.
        subprocess.run([sys.executable, str(HERE / "synthetic.py"), str(int(args.tokens)),
                        str(out)], check=True)
    paths = {"save_to_disk": out / "sft", "parquet": out / "parquet"}
    py = sys.executable
    results = {}
    # One warm-up read so that every measurement sees the files in the page cache.
    measure([py, "-c", PYARROW_READ, str(paths["parquet"])])
    for form, path in paths.items():
        results[f"labellint {form}"] = measure([py, "-c", CHECK, str(path)])
        results[f"labellint CLI {form}"] = measure(
            [py, "-m", "labellint", "check", str(path), "--format", "json", "--eos-id", "2",
             "--bos-id", "1", "--pad-id", "0", "--vocab-size", "32000"])
    results["pyarrow read parquet"] = measure([py, "-c", PYARROW_READ, str(paths["parquet"])])
    arrow_file = next(paths["save_to_disk"].glob("*.arrow"))
    results["naive per-row Python"] = measure([py, "-c", NAIVE, str(arrow_file),
                                               str(args.naive_rows)])

    tokens = results["labellint save_to_disk"]["tokens"]
    print(f"\n{tokens / 1e6:.1f}M tokens, {os.cpu_count()} cores\n")
    print(f"{'run':<32}{'wall s':>9}{'in-process s':>14}{'M tokens/s':>12}{'peak RSS GB':>13}"
          f"{'of it anon GB':>15}")
    for name, r in results.items():
        n = r.get("tokens") or tokens
        inner = r.get("check_s")
        rate = n / inner / 1e6 if inner else n / r["wall_s"] / 1e6
        anon = f"{r['anon_gb']:.2f}" if "anon_gb" in r else "-"
        print(f"{name:<32}{r['wall_s']:>9.2f}{inner if inner else float('nan'):>14.2f}"
              f"{rate:>12.1f}{r['rss_gb']:>13.2f}{anon:>15}")
    fast = tokens / results["labellint save_to_disk"]["check_s"]
    naive = results["naive per-row Python"]
    slow = naive["tokens"] / naive["check_s"]
    parquet = results["labellint parquet"]["check_s"] / results["pyarrow read parquet"]["check_s"]
    print(f"\nlabellint / naive checker: {fast / slow:.0f}x")
    print(f"labellint parquet / pyarrow read: {parquet:.2f}x")
    found = results["labellint save_to_disk"]["findings"]
    n_rows = pq_rows(paths["parquet"])
    for code in synthetic.PLANTED:
        planted = synthetic.expected_rows(code, n_rows).size
        print(f"{code}: planted in {planted} rows, found in {found.get(code, 0)}")


def pq_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in sorted(path.glob("*.parquet")))


if __name__ == "__main__":
    main()
