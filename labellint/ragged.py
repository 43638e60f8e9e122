"""Ragged rows over flat token arrays: (values, offsets) columns, per-row reductions, flat indices.

Arrow's list layout: a column is (values, offsets), row i being values[offsets[i]:offsets[i+1]].
`Rows` reduces flat arrays per row (Batch is Rows with token columns); flat index arrays are kept
sorted, so membership and union are binary searches and merges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Ragged = tuple[np.ndarray, np.ndarray]  # (flat values, offsets of n_rows + 1)
# A mask holding at fewer than 1 in SPARSE tokens is reduced per row from its flat indices.
SPARSE = 16


def concat_ragged(parts: list[Ragged]) -> Ragged:
    """Join ragged columns end to end."""
    if len(parts) == 1:
        return parts[0]
    values = np.concatenate([v for v, _ in parts])
    shifts = np.cumsum([0] + [int(o[-1]) for _, o in parts[:-1]])
    offsets = np.concatenate([parts[0][1][:1]] + [o[1:] + s for (_, o), s in zip(parts, shifts)])
    return values, offsets


def slice_ragged(column: Ragged, start: int, stop: int) -> Ragged:
    """Rows [start, stop) of a ragged column, with offsets rebased to 0."""
    values, offsets = column
    lo, hi = int(offsets[start]), int(offsets[stop])
    return values[lo:hi], offsets[start : stop + 1] - lo


def union_sorted(*parts: np.ndarray) -> np.ndarray:
    """The sorted union of flat index arrays (np.union1d hashes, several times slower here)."""
    out = np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])
    out.sort()
    return out[np.r_[True, out[1:] != out[:-1]]] if out.size else out


def ranges_index(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The flat indices of the ranges [lo, hi), in order (sorted when the ranges are)."""
    lengths = hi - lo
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    before = np.cumsum(lengths) - lengths  # indices of ranges before each one
    return np.repeat(lo - before, lengths) + np.arange(total, dtype=np.int64)


def where_ids(values: np.ndarray, ids: tuple[int, ...], avoid: int | None = None) -> dict:
    """{id: flat indices of `values` equal to it, sorted} for a few ids.

    Ids close together (BOS and EOS mostly are) are found in one pass over the values for the
    range they span, unless it holds more than the ids (at most 8 apart, not `avoid`: the pad
    id, which can fill much of a batch); then one pass each.
    """
    lo, hi = min(ids), max(ids)
    kind = values.dtype.kind
    fits = kind in "iu" and np.iinfo(values.dtype).min <= lo and hi <= np.iinfo(values.dtype).max
    if len(ids) == 1 or hi - lo > 8 or not fits or (avoid is not None and lo <= avoid <= hi
                                                    and avoid not in ids):
        return {i: np.flatnonzero(values == i) for i in ids}
    shifted = values - np.array(lo, dtype=values.dtype)  # wraps below lo: past the range
    at = np.flatnonzero(shifted.view(f"u{values.dtype.itemsize}") <= hi - lo)
    found = values[at]
    return {i: at[found == i] for i in ids}


def in_sorted(values: np.ndarray, sorted_index: np.ndarray) -> np.ndarray:
    """np.isin for a sorted array of flat indices, by binary search."""
    if not sorted_index.size:
        return np.zeros(values.shape, dtype=bool)
    at = np.minimum(np.searchsorted(sorted_index, values), sorted_index.size - 1)
    return sorted_index[at] == values


def is_any(values: np.ndarray, ids: tuple[int, ...]) -> np.ndarray:
    """values == any of a few ids: one comparison per id beats np.isin's sort or table."""
    out = np.zeros(values.shape, dtype=bool)
    for i in ids:
        out |= values == i
    return out


def outside_vocab(ids: np.ndarray, vocab_size: int | None) -> np.ndarray:
    """ids < 0 or >= vocab_size, in one pass: read as unsigned, a negative id is past any vocab."""
    if vocab_size is None or (ids.dtype.kind in "iu" and vocab_size > np.iinfo(ids.dtype).max):
        return ids < 0  # no id of this dtype reaches the vocabulary's end
    if ids.dtype.kind == "i":
        return ids.view(ids.dtype.str.replace("i", "u")) >= vocab_size
    return (ids < 0) | (ids >= vocab_size)


def outside_vocab_index(ids: np.ndarray, vocab_size: int | None) -> np.ndarray:
    """Flat indices where `outside_vocab` holds, sorted."""
    if ids.dtype.kind == "i" and ids.size:
        # Mostly none: one reduction says so, with no mask to allocate and search. Read as
        # unsigned, a negative id is past any vocabulary its dtype can reach.
        if vocab_size is None or vocab_size > np.iinfo(ids.dtype).max:
            none = int(ids.min()) >= 0
        else:
            none = int(ids.view(ids.dtype.str.replace("i", "u")).max()) < vocab_size
        if none:
            return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(outside_vocab(ids, vocab_size))


@dataclass(frozen=True)
class Runs:
    """The runs of True in a token mask, cut at row boundaries, in flat order."""

    start: np.ndarray  # flat index of each run's first token
    stop: np.ndarray  # flat index one past each run's last token
    row: np.ndarray  # the row of each run (ascending)

    @property
    def lengths(self) -> np.ndarray:
        return self.stop - self.start

    def first_of_row(self) -> np.ndarray:
        return np.flatnonzero(np.r_[True, self.row[1:] != self.row[:-1]]) if self.row.size \
            else np.zeros(0, dtype=np.int64)

    def last_of_row(self) -> np.ndarray:
        return np.flatnonzero(np.r_[self.row[1:] != self.row[:-1], True]) if self.row.size \
            else np.zeros(0, dtype=np.int64)


class cached_property:  # noqa: N801  (named for what it replaces)
    """functools.cached_property without its lock.

    Before Python 3.12 that lock is one per property for the whole class, so threads checking
    different chunks would wait on each other for every derived view.
    """

    def __init__(self, func):
        self.func = func
        self.__doc__ = func.__doc__

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.func(obj)
        return value


# A mask holding at fewer than 1 in SPARSE tokens is reduced per row from its flat indices.
SPARSE = 16


class Rows:
    """Rows laid out by `offsets` over flat token arrays, with the per-row reductions over them.

    A subclass sets `offsets` (n_rows + 1, from 0) and may give `n_tokens` more cheaply.
    """

    offsets: np.ndarray

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])

    @property
    def n_rows(self) -> int:
        return len(self.offsets) - 1

    @cached_property
    def starts(self) -> np.ndarray:
        return self.offsets[:-1]

    @cached_property
    def ends(self) -> np.ndarray:
        return self.offsets[1:]

    @cached_property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @cached_property
    def row_of_token(self) -> np.ndarray:
        return np.repeat(np.arange(self.n_rows, dtype=np.int64), self.lengths)

    @cached_property
    def token_index(self) -> np.ndarray:
        return np.arange(self.n_tokens, dtype=np.int64)

    @cached_property
    def position_in_row(self) -> np.ndarray:
        return self.token_index - np.repeat(self.starts, self.lengths)

    def rows_of(self, index: np.ndarray) -> np.ndarray:
        """The row of each flat token index."""
        return np.searchsorted(self.offsets, index, side="right") - 1

    def row_sum(self, mask: np.ndarray) -> np.ndarray:
        """Per-row count of True (or sum of values); 0 for empty rows."""
        out = np.zeros(self.n_rows, dtype=np.int64)
        if not self.nonempty_starts.size:
            return out
        if mask.dtype == bool:
            hits = np.count_nonzero(mask)
            if hits == 0:
                return out
            if hits * SPARSE < mask.size:
                return np.bincount(self.rows_of(np.flatnonzero(mask)), minlength=self.n_rows)
            # A uint8 view summed into int32 runs about twice as fast as bools into int64.
            out[self.nonempty] = np.add.reduceat(mask.view(np.uint8), self.nonempty_starts,
                                                 dtype=np.int32)
            return out
        out[self.nonempty] = np.add.reduceat(mask, self.nonempty_starts, dtype=np.int64)
        return out

    def row_any(self, mask: np.ndarray) -> np.ndarray:
        return self.row_sum(mask) > 0

    def runs(self, mask: np.ndarray) -> Runs:
        """Where each run of True in `mask` starts and stops, runs cut at row boundaries."""
        # One search for every change (a run's start or stop), then the runs that go on across
        # a row boundary are cut there.
        at = np.flatnonzero(mask[1:] != mask[:-1])
        up = mask[at + 1]
        start, stop = at[up] + 1, at[~up] + 1
        if mask.size and mask[0]:
            start = np.r_[0, start]
        if mask.size and mask[-1]:
            stop = np.r_[stop, mask.size]
        inner = self.nonempty_starts[1:]  # the first is 0
        cut = inner[mask[inner] & mask[inner - 1]]
        if cut.size:
            start, stop = union_sorted(start, cut), union_sorted(stop, cut)
        return Runs(start, stop, self.rows_of(start))

    def count_per_row(self, runs: Runs) -> np.ndarray:
        """Per row, how many tokens the runs cover."""
        if not runs.row.size:
            return np.zeros(self.n_rows, dtype=np.int64)
        return np.bincount(runs.row, weights=runs.lengths,
                           minlength=self.n_rows).astype(np.int64)

    def first_index(self, runs: Runs) -> np.ndarray:
        """Per row, the flat index of the first token the runs cover; -1 for none."""
        out = np.full(self.n_rows, -1, dtype=np.int64)
        first = runs.first_of_row()
        out[runs.row[first]] = runs.start[first]
        return out

    def last_index(self, runs: Runs) -> np.ndarray:
        """Per row, the flat index of the last token the runs cover; -1 for none."""
        out = np.full(self.n_rows, -1, dtype=np.int64)
        last = runs.last_of_row()
        out[runs.row[last]] = runs.stop[last] - 1
        return out

    @cached_property
    def nonempty(self) -> np.ndarray:
        return self.lengths > 0

    @cached_property
    def nonempty_starts(self) -> np.ndarray:
        # reduceat over the starts of non-empty rows sums exactly each row: an empty row between
        # two others adds nothing, and reduceat cannot express an empty segment itself.
        return self.starts[self.nonempty]

    def segment(self, ufunc: np.ufunc, values: np.ndarray, empty) -> np.ndarray:
        """`ufunc.reduceat` per row, with `empty` for rows of no tokens."""
        out = np.full(self.n_rows, empty, dtype=values.dtype)
        if self.nonempty_starts.size:
            out[self.nonempty] = ufunc.reduceat(values, self.nonempty_starts)
        return out

    def at_rows(self, per_row: np.ndarray) -> np.ndarray:
        """Broadcast a per-row array to tokens."""
        return per_row[self.row_of_token]

    def rows_hit(self, index: np.ndarray) -> np.ndarray:
        """A row mask: the rows holding the flat token indices `index`."""
        out = np.zeros(self.n_rows, dtype=bool)
        out[self.rows_of(index)] = True
        return out

    def token_mask(self, index: np.ndarray) -> np.ndarray:
        """A token mask, True at the flat token indices `index`; it keeps them (`IndexedMask`)."""
        out = np.zeros(self.n_tokens, dtype=bool).view(IndexedMask)
        out[index] = True
        index = np.asarray(index)
        if index.dtype.kind in "iu":  # not a bool mask given as the index
            out.index = np.where(index < 0, index + out.size, index) if index.dtype.kind == "i" \
                and index.size and index.min() < 0 else index
        return out


class IndexedMask(np.ndarray):
    """A bool mask that keeps the flat indices it was made from, so that the engine reads a
    sparse finding without a pass over every token to find them again.

    `index` may hold repeats and be in any order, never a negative index. It is dropped (None)
    as soon as the mask could change: an assignment, an in-place ufunc, or any view taken of
    it. What is computed from the mask is a plain array.
    """

    index: np.ndarray | None = None

    def __array_finalize__(self, obj) -> None:
        self.index = None
        if isinstance(obj, IndexedMask):  # a view can write through to `obj`
            obj.index = None

    def __setitem__(self, key, value) -> None:
        self.index = None
        super().__setitem__(key, value)

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        if out is None:
            return getattr(ufunc, method)(*(_plain(i) for i in inputs), **kwargs)
        for o in out:
            if isinstance(o, IndexedMask):
                o.index = None
        getattr(ufunc, method)(*(_plain(i) for i in inputs), out=tuple(_plain(o) for o in out),
                               **kwargs)
        return out[0] if len(out) == 1 else out


def _plain(x):
    return x.view(np.ndarray) if isinstance(x, IndexedMask) else x
