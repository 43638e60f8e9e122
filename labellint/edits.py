"""Rules' Edits applied to one chunk's token columns, as vectorised array surgery.

A `Working` chunk starts as the columns a reader gave (raw values and offsets per column) and
takes each repair's Edit in turn; every rule sees the chunk as the repairs before it left it.
It remembers which of the chunk's rows it changed, where each of its tokens came from (so that
columns labellint does not read lose the same tokens), and which rows and columns it dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .batch import Batch
from .columns import SHIFT_LABELS
from .facts import Facts
from .ragged import IndexedMask, ranges_index
from .registry import REQUIREMENTS, Edit, Rule, Skip

# The order repairs run in: a token removed first (every later position moves with it), then
# labels moved, then labels set, then whole columns and rows dropped.
ORDER = ("LL401", "LL301", "LL302", "LL104", "LL103", "LL304", "LL403", "LL603", "LL502",
         "LL101")


def repair_order(rules: list[Rule]) -> list[Rule]:
    """Rules that have a repair, in the order their repairs run."""
    rank = {code: i for i, code in enumerate(ORDER)}
    return sorted((r for r in rules if r.repair is not None),
                  key=lambda r: (rank.get(r.code, len(ORDER)), r.code))


@dataclass
class Applied:
    """What one repair changed in one chunk: rows (the chunk's, as read) with their positions
    (in the row as the repair found it), tokens changed, rows dropped, hits left unfixed."""

    rows: np.ndarray
    positions: list[np.ndarray]
    tokens: int = 0
    dropped: int = 0
    left: int = 0
    columns_dropped: tuple[str, ...] = ()


@dataclass
class Working:
    """One chunk as the repairs change it."""

    columns: dict[str, tuple[np.ndarray, np.ndarray]]
    real: frozenset  # the columns stored in the data (not derived from a boundary column)
    origin: np.ndarray = field(init=False)  # each token's flat index in input_ids as read
    rows: np.ndarray = field(init=False)  # each row's index in the chunk as read
    changed: np.ndarray = field(init=False)  # per row as read: some repair changed it
    deleted: bool = False
    dropped_columns: set = field(default_factory=set)
    _owned: set = field(default_factory=set)

    def __post_init__(self) -> None:
        ids, offsets = self.columns["input_ids"]
        self.read_offsets = offsets  # input_ids' row offsets as read
        self.read = dict(self.columns)  # the columns as read (repairs copy before writing)
        self.origin = np.arange(ids.size, dtype=np.int64)
        self.rows = np.arange(offsets.size - 1, dtype=np.int64)
        self.changed = np.zeros(offsets.size - 1, dtype=bool)

    def batch(self, facts: Facts, derived: str | None) -> Batch:
        chunk: dict[str, Any] = dict(self.columns)
        if SHIFT_LABELS in chunk:
            chunk["labels"] = chunk.pop(SHIFT_LABELS)
        b = Batch.from_columns(chunk, facts)
        if derived is not None and "labels" not in chunk:
            b = b.with_collator_labels(mask_pad_id=derived == "pad-id")
        return b

    def _label_column(self) -> str:
        return SHIFT_LABELS if SHIFT_LABELS in self.columns else "labels"

    def _writable(self, values: np.ndarray, name: str) -> np.ndarray:
        if name not in self._owned:
            values = values.copy()  # the reader's arrays may be Arrow's, read-only
            self._owned.add(name)
        return values

    def _mapped(self, name: str, index: np.ndarray, rows: np.ndarray, b: Batch) -> np.ndarray:
        """Flat indices of input_ids' tokens `index` in the column `name`'s own layout."""
        offsets = self.columns[name][1]
        return offsets[rows] + (index - b.offsets[rows])

    def apply(self, edit: Edit, b: Batch) -> Applied:
        """Apply `edit` (made on `b`, built from this chunk) and say what it changed."""
        left = edit.left
        sets = dict(edit.set)
        if "labels" in sets and self._label_column() not in self.columns:
            left += len(np.atleast_1d(sets.pop("labels")[0]))  # derived labels: nothing stored
        delete = np.zeros(0, np.int64) if edit.delete is None else np.asarray(edit.delete)
        if delete.size and "position_ids" in self.columns and "position_ids" not in self.real:
            # position_ids made from seq_lengths: a removed token would need the lengths
            # rewritten, which this fix does not do.
            left += delete.size
            delete = np.zeros(0, np.int64)
            sets.pop("position_ids", None)
            if b.facts.label_shift == "dataset":
                sets.pop("labels", None)
        touched = self._set(sets, b)
        if delete.size:
            touched.append(delete)
        index = np.unique(np.concatenate(touched)) if touched else np.zeros(0, np.int64)
        rows = b.rows_of(index)
        applied = Applied(*_positions(index, rows, b), tokens=int(index.size), left=left)
        if delete.size:
            self._delete(delete, b)
        for name in edit.drop_columns:
            if name in self.columns:
                self.columns.pop(name)
                self.dropped_columns.add(name)
                applied.columns_dropped += (name,)
        if edit.drop_rows is not None and np.size(edit.drop_rows):
            drop = np.unique(np.asarray(edit.drop_rows, dtype=np.int64))
            applied.rows = np.union1d(applied.rows, self.rows[drop])
            applied.positions = [np.zeros(0, np.int64)] * applied.rows.size
            applied.dropped = int(drop.size)
            self._drop_rows(drop)
        if applied.columns_dropped and edit.rows is not None and not applied.rows.size:
            applied.rows = self.rows[np.asarray(edit.rows, dtype=np.int64)]
            applied.positions = [np.zeros(0, np.int64)] * applied.rows.size
        self.changed[applied.rows] = True
        return applied

    def _set(self, sets: Mapping[str, tuple[Any, Any]], b: Batch) -> list[np.ndarray]:
        """Column values set at flat indices of `b`; returns the indices set, per column."""
        touched = []
        for ours, (index, values) in sets.items():
            name = self._label_column() if ours == "labels" else ours
            index = np.asarray(index, dtype=np.int64)
            if name not in self.columns or name not in self.real or not index.size:
                continue
            column, offsets = self.columns[name]
            column = self._writable(column, name)
            column[self._mapped(name, index, b.rows_of(index), b)] = values
            self.columns[name] = (column, offsets)
            touched.append(index)
        return touched

    def _delete(self, index: np.ndarray, b: Batch) -> None:
        rows = b.rows_of(index)
        per_row = np.bincount(rows, minlength=b.n_rows)
        for name, (values, offsets) in list(self.columns.items()):
            keep = np.ones(values.size, dtype=bool)
            keep[self._mapped(name, index, rows, b)] = False
            new_offsets = offsets - np.concatenate([[0], np.cumsum(per_row)])
            self.columns[name] = (values[keep], new_offsets)
            if name == "input_ids":
                self.origin = self.origin[keep]
        self._owned = set(self.columns)  # values[keep] made new arrays, this chunk's own
        self.deleted = True

    def _drop_rows(self, drop: np.ndarray) -> None:
        keep_rows = np.ones(self.rows.size, dtype=bool)
        keep_rows[drop] = False
        for name, (values, offsets) in list(self.columns.items()):
            lengths = np.diff(offsets)
            keep = np.repeat(keep_rows, lengths)
            new_offsets = np.concatenate([[0], np.cumsum(lengths[keep_rows])])
            self.columns[name] = (values[keep], new_offsets)
            if name == "input_ids":
                self.origin = self.origin[keep]
        self.rows = self.rows[keep_rows]


def _positions(index: np.ndarray, rows: np.ndarray, b: Batch) -> tuple[np.ndarray, list]:
    """The rows of `index` and, per row, the positions in it (both sorted)."""
    if not index.size:
        return np.zeros(0, np.int64), []
    first = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    within = index - b.offsets[rows]
    return rows[first], np.split(within, first[1:])


def hits(rule: Rule, b: Batch, options: Mapping[str, Any]) -> np.ndarray | str | None:
    """The rule's hits on `b` as a mask (rows whose columns do not line up left out), or why it
    was not judged (a str), or None when it found nothing."""
    missing = [req for req in rule.requires if _missing(b, req)]
    if missing:
        return REQUIREMENTS[missing[0]]
    result = rule.func(b, **options)
    if isinstance(result, Skip):
        return result.reason
    if rule.per == "batch":
        return None
    mask = np.array(result, dtype=bool) if not isinstance(result, IndexedMask) else \
        np.asarray(result, dtype=bool).copy()
    if b.length_mismatch.any() and not rule.misaligned_rows:
        mask &= ~(b.length_mismatch if rule.per == "row" else
                  np.repeat(b.length_mismatch, b.lengths))
    return mask if mask.any() else None


def _missing(b: Batch, requirement: str) -> bool:
    if requirement in ("labels", "attention_mask", "position_ids"):
        return getattr(b, requirement) is None
    if requirement == "padding":
        return not b.knows_padding
    return getattr(b.facts, requirement) is None


def follow_index(offsets: np.ndarray, w: Working) -> tuple[np.ndarray, np.ndarray]:
    """For a token column labellint does not read (row `offsets` as read): which of its flat
    values each kept row keeps, and the new offsets. A changed row as long as its input_ids
    loses the tokens the repairs removed; every other row is kept whole."""
    kept = w.rows
    lengths = np.diff(offsets)[kept]
    ids_offsets = w.columns["input_ids"][1]
    same = (lengths == np.diff(w.read_offsets)[kept]) & w.changed[kept]
    new_lengths = np.where(same, np.diff(ids_offsets), lengths)
    out_offsets = np.concatenate([[0], np.cumsum(new_lengths)]).astype(np.int64)
    index = np.empty(int(out_offsets[-1]), dtype=np.int64)
    rows = np.flatnonzero(~same)
    index[ranges_index(out_offsets[rows], out_offsets[rows + 1])] = \
        ranges_index(offsets[kept[rows]], offsets[kept[rows] + 1])
    rows = np.flatnonzero(same)
    tokens = ranges_index(ids_offsets[rows], ids_offsets[rows + 1])
    read_row = np.repeat(kept[rows], new_lengths[rows])
    index[ranges_index(out_offsets[rows], out_offsets[rows + 1])] = \
        offsets[read_row] + (w.origin[tokens] - w.read_offsets[read_row])
    return index, out_offsets


__all__ = ["Applied", "Working", "follow_index", "hits", "repair_order"]
