"""The data side of the example: rows, tokenization with the prompt masked, the collator.

In a real repo the tokenizer comes from `AutoTokenizer.from_pretrained(...)` and the rows from
your dataset; here both are built offline so the example runs anywhere in seconds.
"""

from __future__ import annotations

from datasets import Dataset
from transformers import DataCollatorForLanguageModeling, DataCollatorForSeq2Seq

from labellint.testing import tiny_tokenizer

MAX_LENGTH = 64
BUGS = ("labels-on-padding", "pad-is-eos")

ROWS = [
    ("what is the capital of france?", "the capital of france is paris."),
    ("how many legs does a spider have?", "a spider has eight legs."),
    ("translate to german: good morning.", "guten morgen."),
    ("say hello.", "hello there!"),
    ("what does the fox do?", "the quick brown fox jumps over the lazy dog."),
    ("write a haiku about the sea.", "waves fold into foam, the tide keeps its slow promise."),
    ("how can i help you?", "you can help me today."),
    ("count to three.", "1 2 3"),
    ("what comes after 9?", "10"),
    ("is paris in france?", "yes, paris is the capital of france."),
    ("what is 10 times 10?", "100"),
    ("what is 10 times 100?", "1000"),
    ("name an animal with eight legs.", "a spider."),
    ("what keeps its slow promise?", "the tide."),
    ("who jumps over the lazy dog?", "the quick brown fox."),
    ("greet me in german.", "guten morgen!"),
] * 3  # a few dozen rows


def load_tokenizer(bug: str | None = None):
    """The tiny tokenizer; with the pad-is-eos bug, pad_token = eos_token, as many recipes set."""
    return tiny_tokenizer(pad_is_eos=bug == "pad-is-eos")


def build_dataset(tok) -> Dataset:
    """input_ids, attention_mask and labels: the prompt masked with -100, the answer and EOS
    trained, truncated at MAX_LENGTH."""
    rows = []
    for question, answer in ROWS:
        prompt = tok(f"question: {question} answer: ")["input_ids"]
        target = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = (prompt + target)[:MAX_LENGTH]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids),
                     "labels": ([-100] * len(prompt) + target)[:MAX_LENGTH]})
    return Dataset.from_list(rows)


def make_collator(tok, bug: str | None = None):
    """DataCollatorForSeq2Seq pads labels with -100. The planted bugs are the two classic ones:
    labels padded with the pad id, and causal-LM labels rebuilt from input_ids with every pad
    id masked while pad == eos (so every EOS is masked and the model never learns to stop)."""
    if bug == "labels-on-padding":
        return DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=tok.pad_token_id)
    if bug == "pad-is-eos":
        lm = DataCollatorForLanguageModeling(tok, mlm=False)
        return lambda rows: lm([{"input_ids": r["input_ids"]} for r in rows])
    if bug is not None:
        raise ValueError(f"unknown bug {bug!r} (bugs: {', '.join(BUGS)})")
    return DataCollatorForSeq2Seq(tok, padding=True)
