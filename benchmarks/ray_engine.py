"""`--engine ray` against the local engine: tokens/s, and Ray's fixed start-up cost.

    python benchmarks/ray_engine.py [--tokens 20e6] [--data /tmp/labellint-bench-ray]

Builds the synthetic unpadded corpus once (benchmarks/synthetic.py, parquet shards), then in a
fresh process per configuration:
  - the local engine with jobs=1 and jobs=2;
  - Ray with a local cluster of 1 and of 2 CPUs (workers): `ray.init` timed alone, then a
    first check of a tiny file (worker processes start, import labellint: the fixed cost), then
    the corpus twice: cold (the first big run) and warm (workers already up, the steady rate).
Every run's report must equal the local engine's (JSON): the script checks it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

FACTS = {"pad_id": 0, "bos_id": 1, "eos_id": 2, "vocab_size": 32_000}

RUN = """
import json, sys, time
args = json.loads(sys.argv[1])
t0 = time.perf_counter()
import labellint
out = {}
if args["engine"] == "ray":
    import ray
    t = time.perf_counter()
    ray.init(num_cpus=args["workers"], include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    out["init_s"] = time.perf_counter() - t
    t = time.perf_counter()
    labellint.check(args["small"], engine="ray", **args["facts"])
    out["first_small_s"] = time.perf_counter() - t
    kw = {"engine": "ray"}
else:
    kw = {"jobs": args["workers"]}
for name in ("cold", "warm"):
    t = time.perf_counter()
    report = labellint.check(args["path"], **kw, **args["facts"])
    out[name + "_s"] = time.perf_counter() - t
out["tokens"] = sum(s.tokens for s in report.sources)
out["json"] = report.to_json()
print(json.dumps(out))
"""


def run(engine: str, workers: int, path: Path, small: Path) -> dict:
    args = {"engine": engine, "workers": workers, "path": str(path), "small": str(small),
            "facts": FACTS}
    proc = subprocess.run([sys.executable, "-c", RUN, json.dumps(args)], capture_output=True,
                          text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{engine} x{workers} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    import synthetic

    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=float, default=20e6)
    p.add_argument("--data", type=Path, default=Path("/tmp/labellint-bench-ray"))
    args = p.parse_args()
    paths = synthetic.write(synthetic.build_table(int(args.tokens)), args.data / "corpus",
                            parquet_shards=4)
    small = synthetic.write(synthetic.build_table(100_000, seed=1), args.data / "small",
                            parquet_shards=1)["parquet"]
    path = paths["parquet"]
    rows, reference = [], None
    for engine, workers in (("local", 1), ("local", 2), ("ray", 1), ("ray", 2)):
        r = run(engine, workers, path, small)
        reference = reference or r["json"]
        assert r["json"] == reference, f"{engine} x{workers}: the report differs"
        rows.append((engine, workers, r))
    print("| engine | workers | M tokens | ray.init s | first check, tiny file s | cold s "
          "| warm s | warm M tokens/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for engine, workers, r in rows:
        mt = r["tokens"] / 1e6
        init = f"{r['init_s']:.1f}" if "init_s" in r else "-"
        first = f"{r['first_small_s']:.1f}" if "first_small_s" in r else "-"
        print(f"| {engine} | {workers} | {mt:.1f} | {init} | {first} | {r['cold_s']:.2f} "
              f"| {r['warm_s']:.2f} | {mt / r['warm_s']:.1f} |")


if __name__ == "__main__":
    main()
