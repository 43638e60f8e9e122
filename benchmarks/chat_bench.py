"""labellint's speed on the chat shape, with and without its tokenizer, in-process.

    python benchmarks/chat_bench.py [--tokens 100e6] [--data /tmp/labellint-chat] [--repeat 3]

Builds the chat shape once (`chat_shape.py`; reused when present), then, in a fresh process per
run, times `labellint.check(path, tokenizer=tok)` on the save_to_disk folder with the tokenizer
loaded before the clock starts (and `check(path)` without it), after the allocator setting the
command applies (`cli._keep_freed_memory`). Prints tokens/s (default examples: 5 per finding), the
findings, and, from one more untimed run that keeps every example row, whether each planted
mistake is found at exactly its rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHECK = """
import json, sys, time
import labellint
from labellint.cli import _keep_freed_memory
from labellint.hf_facts import load_tokenizer
_keep_freed_memory()
tok = load_tokenizer(sys.argv[2]) if sys.argv[2] != "-" else None
kwargs = {"tokenizer": tok} if tok is not None else {}
t0 = time.perf_counter()
report = labellint.check(sys.argv[1], max_examples=int(sys.argv[3]), **kwargs)
t1 = time.perf_counter()
print(json.dumps({"check_s": t1 - t0, "tokens": report.sources[0].tokens,
                  "findings": {f.code: f.count_rows for f in report.findings},
                  "rows": {f.code: list(f.rows) for f in report.findings}}))
"""


def run(path: Path, tokenizer: Path | None, max_examples: int) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", CHECK, str(path),
                          str(tokenizer) if tokenizer else "-", str(max_examples)],
                         capture_output=True, env=env, text=True)
    if out.returncode not in (0, 1) or not out.stdout.strip().startswith("{"):
        raise SystemExit(f"check failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=float, default=100e6)
    p.add_argument("--data", type=Path, default=Path("/tmp/labellint-chat"))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-plain", action="store_true", help="skip the run without tokenizer")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the untimed run that compares the planted rows one by one")
    args = p.parse_args()

    sys.path.insert(0, str(HERE))
    import chat_shape

    out = args.data / f"{int(args.tokens / 1e6)}M"
    if not (out / "tok").exists():
        subprocess.run([sys.executable, str(HERE / "chat_shape.py"), str(int(args.tokens)),
                        str(out)], check=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    built = chat_shape.build(int(args.tokens), out)
    n_rows = built["rows"]
    # Examples large enough to hold every planted row, so they can be compared row by row.
    max_examples = max(chat_shape.expected_rows(c, n_rows).size for c in chat_shape.PLANTED) + 1
    cases = [("with tokenizer", built["tokenizer"])]
    if not args.no_plain:
        cases.append(("without tokenizer", None))
    for name, tok in cases:
        rates, result = [], None
        for _ in range(args.repeat):  # timed with the default examples (5 per finding)
            result = run(built["save_to_disk"], tok, 5)
            rates.append(result["tokens"] / result["check_s"] / 1e6)
        print(f"{name}: {result['tokens'] / 1e6:.1f}M tokens, M tokens/s "
              f"{' '.join(f'{r:.1f}' for r in rates)} (best {max(rates):.1f})")
        print(f"  findings: {result['findings']}")
        if tok is None or args.no_verify:
            continue
        # Untimed: every example row kept (and decoded), to compare the rows one by one.
        result = run(built["save_to_disk"], tok, max_examples)
        for code in chat_shape.PLANTED:
            want = chat_shape.expected_rows(code, n_rows)
            got = result["rows"].get(code, [])
            same = "exactly" if sorted(got) == want.tolist() else "NOT exactly"
            print(f"  {code}: planted in {want.size} rows, found in "
                  f"{result['findings'].get(code, 0)}, {same} at its rows")


if __name__ == "__main__":
    main()
