"""Packed sequences in a Batch: where sequences packed into one row start, as rows of their own.

Boundaries are rare (a few per row at most), so these views find candidate positions with one
vectorised pass and judge only those: per-candidate numpy, never a per-token mask chain. Each
view is computed once per batch (`batch_view`) and shared by every rule that asks.
"""

from __future__ import annotations

import numpy as np

from .batch import Batch, batch_view
from .ragged import union_sorted


def _position_steps(b: Batch) -> np.ndarray:
    """position_ids[t] - position_ids[t-1]; meaningful only inside a row."""
    pos = b.position_ids.astype(np.int64, copy=False)
    out = np.ones(b.n_tokens, dtype=np.int64)
    out[1:] = pos[1:] - pos[:-1]
    return out


def _row_first_position(b: Batch) -> np.ndarray:
    """Per row, the position id of its first real token (0 without position_ids)."""
    out = np.zeros(b.n_rows, dtype=np.int64)
    if b.position_ids is not None:
        ok = b.first_real_index >= 0
        out[ok] = b.position_ids[b.first_real_index[ok]]
    return out


@batch_view
def position_breaks(b: Batch) -> np.ndarray:
    """Flat indices of real tokens, after their row's first, where position_ids do not
    count up by one: packed-sequence starts and invalid steps alike."""
    if b.position_ids is None:
        return np.zeros(0, dtype=np.int64)
    index = np.flatnonzero(_position_steps(b) != 1)
    return index[b.inside_row(index)]


@batch_view
def position_restarts(b: Batch) -> np.ndarray:
    """Flat indices where position_ids go back to the row's first value: a new sequence.

    DataCollatorWithFlattening, TRL's padding-free collator and pack_dataset's
    `seq_lengths` all restart at 0 (at `position_ids_start` in general: the row's first
    value covers it). Padding is left out: TRL pads position_ids with 0.
    """
    index = position_breaks(b)
    if index.size == 0:
        return index
    rows = b.rows_of(index)
    return index[b.position_ids[index] == _row_first_position(b)[rows]]


def segment_changes(b: Batch) -> np.ndarray:
    """Flat indices where a segment-id attention_mask (1, 1, 2, 2, 3: Axolotl's and
    LLaMA-Factory's packing) takes a new value: the model isolates those segments."""
    mask = b.attention_mask
    if mask is None or mask.dtype == bool or mask.size == 0 or mask.max() <= 1:
        return np.zeros(0, dtype=np.int64)
    index = np.flatnonzero(mask[1:] != mask[:-1]) + 1
    index = index[(mask[index] > 0) & (mask[index - 1] > 0)]
    return index[b.inside_row(index)]


@batch_view
def sequence_starts(b: Batch) -> np.ndarray:
    """Flat indices where a packed sequence other than its row's first begins."""
    return union_sorted(position_restarts(b), segment_changes(b))


@batch_view
def packed(b: Batch) -> np.ndarray:
    """Rows holding several sequences: position_ids restart inside the row (or a
    segment-id attention_mask changes value); see `sequence_starts`."""
    return b.rows_hit(sequence_starts(b))


def sequences(b: Batch) -> Batch:
    """The packed sequences as rows of their own (the batch itself when nothing is packed).

    The flat columns are shared, not copied; `sequence_row` maps each back to its row.
    A row's padding stays with its first or last sequence.
    """
    # Not kept when it is the batch itself: a batch holding itself is a reference cycle, and
    # every chunk's arrays would wait for the garbage collector.
    return b if sequence_starts(b).size == 0 else _sequences(b)


@batch_view
def _sequences(b: Batch) -> Batch:
    starts = union_sorted(sequence_starts(b), b.starts[b.nonempty])
    seq = b.regroup(np.append(starts, b.n_tokens))
    seq.memos[sequence_starts] = np.zeros(0, dtype=np.int64)  # a sequence holds no other
    return seq


@batch_view
def sequence_row(b: Batch) -> np.ndarray:
    """The row of each of `sequences`' rows."""
    s = sequences(b)
    if s is b:
        return np.arange(b.n_rows, dtype=np.int64)
    return b.rows_of(s.starts)


@batch_view
def sequence_ends_row(b: Batch) -> np.ndarray:
    """Per sequence of `sequences`, whether it is its row's last."""
    row = sequence_row(b)
    return np.append(row[1:] != row[:-1], True)


def rows_of_sequences(b: Batch, per_sequence: np.ndarray) -> np.ndarray:
    """A row mask from a mask over `sequences`: a row is hit when one of its sequences is."""
    if sequences(b) is b:
        return per_sequence
    return np.bincount(sequence_row(b)[per_sequence], minlength=b.n_rows) > 0


def sequence_first(b: Batch, index: np.ndarray) -> np.ndarray:
    """For flat token indices: the flat index of the first real token of their sequence."""
    first = b.first_real_index[b.rows_of(index)]
    starts = sequence_starts(b)
    if starts.size == 0:
        return first
    j = np.searchsorted(starts, index, side="right") - 1
    return np.maximum(first, np.where(j >= 0, starts[np.maximum(j, 0)], -1))
