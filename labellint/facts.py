"""The Facts value: what rules know of the tokenizer, the model, the labels, with each origin.

A fact is given by the user, read from a tokenizer or model, inferred from the data, or a
default. The report states the origin of each, because an inferred EOS id is a guess and a
reader should know which findings rest on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np

from .arguments import ID_LIMIT, describe
from .errors import LabelLintError

if TYPE_CHECKING:
    from .chat_format import ChatFormat

LABEL_SHIFTS = ("model", "dataset")


@dataclass(frozen=True)
class Facts:
    """What the rules know about the tokenizer, the model and the label convention.

    label_shift: "model" is the Hugging Face convention (labels aligned with input_ids, the model
    shifts them); "dataset" means labels are already shifted (labels[t] is the target of
    position t), as torchtune prepares them.
    end_of_turn_ids: ids that also end a supervised answer (`<|im_end|>`, `<|eot_id|>`), read from
    the tokenizer's special tokens.
    chat: the chat template's role headers and turn end as ids, and the special texts that must
    stay one token (labellint.ChatFormat), found from the tokenizer's template.
    assistant_only_loss: whether prompt turns are meant to be masked (True) or trained on
    (False, full-sequence training chosen on purpose); inferred from the data when not given.
    tokenizer_size, model_vocab_size: len(tokenizer) and the model's embedding rows.
    model_bos_id, model_eos_ids, model_pad_id: the special ids in the model's config.
    bos_every_turn: the tokenizer's chat template writes BOS at every turn (Llama-2), so a BOS
    after an EOS inside a row is a new turn, not a new document.
    eos_every_turn: the template writes EOS after every answer besides its own turn end
    (Apriel 1.5's `<|end|>\n</s>`), so an EOS inside a chat row closes a turn, not a document.
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
    chat: ChatFormat | None = None
    assistant_only_loss: bool | None = None
    # Read from the tokenizer and the model side by side, so that LL408 can compare them.
    tokenizer_size: int | None = None
    model_vocab_size: int | None = None
    model_bos_id: int | None = None
    model_eos_ids: tuple[int, ...] = ()
    model_pad_id: int | None = None
    bos_every_turn: bool | None = None
    eos_every_turn: bool | None = None
    origin: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.label_shift, str) or self.label_shift not in LABEL_SHIFTS:
            raise LabelLintError(f"label_shift must be one of {', '.join(LABEL_SHIFTS)}, "
                                 f"not {describe(self.label_shift)}")
        self._check_numbers()
        self._check_token_ids()
        if self.chat is not None and not hasattr(self.chat, "headers"):
            raise LabelLintError("chat must be a labellint.ChatFormat, not "
                                 f"{type(self.chat).__name__}")

    def _check_numbers(self) -> None:
        for name in ("vocab_size", "max_length", "tokenizer_size", "model_vocab_size"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or not 1 <= value < ID_LIMIT):
                raise LabelLintError(f"{name} must be a positive whole number, "
                                     f"not {describe(value)}")
        if not _is_int(self.ignore_index) or not -ID_LIMIT <= self.ignore_index < ID_LIMIT:
            raise LabelLintError("ignore_index must be a whole number, "
                                 f"not {describe(self.ignore_index)}")
        for name in ("add_bos", "bos_every_turn", "assistant_only_loss"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (bool, np.bool_)):
                raise LabelLintError(f"{name} must be True, False or None, not {describe(value)}")

    def _check_token_ids(self) -> None:
        for name in ("model_bos_id", "model_pad_id"):
            if getattr(self, name) is not None:
                _token_id(getattr(self, name), name)
        for name in TUPLE_FACTS:
            for value in getattr(self, name):
                _token_id(value, f"{name} entry")
        for name in ("pad_id", "bos_id", "eos_id"):
            value = getattr(self, name)
            if value is None:
                continue
            _token_id(value, name)
            # A tokenizer id past a model's embedding table is tokenizer-model-mismatch's finding.
            from_model = self.origin.get("vocab_size") == "model" != self.origin.get(name)
            if self.vocab_size is not None and value >= self.vocab_size and not from_model:
                raise LabelLintError(
                    f"{name} {value} is not below vocab_size {self.vocab_size}")

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
            elif f.name == "chat" and value is not None:
                value = value.describe()
            out[f.name] = {"value": value, "from": self.origin.get(f.name, "default")}
        return out


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _token_id(value: Any, name: str) -> None:
    if not _is_int(value) or not 0 <= value < ID_LIMIT:
        raise LabelLintError(f"{name} must be a token id (0 or more), not {describe(value)}")


FACT_NAMES = tuple(f.name for f in fields(Facts) if f.name != "origin")
TUPLE_FACTS = ("end_of_turn_ids", "model_eos_ids")


def merge_facts(*layers: tuple[str, Mapping[str, Any]]) -> Facts:
    """Build Facts from (origin, values) layers, the first layer that knows a fact winning."""
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name, layer in layers:
        for key, value in layer.items():
            if key not in FACT_NAMES:
                raise LabelLintError(f"unknown fact {key!r}; known facts: {', '.join(FACT_NAMES)}")
            if value is None and key in ("bos_id", "pad_id") and name == "tokenizer" and \
                    key not in origin:
                # A tokenizer without BOS (Qwen, GPT-NeoX) is an answer, not a gap: nothing is
                # inferred in its place, and the BOS rules do not apply. One without a pad token
                # (Llama, GPT-2) is noted so that a skip says so, though padding in the data may
                # still show which id the collator pads with.
                origin[key] = name
            if value is None or key in values:
                continue
            if key in TUPLE_FACTS:
                if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
                    raise LabelLintError(f"{key} must be a list of token ids, not "
                                         f"{describe(value)}")
                value = tuple(value)
            values[key] = value
            origin[key] = name
    return Facts(**values, origin=origin)
