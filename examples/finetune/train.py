"""Fine-tune a tiny Llama on a few dozen rows, with labellint checking the data before step 1.

    python train.py                          # trains a few steps on CPU, in seconds
    python train.py --bug labels-on-padding  # stops before the first optimizer step (LL103)
    python train.py --bug pad-is-eos         # stops too: every EOS masked (LL403)

The callback lints the first batches exactly as the Trainer hands them to the model, and
(check_loss=True) compares the first logged loss with a reference recomputed from that step.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from data import BUGS, build_dataset, load_tokenizer, make_collator
from transformers import Trainer, TrainingArguments

from labellint import LabelLintError
from labellint.integrations.transformers import LabelLintCallback
from labellint.testing import tiny_llama


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bug", choices=BUGS, help="plant a real data mistake")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args(argv)

    tok = load_tokenizer(args.bug)
    # In a real repo: AutoModelForCausalLM.from_pretrained(...). This one is random, offline.
    model = tiny_llama(vocab_size=len(tok), hidden_size=32, pad_token_id=tok.pad_token_id,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    with tempfile.TemporaryDirectory() as out:  # nothing is saved: save_strategy="no"
        trainer = Trainer(
            model=model,
            args=TrainingArguments(
                output_dir=out, max_steps=args.steps, per_device_train_batch_size=4,
                gradient_accumulation_steps=2, learning_rate=1e-3, logging_steps=1,
                save_strategy="no", report_to=[], use_cpu=True, bf16=False, seed=0,
                disable_tqdm=True),
            train_dataset=build_dataset(tok),
            data_collator=make_collator(tok, args.bug),
            processing_class=tok,  # the callback reads pad, BOS and EOS ids from it
            callbacks=[lint := LabelLintCallback(batches=8, check_loss=True)],
        )
        trainer.train()  # raises LabelLintError before the first optimizer step on bad data
    found = len(lint.report.findings) + len(lint.loss_report.findings if lint.loss_report else [])
    print(f"trained {args.steps} steps; labellint: "
          + (f"{found} warnings, logged above" if found else "nothing wrong"))


if __name__ == "__main__":
    try:
        main()
    except LabelLintError as e:  # the message is the whole report: what, where, the fix
        sys.exit(f"labellint: {e}")
