"""Peak memory of the chunked reference loss against the naive full-logits computation.

A tiny-body Llama (hidden 64, 1 layer) with a large vocabulary, so that the logits dominate:
2 x 4096 tokens at vocab 32k and 128k. Each case runs in a fresh process; the figure is the
peak above what the model and batch already hold: on CPU the peak resident set (VmHWM, reset
through /proc/self/clear_refs), on CUDA torch.cuda.max_memory_allocated.

    python benchmarks/reference_memory.py                 # CPU, or CUDA when present
    python benchmarks/reference_memory.py --device cpu --vocab 32000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CASES = {
    "model forward, logits only": "forward",
    "model forward with labels (its own loss)": "own_loss",
    "naive reference (full float32 logits, log_softmax)": "naive",
    "labellint chunked reference": "chunked",
}


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def child(case: str, vocab: int, rows: int, width: int, device: str) -> dict:
    import torch

    from labellint.loss.reference import evaluating, stats_from_model, to_tensors
    from labellint.testing import tiny_llama

    dev = torch.device(device)
    model = tiny_llama(vocab_size=vocab, hidden_size=64, layers=1, initializer_range=0.02,
                       max_position_embeddings=width).to(dev)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (rows, width), generator=g)
    labels = ids.clone()
    labels[:, : width // 4] = -100
    batch = to_tensors({"input_ids": ids, "labels": labels}, dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak resident set to the current one
        base = _rss_kib("VmRSS") * 1024
    start = time.perf_counter()
    with torch.no_grad():
        if case == "forward":
            model(input_ids=batch["input_ids"], use_cache=False).logits.sum().item()
        elif case == "own_loss":
            model(**batch, use_cache=False).loss.item()
        elif case == "naive":
            logits = model(input_ids=batch["input_ids"], use_cache=False).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            target = batch["labels"][:, 1:]
            ok = target != -100
            nll = -logp.gather(-1, target.clamp(min=0)[..., None]).squeeze(-1)
            (nll[ok].sum() / ok.sum()).item()
        elif case == "chunked":
            with evaluating(model, dev):
                stats = stats_from_model(model, batch)
            stats.loss_sum / stats.supervised
    if dev.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = _rss_kib("VmHWM") * 1024 - base
    return {"peak_bytes": peak, "seconds": time.perf_counter() - start}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--vocab", type=int, nargs="+", default=[32000, 131072])
    p.add_argument("--rows", type=int, default=2)
    p.add_argument("--width", type=int, default=4096)
    p.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        case, vocab, rows, width, device = args.child
        print(json.dumps(child(case, int(vocab), int(rows), int(width), device)))
        return
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    tokens = args.rows * args.width
    print(f"device {device}, {args.rows} x {args.width} tokens, hidden 64, 1 layer; "
          "peak memory above the model and batch")
    print(f"{'vocab':>7}  {'case':<52} {'peak MiB':>9} {'seconds':>8}  full fp32 logits")
    for vocab in args.vocab:
        logits_mib = tokens * vocab * 4 / 2**20
        for label, case in CASES.items():
            run = subprocess.run(
                [sys.executable, __file__, "--child", case, str(vocab), str(args.rows),
                 str(args.width), device], capture_output=True, text=True,
                env={**os.environ, "HF_HUB_OFFLINE": "1"})
            if run.returncode != 0:
                tail = (run.stderr.strip().splitlines() or ["killed"])[-1]
                print(f"{vocab:>7}  {label:<52} {'failed':>9}           ({tail})")
                continue
            r = json.loads(run.stdout.strip().splitlines()[-1])
            print(f"{vocab:>7}  {label:<52} {r['peak_bytes'] / 2**20:>9,.0f} "
                  f"{r['seconds']:>8.2f}  {logits_mib:,.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
