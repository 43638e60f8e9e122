"""Build the bundled example: a small SFT dataset with the mistakes real pipelines make.

    python examples/build_example.py examples/data

writes `examples/data/tokenizer/` (a tiny BPE tokenizer, trained offline) and
`examples/data/sft/` (a `save_to_disk` dataset). The preprocessing below is the kind found in
fine-tuning scripts: most of it is right, and labellint finds where it is not.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from datasets import Dataset, disable_progress_bars

from labellint.testing import tiny_tokenizer

MAX_LENGTH = 48
WORDS = ("the quick brown fox jumps over lazy dog capital of france is paris spider has "
         "eight legs write haiku about sea waves fold into foam tide keeps its slow promise "
         "hello there how can i help you today good morning").split()


def sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def sft_row(tok, question: str, answer: str, *, template_bos: bool, eos: bool = True) -> dict:
    """Prompt masked with -100, answer and EOS supervised, truncated at MAX_LENGTH."""
    prompt = f"question: {question} answer: "
    if template_bos:
        # A chat-template string already starts with BOS; tokenizing it with the default
        # add_special_tokens=True adds a second one.
        prompt = tok.bos_token + prompt
    prompt_ids = tok(prompt)["input_ids"]
    answer_ids = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] * eos
    ids = (prompt_ids + answer_ids)[:MAX_LENGTH]
    labels = ([-100] * len(prompt_ids) + answer_ids)[:MAX_LENGTH]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def build(out: Path) -> None:
    disable_progress_bars()
    rng = random.Random(0)
    tok = tiny_tokenizer()
    tok.save_pretrained(out / "tokenizer")
    rows = []
    for i in range(400):
        question, answer = sentence(rng, 2, 5), sentence(rng, 1, 5) + "."
        if i % 50 == 7:  # a long document pasted into the prompt: the answer is truncated away
            question = sentence(rng, 30, 40)
        if i % 40 == 3:  # a long answer, cut at MAX_LENGTH mid-sentence
            answer = sentence(rng, 30, 40)
        # Rows 380+ come from a chat-template pipeline; every 25th from a script that forgot EOS.
        rows.append(sft_row(tok, question, answer, template_bos=i >= 380, eos=i % 25 != 11))
    Dataset.from_list(rows).save_to_disk(str(out / "sft"))
    print(f"wrote {len(rows)} rows to {out / 'sft'} and a tokenizer to {out / 'tokenizer'}")


if __name__ == "__main__":
    build(Path(sys.argv[1] if len(sys.argv) > 1 else "examples/data"))
