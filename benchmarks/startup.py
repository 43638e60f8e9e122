"""labellint's start-up: `labellint check` on a 10-row parquet file, end to end, in fresh
processes.

    python benchmarks/startup.py [--workdir /tmp/labellint-startup] [--runs 5]

Measures the median wall time of `runs` fresh processes for: `python -c pass` (the
interpreter alone), `python -c "import labellint"`, `labellint check small.parquet --eos-id N`
(no tokenizer), and `labellint check small.parquet --tokenizer DIR` for real tokenizer folders
(tests/real_tokenizers.py, built into its cache on first use).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKENIZERS = ("qwen2.5-instruct", "llama3-instruct", "gemma4-instruct")


def _tokenizer_dir(name: str) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        import real_tokenizers as rt
    finally:
        sys.path.pop(0)
    return rt.tokenizer_dir(name)


def _small_parquet(path: Path, folder: Path) -> int:
    """10 rows of a chat-like text encoded with the folder's tokenizer (one fully masked row,
    so the report has a finding with a decoded strip); the eos id comes back."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    eos = tok.token_to_id(json.loads((folder / "tokenizer_config.json").read_text())["eos_token"])
    rows = []
    for i in range(10):
        ids = tok.encode(f"question {i}? answer {i}.").ids + [eos]
        rows.append({"input_ids": ids, "labels": [-100] * len(ids) if i == 3 else ids})
    pq.write_table(pa.Table.from_pylist(rows), path)
    return eos


def _median_seconds(argv: list[str], runs: int) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                       cwd=ROOT, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_startup(workdir: Path, runs: int = 5,
                    tokenizers: tuple[str, ...] = TOKENIZERS) -> dict[str, float]:
    """Median seconds of `runs` fresh processes per command, keyed by what each runs."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    out: dict[str, float] = {"python -c pass": _median_seconds([py, "-c", "pass"], runs),
                             "import labellint": _median_seconds([py, "-c", "import labellint"],
                                                                 runs)}
    for i, name in enumerate(tokenizers):
        folder = _tokenizer_dir(name)
        data = workdir / f"small-{name}.parquet"
        eos = _small_parquet(data, folder)
        check = [py, "-m", "labellint", "check", str(data), "--isolated"]
        if i == 0:
            out["check --eos-id (no tokenizer)"] = _median_seconds(
                [*check, "--eos-id", str(eos)], runs)
        out[f"check --tokenizer {name}"] = _median_seconds(
            [*check, "--tokenizer", str(folder)], runs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/labellint-startup"))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results = measure_startup(args.workdir, args.runs)
    width = max(map(len, results))
    print(f"{'command':<{width}}  median s ({args.runs} fresh processes)")
    for what, seconds in results.items():
        print(f"{what:<{width}}  {seconds:.2f}")


if __name__ == "__main__":
    main()
