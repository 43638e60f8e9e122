"""Tokens/s of a parquet file read through fsspec's memory:// next to the same file on disk.

    python benchmarks/remote.py [--tokens 10e6] [--repeat 3]

Builds the unpadded synthetic rows (`synthetic.build_table`) as one parquet file (row groups
of 16k rows), copies its bytes into fsspec's in-process memory filesystem, and times
`labellint.check` on the local path and on the memory:// URL (row group by row group through
the file object), each with jobs=1 and every core. The best of `--repeat` runs,
in this process: the figure is the remote read path's cost without a network.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import pyarrow.parquet as pq  # noqa: E402

from synthetic import build_table  # noqa: E402

GIVEN = {"eos_id": 2, "bos_id": 1, "pad_id": 0, "vocab_size": 32000}  # as bench.py gives them


def best(source, repeat: int, **kwargs) -> float:
    import labellint

    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        labellint.check(source, **GIVEN, **kwargs)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=float, default=10e6)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import fsspec

    table = build_table(int(args.tokens))
    tokens = len(table.column("input_ids").combine_chunks().values)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "train.parquet"
        pq.write_table(table, local, row_group_size=16384)
        fsspec.filesystem("memory").pipe("/bench/train.parquet", local.read_bytes())
        runs = [("local path, jobs=1", str(local), {"jobs": 1}),
                (f"local path, jobs={os.cpu_count()}", str(local), {}),
                ("memory:// URL, jobs=1", "memory://bench/train.parquet", {"jobs": 1}),
                (f"memory:// URL, jobs={os.cpu_count()}", "memory://bench/train.parquet", {})]
        print("| source | M tokens | s | M tokens/s |\n|---|---:|---:|---:|")
        for what, source, kwargs in runs:
            seconds = best(source, args.repeat, **kwargs)
            print(f"| {what} | {tokens / 1e6:.1f} | {seconds:.2f} | {tokens / seconds / 1e6:.1f} |")


if __name__ == "__main__":
    main()
