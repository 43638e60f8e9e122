"""Facts about the tokenizer and model that rules need, and where each one came from.

A fact is given by the user, read from a tokenizer or model, inferred from the data, or a
default. The report states the origin of each, because an inferred EOS id is a guess and a
reader should know which findings rest on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np

from .arguments import ID_LIMIT, describe
from .errors import LabelLintError

if TYPE_CHECKING:
    from .batch import Batch
    from .chat import ChatFormat

LABEL_SHIFTS = ("model", "dataset")

# How sure inference must be before it names a token. A fact inferred from too little or too
# mixed evidence is left unknown, and the rules that need it are skipped, never guessed at.
MIN_ROWS_TO_INFER = 2
SHARE_OF_ROWS = 0.9
MIN_ROWS_FOR_BLOCKS = 4
MIN_PILE_UP = 3
SPIKE_WINDOW = 8


@dataclass(frozen=True)
class Facts:
    """What the rules know about the tokenizer, the model and the label convention.

    label_shift: "model" is the Hugging Face convention (labels aligned with input_ids, the model
    shifts them); "dataset" means labels are already shifted (labels[t] is the target of
    position t), as torchtune prepares them.
    end_of_turn_ids: ids that also end a supervised answer (`<|im_end|>`, `<|eot_id|>`), read from
    the tokenizer's special tokens.
    chat: the chat template's role headers and turn end as ids, and the special texts that must
    stay one token (labellint.chat.ChatFormat), found from the tokenizer's template.
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
        if self.chat is not None and not hasattr(self.chat, "headers"):
            raise LabelLintError("chat must be a labellint.chat.ChatFormat, not "
                                 f"{type(self.chat).__name__}")

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


def _dominant(values: np.ndarray, *, share: float, over: int,
              min_over: int = MIN_ROWS_TO_INFER) -> int | None:
    """The most common value, if it makes up `share` of `over` items; else None."""
    if values.size == 0 or over < min_over:
        return None
    uniq, counts = np.unique(values, return_counts=True)
    top = int(np.argmax(counts))
    return int(uniq[top]) if counts[top] >= share * over else None


def infer_pad_id(b: Batch) -> int | None:
    """The id at the masked edge of rows, when one id clearly dominates there.

    Rows that end with attention off end in padding (nobody hides the end of an answer), so the
    trailing edge decides. Only without such rows does the leading edge (left padding) count,
    and then only when the masked positions are nearly all that one id: a hidden prompt, a
    classic masking mistake, is masked at the leading edge too, but with many different ids.
    """
    hidden = ~b.attended
    last = b.ends[b.nonempty] - 1
    trailing = b.input_ids[last[hidden[last]]]
    if trailing.size:
        return _dominant(trailing, share=SHARE_OF_ROWS, over=trailing.size, min_over=1)
    first = b.starts[b.nonempty]
    leading = b.input_ids[first[hidden[first]]]
    pad = _dominant(leading, share=SHARE_OF_ROWS, over=leading.size, min_over=1)
    masked = b.input_ids[hidden & b.at_rows(b.row_any(hidden))]
    if pad is None or np.count_nonzero(masked == pad) < SHARE_OF_ROWS * masked.size:
        return None
    return pad


def _edges(b: Batch, index: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
    """The ids at each row's edge token, and at its real neighbour `step` inward."""
    edge, ok = b.ids_at(index)
    near, near_ok = b.ids_at(index, step)
    return edge[ok], near[near_ok]


def _owned_by_edges(b: Batch, token: int | None, edge: np.ndarray, near: np.ndarray) -> bool:
    """Whether more than half of the token's real occurrences sit at a row's edge.

    `<|im_start|>` starts every ChatML row but also every other turn, and `<|im_end|>` ends
    every turn: neither is BOS or EOS. A doubled BOS still counts: both copies are at the edge.
    """
    if token is None:
        return False
    at_edges = np.count_nonzero(edge == token) + np.count_nonzero(near == token)
    return 2 * int(at_edges) > int(np.count_nonzero(b.input_ids[b.real] == token))


def infer_bos_id(b: Batch) -> int | None:
    """The first real token, when nearly every row starts with it and it rarely occurs elsewhere."""
    first, second = _edges(b, b.first_real_index, 1)
    bos = _dominant(first, share=SHARE_OF_ROWS, over=first.size)
    return bos if _owned_by_edges(b, bos, first, second) else None


def infer_eos_id(b: Batch) -> int | None:
    """The last real token, when nearly every row ends with it and it rarely occurs elsewhere."""
    last, before = _edges(b, b.last_real_index, -1)
    eos = _dominant(last, share=SHARE_OF_ROWS, over=last.size)
    return eos if _owned_by_edges(b, eos, last, before) else None


def infer_max_length(b: Batch) -> int | None:
    """The length rows were cut to, when the data shows it beyond doubt.

    Either every row has the same real length (fixed-length blocks, as run_clm's group_texts
    makes), or several rows pile up at exactly the longest length, a spike above every length
    just below it (truncation). A smaller spike (two rows) counts when those rows end mid-answer
    while the shorter ones end with a stop token (`cut_at_longest`).
    """
    lengths = b.real_lengths
    if lengths.size == 0 or lengths.max() == 0:
        return None
    longest = int(lengths.max())
    width = b.lengths
    if b.may_pad and (width == width[0]).all() and longest < width[0]:
        # Padded to a fixed width (padding="max_length") that no row fills: nothing was cut,
        # whatever lengths happen to repeat.
        return None
    if lengths.size >= MIN_ROWS_FOR_BLOCKS and (lengths == longest).all():
        return longest
    counts = np.bincount(lengths)
    at_max = int(counts[longest])
    below = counts[max(longest - SPIKE_WINDOW, 0) : longest]
    if at_max == lengths.size:  # every row alike, but too few rows to call them blocks
        return None
    if at_max <= below.max(initial=0):
        return None
    if at_max < max(MIN_PILE_UP, 0.01 * lengths.size):
        # Too few to call a spike on their own: the way they end must show the cut.
        return longest if cut_at_longest(b, longest) else None
    return longest


def cut_at_longest(b: Batch, longest: int) -> bool:
    """Whether the rows at the longest real length were cut there: at least two of them, and
    most, end with a supervised token and no stop token, while the shorter rows with a target
    nearly all end with one.

    That is what truncation leaves behind (TRL's max_length, the llama-recipes `max_words`
    recipe), and what no collator's padding makes: padding to the longest row leaves that row
    as it was, EOS and all, and a row missing its EOS for another reason is missing it at any
    length (missing-eos), not only at the longest.
    """
    if b.labels is None or not b.facts.stop_ids:
        return False
    lengths = b.real_lengths
    at_longest = lengths == longest
    cut = at_longest & b.ends_supervised & ~b.ends_with_stop
    n_cut = int(np.count_nonzero(cut))
    shorter = ~at_longest & (lengths > 0) & (b.targets_per_row > 0)
    n_shorter = int(np.count_nonzero(shorter))
    return (n_cut >= MIN_ROWS_TO_INFER and 2 * n_cut > np.count_nonzero(at_longest)
            and n_shorter >= MIN_ROWS_TO_INFER
            and np.count_nonzero(shorter & b.ends_with_stop) >= SHARE_OF_ROWS * n_shorter)


def infer_facts(sample: Batch) -> Facts:
    """Fill the facts the sample's Facts lack from the data; inferred ones are marked so."""
    facts = sample.facts
    if sample.length_mismatch.any():
        # A mismatched row's columns are stand-ins: they say nothing about the tokenizer.
        sample = sample.take_rows(~sample.length_mismatch)
    inferred: dict[str, Any] = {}
    if facts.pad_id is None and sample.attention_mask is not None:
        inferred["pad_id"] = infer_pad_id(sample)
        # Padding depends on the pad id, and the edge tokens below depend on padding.
        sample = sample.with_facts(replace(facts, pad_id=inferred["pad_id"]))
    if facts.bos_id is None and "bos_id" not in facts.origin:
        inferred["bos_id"] = infer_bos_id(sample)
    if facts.eos_id is None:
        inferred["eos_id"] = infer_eos_id(sample)
    if facts.max_length is None:
        # A cut shows as answers ending without EOS: the EOS just inferred says which that is.
        eos = facts.eos_id if facts.eos_id is not None else inferred["eos_id"]
        inferred["max_length"] = infer_max_length(sample.with_facts(replace(
            sample.facts, eos_id=eos)))
    if facts.assistant_only_loss is None and facts.chat is not None:
        from .chat import infer_assistant_only_loss

        inferred["assistant_only_loss"] = infer_assistant_only_loss(sample)
    known = {k: v for k, v in inferred.items() if v is not None}
    origin = dict(facts.origin) | {k: "inferred from data" for k in known}
    return replace(facts, **known, origin=origin)
