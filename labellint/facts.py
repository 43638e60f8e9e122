"""Facts about the tokenizer and model that rules need, and where each one came from.

A fact is given by the user, read from a tokenizer or model, inferred from the data, or a
default. The report states the origin of each, because an inferred EOS id is a guess and a
reader should know which findings rest on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from .errors import LabelLintError

if TYPE_CHECKING:
    from .batch import Batch

LABEL_SHIFTS = ("model", "dataset")

# How sure inference must be before it names a token. A fact inferred from too little or too
# mixed evidence is left unknown, and the rules that need it are skipped, never guessed at.
MIN_ROWS_TO_INFER = 2
SHARE_OF_ROWS = 0.9


@dataclass(frozen=True)
class Facts:
    """What the rules know about the tokenizer, the model and the label convention.

    label_shift: "model" is the Hugging Face convention (labels aligned with input_ids, the model
    shifts them); "dataset" means labels are already shifted (labels[t] is the target of
    position t), as torchtune prepares them.
    end_of_turn_ids: ids that also end a supervised answer (`<|im_end|>`, `<|eot_id|>`), read from
    the tokenizer's special tokens.
    """

    pad_id: int | None = None
    bos_id: int | None = None
    eos_id: int | None = None
    vocab_size: int | None = None
    ignore_index: int = -100
    label_shift: str = "model"
    max_length: int | None = None
    add_bos: bool | None = None
    end_of_turn_ids: tuple[int, ...] = ()
    origin: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.label_shift not in LABEL_SHIFTS:
            raise LabelLintError(
                f"label_shift must be one of {', '.join(LABEL_SHIFTS)}, not {self.label_shift!r}"
            )

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """Every id that ends a sequence or an answer: EOS plus the end-of-turn tokens."""
        ids = [] if self.eos_id is None else [self.eos_id]
        return tuple(dict.fromkeys(ids + list(self.end_of_turn_ids)))

    def describe(self) -> dict[str, dict[str, Any]]:
        """Each fact with its value and origin, for the report."""
        out = {}
        for f in fields(self):
            if f.name == "origin":
                continue
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = list(value)
            out[f.name] = {"value": value, "from": self.origin.get(f.name, "default")}
        return out


FACT_NAMES = tuple(f.name for f in fields(Facts) if f.name != "origin")


def merge_facts(*layers: tuple[str, Mapping[str, Any]]) -> Facts:
    """Build Facts from (origin, values) layers, the first layer that knows a fact winning."""
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name, layer in layers:
        for key, value in layer.items():
            if key not in FACT_NAMES:
                raise LabelLintError(f"unknown fact {key!r}; known facts: {', '.join(FACT_NAMES)}")
            if value is None or key in values:
                continue
            values[key] = tuple(value) if key == "end_of_turn_ids" else value
            origin[key] = name
    return Facts(**values, origin=origin)


def _dominant(values: np.ndarray, *, share: float, over: int) -> int | None:
    """The most common value, if it makes up `share` of `over` items; else None."""
    if values.size == 0 or over < MIN_ROWS_TO_INFER:
        return None
    uniq, counts = np.unique(values, return_counts=True)
    top = int(np.argmax(counts))
    return int(uniq[top]) if counts[top] >= share * over else None


def infer_pad_id(b: Batch) -> int | None:
    """The id under attention_mask == 0, when one id clearly dominates there."""
    hidden = b.input_ids[~b.attended]
    if hidden.size == 0:
        return None
    uniq, counts = np.unique(hidden, return_counts=True)
    order = np.argsort(counts)[::-1]
    # Padding is one id repeated; hidden prompt text (a common masking mistake) is many ids.
    if counts.size > 1 and counts[order[0]] < 2 * counts[order[1]]:
        return None
    return int(uniq[order[0]])


def _mostly_at(ids: np.ndarray, token: int | None, at: np.ndarray) -> bool:
    """Whether at least half of the real occurrences of `token` are the given row edges."""
    if token is None:
        return False
    return 2 * int(np.count_nonzero(at == token)) >= int(np.count_nonzero(ids == token))


def infer_bos_id(b: Batch) -> int | None:
    """The first real token, when nearly every row starts with it and it rarely occurs elsewhere."""
    first = b.first_real_index
    firsts = b.input_ids[first[first >= 0]]
    bos = _dominant(firsts, share=SHARE_OF_ROWS, over=firsts.size)
    # `<|im_start|>` starts every ChatML row but also every turn: it is not a BOS.
    return bos if _mostly_at(b.input_ids[b.real], bos, firsts) else None


def infer_eos_id(b: Batch) -> int | None:
    """The last real token, when nearly every row ends with it and it rarely occurs elsewhere."""
    last = b.last_real_index
    lasts = b.input_ids[last[last >= 0]]
    eos = _dominant(lasts, share=SHARE_OF_ROWS, over=lasts.size)
    return eos if _mostly_at(b.input_ids[b.real], eos, lasts) else None


def infer_max_length(b: Batch) -> int | None:
    """The truncation length, when several rows pile up at exactly the longest real length."""
    lengths = b.real_lengths
    if lengths.size < MIN_ROWS_TO_INFER:
        return None
    longest = int(lengths.max())
    at_max = int(np.count_nonzero(lengths == longest))
    if longest == 0 or at_max < max(MIN_ROWS_TO_INFER, 0.01 * lengths.size):
        return None
    return longest


def infer_facts(sample: Batch) -> Facts:
    """Fill the facts the sample's Facts lack from the data; inferred ones are marked so."""
    facts = sample.facts
    inferred: dict[str, Any] = {}
    if facts.pad_id is None and sample.attention_mask is not None:
        inferred["pad_id"] = infer_pad_id(sample)
        # Padding depends on the pad id, and the edge tokens below depend on padding.
        sample = sample.with_facts(replace(facts, pad_id=inferred["pad_id"]))
    if facts.bos_id is None:
        inferred["bos_id"] = infer_bos_id(sample)
    if facts.eos_id is None:
        inferred["eos_id"] = infer_eos_id(sample)
    if facts.max_length is None:
        inferred["max_length"] = infer_max_length(sample)
    known = {k: v for k, v in inferred.items() if v is not None}
    origin = dict(facts.origin) | {k: "inferred from data" for k in known}
    return replace(facts, **known, origin=origin)
