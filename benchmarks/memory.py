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
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from measure import check_run  # noqa: E402

FORMS = ("save_to_disk", "parquet", "single.parquet", "single.arrow")

GIVEN = {"eos_id": 2, "bos_id": 1, "pad_id": 0, "vocab_size": 32000}  # as bench.py gives them


def build(tokens: float, data_dir: Path) -> Path:
    """The dataset of `tokens` tokens in every form, built in a process of its own (a child
    inherits its parent's peak RSS, so this process must stay small)."""
    out = data_dir / f"{int(tokens / 1e6)}M"
    if not all((out / f).exists() for f in ("sft", "parquet", "single.parquet", "single.arrow")):
        subprocess.run([sys.executable, str(HERE / "synthetic.py"), str(int(tokens)), str(out),
                        "--single"], check=True)
    return out


def measure_memory(tokens: float, data_dir: Path, *, infer: bool = False,
                   forms: tuple[str, ...] = FORMS, jobs: int = 1) -> list[dict]:
    """Check the `tokens`-token dataset in each form in a fresh process; a row per form with
    its peak RSS, peak anon and file-backed resident memory (GB, over the checking process and
    its workers), times and findings.
    infer: give no facts (they are inferred from the data) rather than bench.py's."""
    out = build(tokens, data_dir)
    paths = {"save_to_disk": out / "sft", "parquet": out / "parquet",
             "single.parquet": out / "single.parquet", "single.arrow": out / "single.arrow"}
    return [{"form": form, "tokens_planned": tokens, "facts": "inferred" if infer else "given",
             "jobs": jobs, **check_run(paths[form], jobs=jobs, facts={} if infer else GIVEN)}
            for form in forms]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=float, nargs="+", default=[30e6, 300e6])
    p.add_argument("--data", type=Path, default=Path("/tmp/labellint-memory"))
    p.add_argument("--infer", action="store_true", help="give no facts: infer them")
    p.add_argument("--jobs", type=int, nargs="+", default=[1, len(os.sched_getaffinity(0))])
    p.add_argument("--forms", nargs="+", default=list(FORMS), choices=FORMS)
    args = p.parse_args()
    rows = [r for t in args.tokens for jobs in args.jobs
            for r in measure_memory(t, args.data, infer=args.infer, forms=tuple(args.forms),
                                    jobs=jobs)]
    print(f"\n{os.cpu_count()} cores, facts {'inferred' if args.infer else 'given'}\n")
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    """The rows as a Markdown table, then, per form and jobs, anon at the largest size over anon
    at the smallest."""
    print("| form | jobs | M tokens | check s | M tokens/s | peak RSS GB | largest worker GB "
          "| anon GB (all) | median | file GB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['form']} | {r['jobs']} | {r['tokens'] / 1e6:.0f} | {r['check_s']:.2f} | "
              f"{r['tokens'] / r['check_s'] / 1e6:.1f} | {r['rss_gb']:.2f} | "
              f"{r['worker_rss_gb']:.2f} | {r['anon_gb']:.2f} | {r['anon_median_gb']:.2f} | "
              f"{r['file_gb']:.2f} |")
    sizes = sorted({r["tokens_planned"] for r in rows})
    if len(sizes) < 2:
        return
    small, large = sizes[0], sizes[-1]
    for form, jobs in dict.fromkeys((r["form"], r["jobs"]) for r in rows):
        a = {r["tokens_planned"]: r["anon_gb"] for r in rows
             if (r["form"], r["jobs"]) == (form, jobs)}
        print(f"{form}, jobs={jobs}: anon at {large / 1e6:.0f}M / at {small / 1e6:.0f}M = "
              f"{a[large] / a[small]:.2f}")


if __name__ == "__main__":
    main()
