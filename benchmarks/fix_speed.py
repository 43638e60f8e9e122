"""`fix` against `check` on the padded synthetic shape: tokens per second, one small run.

    python benchmarks/fix_speed.py [--tokens 20e6] [--shards 1] [--jobs 1] [--repeat 3]

Builds the padded rows (synthetic.build_table(padded=True): LL103 and LL401 planted, facts
inferred) as one parquet file, then times `labellint.check(path, jobs=1)` and
`labellint.fix(path, out=...)`, each the fastest of --repeat runs. `fix` reads the file twice
(its sample for the facts, then every row while writing the copy) and checks the copy after
writing it; its figure includes all of that. With --shards N the rows are split into N parquet
files in one folder, which `fix` hands to up to --jobs forked workers (check is given the same
jobs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

import labellint
from synthetic import build_table


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=float, default=20e6)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--jobs", type=int, default=1)
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="labellint-fix-bench-"))
    try:
        table = build_table(int(args.tokens), padded=True)
        if args.shards > 1:
            src = root / "padded"
            src.mkdir()
            step = -(-table.num_rows // args.shards)
            for i in range(args.shards):
                pq.write_table(table.slice(i * step, step), src / f"part-{i:02d}.parquet")
        else:
            src = root / "padded.parquet"
            pq.write_table(table, src)
        tokens = int(table.column("input_ids").combine_chunks().offsets[-1].as_py())
        check_s = min(_timed(lambda: labellint.check(src, jobs=args.jobs))
                      for _ in range(args.repeat))
        fix_s, result = float("inf"), None
        for i in range(args.repeat):
            out = root / (f"fixed-{i}" + ("" if args.shards > 1 else ".parquet"))
            start = time.perf_counter()
            result = labellint.fix(src, out=out, jobs=args.jobs)
            fix_s = min(fix_s, time.perf_counter() - start)
        print(result.render().splitlines()[0])
        print(f"{args.shards} file(s), jobs={args.jobs}, load {os.getloadavg()[0]:.1f}; "
              f"{tokens / 1e6:.1f}M tokens; check {check_s:.2f} s "
              f"({tokens / check_s / 1e6:.1f}M tokens/s); fix {fix_s:.2f} s "
              f"({tokens / fix_s / 1e6:.1f}M tokens/s)")
        for r in result.rules:
            if r.rows or r.held:
                print(f"  {r.code}: {r.rows} rows changed, {r.held} held back")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _timed(f) -> float:
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
