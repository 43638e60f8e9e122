"""Facts inferred from the data: the pad, BOS, EOS ids, max_length, assistant_only_loss.

Inference fills only what the user, the tokenizer and the model left unknown, and names a token
only on clear evidence: a fact inferred from too little or too mixed evidence stays unknown.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from .batch import Batch
from .facts import Facts
from .turns import prompt_rows

# How sure inference must be before it names a token. A fact inferred from too little or too
# mixed evidence is left unknown, and the rules that need it are skipped, never guessed at.
MIN_ROWS_TO_INFER = 2
SHARE_OF_ROWS = 0.9
MIN_ROWS_FOR_BLOCKS = 4
MIN_PILE_UP = 3
SPIKE_WINDOW = 8


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
    occurs = np.count_nonzero(b.input_ids == token)
    if b.may_pad:  # padding is a small share: its occurrences are taken off, not the rest kept
        occurs -= np.count_nonzero(b.input_ids[b.pad_index] == token)
    return 2 * int(at_edges) > int(occurs)


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
        inferred["assistant_only_loss"] = infer_assistant_only_loss(sample)
    known = {k: v for k, v in inferred.items() if v is not None}
    origin = dict(facts.origin) | {k: "inferred from data" for k in known}
    return replace(facts, **known, origin=origin)


def infer_assistant_only_loss(b: Batch, *, share_masked: float = 0.5,
                              share_trained: float = 0.9, min_rows: int = 2) -> bool | None:
    """Whether the data masks prompt turns (True) or trains on whole conversations (False).

    Read from the chat rows that have a prompt turn and a trained token: True when at least half
    of them mask every prompt turn, False when nearly all train every prompt turn (full-sequence
    training, chosen on purpose), unknown in between or on too few rows.
    """
    if b.labels is None or b.facts.chat is None or not b.facts.chat.headers:
        return None
    rows = prompt_rows(b)
    judged = (rows["prompts"] > 0) & (b.targets_per_row > 0)
    n = int(judged.sum())
    if n < min_rows:
        return None
    if np.count_nonzero(judged & (rows["trained"] == 0)) >= share_masked * n:
        return True
    if np.count_nonzero(judged & (rows["trained"] == rows["prompts"])) >= share_trained * n:
        return False
    return None

