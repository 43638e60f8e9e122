"""What LabelLintCallback costs a training run: the same Trainer run with and without it.

A Llama with a realistic vocabulary (32k) and a small body, trained for a few steps on random
SFT rows (lengths 64-512, BOS and EOS, prompt masked), padded by DataCollatorForSeq2Seq.
Reported: the wall time of `train()` with and without the callback (best of `--repeat`), and
inside the callback, the data check before training and the capture of the first step's
outputs.

    python benchmarks/callback_overhead.py
    python benchmarks/callback_overhead.py --batch-size 8 --accumulation 4 --steps 20
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def rows(n: int, vocab: int, seed: int = 0) -> list[dict]:
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for length in rng.integers(64, 512, n):
        ids = [1, *rng.integers(3, vocab, length - 2).tolist(), 2]  # BOS ... EOS
        prompt = int(length) // 3
        out.append({"input_ids": ids, "attention_mask": [1] * len(ids),
                    "labels": [-100] * prompt + ids[prompt:]})
    return out


def run(args: argparse.Namespace, with_callback: bool) -> dict:
    import datasets
    from transformers import DataCollatorForSeq2Seq, PrinterCallback, Trainer, TrainingArguments

    import labellint.integrations.transformers as cb
    from labellint.testing import tiny_llama, tiny_tokenizer

    tok = tiny_tokenizer()
    model = tiny_llama(vocab_size=args.vocab, hidden_size=args.hidden, layers=args.layers,
                       initializer_range=0.02, max_position_embeddings=512)
    data = datasets.Dataset.from_list(rows(args.batch_size * args.accumulation * args.steps,
                                           args.vocab))
    timings: dict[str, float] = {}
    callbacks = []
    if with_callback:
        callback = cb.LabelLintCallback(batches=8, config=False, vocab_size=args.vocab)
        begin, stats = callback.on_train_begin, cb._StepCapture._stats

        def timed_begin(*a, **k):
            t = time.perf_counter()
            try:
                return begin(*a, **k)
            finally:
                timings["data check before training"] = time.perf_counter() - t

        def timed_stats(self, *a, **k):
            t = time.perf_counter()
            try:
                return stats(self, *a, **k)
            finally:
                timings["capture of the first step"] = \
                    timings.get("capture of the first step", 0.0) + time.perf_counter() - t

        callback.on_train_begin = timed_begin
        cb._StepCapture._stats = timed_stats
        callbacks.append(callback)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(
            model=model, train_dataset=data, data_collator=DataCollatorForSeq2Seq(tok),
            callbacks=callbacks,
            args=TrainingArguments(output_dir=out, report_to=[], use_cpu=True, bf16=False,
                                   per_device_train_batch_size=args.batch_size,
                                   gradient_accumulation_steps=args.accumulation,
                                   max_steps=args.steps, save_strategy="no", logging_steps=1000,
                                   disable_tqdm=True, seed=0))
        trainer.remove_callback(PrinterCallback)  # the JSON below is the output
        t = time.perf_counter()
        trainer.train()
        timings["train()"] = time.perf_counter() - t
    if with_callback:
        cb._StepCapture._stats = stats
    return timings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--accumulation", type=int, default=2)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args()
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.repeat):
        for label, flag in (("without", False), ("with", True)):
            t = run(args, flag)
            best[label] = {k: min(v, best.get(label, {}).get(k, v)) for k, v in t.items()}
    result = {"config": vars(args), "without callback": best["without"],
              "with callback": best["with"],
              "overhead": best["with"]["train()"] - best["without"]["train()"]}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
