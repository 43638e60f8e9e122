"""Batch: the one normalised view of tokens that every rule reads.

Saved datasets are ragged, so a Batch holds flat token columns plus row offsets (Arrow's list
layout) instead of a padded rectangle; a padded collator batch becomes equal-length rows whose
padding stays visible. Derived views are computed once, on first use, and shared by every rule.

Speed comes from touching each token as few times as possible. Per-row answers are read from
the runs of a mask (where each run of True starts and stops: a few passes over bools, then work
per run) or from the few flat indices where a sparse mask holds, rather than from a reduction or
a per-token row index over every token; and padding views cost nothing when, as in most saved
datasets, no token can be padding, and little when some rows are padded: padding is counted per
row from the row edges (`pad_edges`), and the views that need single tokens read those counts.
"""

from __future__ import annotations

import functools
from typing import Callable, Mapping, TypeVar

import numpy as np

from .columns import COLUMNS, realign
from .facts import Facts
from .padding import pad_edges
from .ragged import (SPARSE, Ragged, Rows, Runs, cached_property, is_any, outside_vocab,
                     outside_vocab_index, ranges_index, union_sorted, where_ids)

T = TypeVar("T")


class Batch(Rows):
    """Rows of tokens as flat arrays plus `offsets`; `row_start` is the global index of row 0."""

    def __init__(
        self,
        input_ids: np.ndarray,
        offsets: np.ndarray,
        *,
        labels: np.ndarray | None = None,
        attention_mask: np.ndarray | None = None,
        position_ids: np.ndarray | None = None,
        facts: Facts = Facts(),
        row_start: int = 0,
        length_mismatch: np.ndarray | None = None,
    ) -> None:
        self.input_ids = input_ids
        self.offsets = offsets
        self.labels = labels
        self.attention_mask = attention_mask
        self.position_ids = position_ids
        self.facts = facts
        self.row_start = row_start
        self.length_mismatch = (
            np.zeros(len(offsets) - 1, dtype=bool) if length_mismatch is None else length_mismatch
        )

    @classmethod
    def from_columns(
        cls, columns: Mapping[str, Ragged], facts: Facts = Facts(), **kwargs
    ) -> Batch:
        """Align every column to input_ids' rows; rows whose columns differ in length are marked.

        A marked row keeps its input_ids, and its other columns are replaced by neutral values
        (no label, attended, natural positions) so that only `length-mismatch` reports it.
        """
        ids, offsets = columns["input_ids"]
        lengths = np.diff(offsets)
        mismatch = np.zeros(lengths.size, dtype=bool)
        for _, col_offsets in columns.values():
            mismatch |= np.diff(col_offsets) != lengths
        aligned = {}
        for name in COLUMNS[1:]:
            if name not in columns:
                continue
            values, col_offsets = columns[name]
            if not mismatch.any():
                aligned[name] = values
                continue
            aligned[name] = realign(values, col_offsets, offsets, mismatch, name,
                                    facts.ignore_index)
        return cls(ids, offsets, facts=facts, length_mismatch=mismatch, **aligned, **kwargs)

    @classmethod
    def from_dict(cls, batch: Mapping, facts: Facts = Facts(), **kwargs) -> Batch:
        """A Batch from a dict batch (lists, numpy, torch): for testing rules of your own."""
        from .columns import batch_to_chunk, column_names

        return cls.from_columns(batch_to_chunk(batch, column_names(None)), facts, **kwargs)

    def with_facts(self, facts: Facts) -> Batch:
        return Batch(
            self.input_ids,
            self.offsets,
            labels=self.labels,
            attention_mask=self.attention_mask,
            position_ids=self.position_ids,
            facts=facts,
            row_start=self.row_start,
            length_mismatch=self.length_mismatch,
        )

    def with_collator_labels(self, *, mask_pad_id: bool = False) -> Batch:
        """This batch with the labels a causal-LM collator builds: input_ids with padding masked
        (TRL's collator: `labels[attention_mask == 0] = -100`), or with every pad id masked
        (`mask_pad_id`: transformers' DataCollatorForLanguageModeling, which with pad == EOS
        masks each EOS too)."""
        dtype = np.promote_types(self.input_ids.dtype, np.int32)
        labels = self.input_ids.astype(dtype)
        if mask_pad_id and self.facts.pad_id is not None:
            labels[self.where_id(self.facts.pad_id)] = self.facts.ignore_index
        elif self.may_pad:
            labels[self.pad_index] = self.facts.ignore_index
        b = self.with_facts(self.facts)
        b.labels = labels
        return b

    def take_rows(self, keep: np.ndarray) -> Batch:
        """The rows where `keep` is True, as a Batch of their own (for whole-batch rules)."""
        tokens = self.at_rows(keep)
        offsets = np.zeros(int(keep.sum()) + 1, dtype=np.int64)
        np.cumsum(self.lengths[keep], out=offsets[1:])
        columns = {name: getattr(self, name)[tokens] for name in COLUMNS[1:]
                   if getattr(self, name) is not None}
        return Batch(self.input_ids[tokens], offsets, facts=self.facts, row_start=self.row_start,
                     **columns)

    @property
    def n_tokens(self) -> int:
        return int(self.input_ids.size)

    # -- labels --------------------------------------------------------------------------------

    @cached_property
    def supervised(self) -> np.ndarray | None:
        """Positions whose label is not ignore_index."""
        if self.labels is None:
            return None
        return self.labels != self.facts.ignore_index

    @cached_property
    def supervised_per_row(self) -> np.ndarray:
        if self.facts.label_shift == "model":  # targets plus a label at position 0
            out = self.targets_per_row.copy()
            out[self.nonempty] += self.supervised[self.nonempty_starts]
            return out
        return self.targets_per_row

    @cached_property
    def targets(self) -> np.ndarray | None:
        """Supervised labels the loss actually uses: with the model's shift, never position 0."""
        if self.labels is None:
            return None
        if self.facts.label_shift == "model":
            targets = self.supervised.copy()
            targets[self.nonempty_starts] = False
            return targets
        return self.supervised

    @cached_property
    def target_runs(self) -> Runs:
        return self.runs(self.targets)

    @cached_property
    def targets_per_row(self) -> np.ndarray:
        return self.count_per_row(self.target_runs)

    @cached_property
    def first_target_index(self) -> np.ndarray:
        """Flat index of each row's first target; -1 for rows with none."""
        return self.first_index(self.target_runs)

    @cached_property
    def trained(self) -> np.ndarray | None:
        """Input positions whose token is a target of the loss, under either label convention.

        With the model's shift that is where the label is kept (after position 0); with labels
        already shifted, the token after a kept label.
        """
        if self.labels is None:
            return None
        if self.facts.label_shift == "model":
            return self.targets
        out = np.zeros(self.n_tokens, dtype=bool)
        out[1:] = self.supervised[:-1]
        out[self.nonempty_starts] = False
        return out

    @cached_property
    def label_is_input(self) -> np.ndarray:
        """Supervised labels equal to input_ids at the same position."""
        return self.supervised & ~self.label_differs

    @cached_property
    def label_differs(self) -> np.ndarray:
        """Supervised labels that differ from input_ids at the same position."""
        return np.not_equal(self.labels, self.input_ids) & self.supervised

    @cached_property
    def label_differs_index(self) -> np.ndarray | None:
        """`label_differs`' flat indices, sorted, when few (labels a masked copy of input_ids,
        as for the model's shift); else None. Elsewhere a supervised label equals its input id,
        so the label views below ask the input's sparse lookups, and read labels only here."""
        differ = self.label_differs
        if np.count_nonzero(differ) * SPARSE >= self.n_tokens:
            return None
        return np.flatnonzero(differ)

    def targets_labelled(self, ids: tuple[int, ...]) -> np.ndarray:
        """Flat indices of targets whose label is one of `ids`, sorted."""
        differ = self.label_differs_index
        if differ is None:
            index = np.flatnonzero(is_any(self.labels, ids))
            return index[self.targets[index]]
        inputs = self.where_id(ids[0]) if len(ids) == 1 else \
            union_sorted(*[self.where_id(i) for i in ids])
        same = inputs[self.targets[inputs] & (self.labels[inputs] == self.input_ids[inputs])]
        other = differ[is_any(self.labels[differ], ids)]
        return union_sorted(same, other[self.targets[other]])

    @cached_property
    def outside_vocab_index(self) -> np.ndarray:
        """Flat indices of input ids outside the vocabulary (see `outside_vocab`), sorted."""
        return outside_vocab_index(self.input_ids, self.facts.vocab_size)

    @cached_property
    def invalid_label_index(self) -> np.ndarray:
        """Flat indices of supervised labels outside the vocabulary, sorted."""
        vocab = self.facts.vocab_size
        differ = self.label_differs_index
        if differ is None:
            return np.flatnonzero(self.supervised & outside_vocab(self.labels, vocab))
        inputs = self.outside_vocab_index
        same = inputs[self.supervised[inputs] & (self.labels[inputs] == self.input_ids[inputs])]
        return union_sorted(same, differ[outside_vocab(self.labels[differ], vocab)])

    def label_is_next_at(self, index: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """`label_is_next` at flat indices `index` only (`rows`: their rows, when known)."""
        if "label_is_next" in self.__dict__:
            return self.label_is_next[index]
        nxt = np.minimum(index + 1, self.n_tokens - 1)
        has_next = index + 1 < self.ends[self.rows_of(index) if rows is None else rows]
        return has_next & self.supervised[index] & (self.labels[index] == self.input_ids[nxt])

    @cached_property
    def label_is_next(self) -> np.ndarray:
        """Supervised labels equal to input_ids at the next position in the row."""
        out = np.zeros(self.n_tokens, dtype=bool)
        np.equal(self.labels[:-1], self.input_ids[1:], out=out[:-1])
        out[self.ends[self.nonempty] - 1] = False
        out &= self.supervised
        return out

    # -- attention and padding -----------------------------------------------------------------

    @cached_property
    def attended(self) -> np.ndarray:
        if self.attention_mask is None:
            return np.ones(self.n_tokens, dtype=bool)
        return self.attention_mask != 0

    @property
    def knows_padding(self) -> bool:
        return self.attention_mask is not None or self.facts.pad_id is not None

    @cached_property
    def hides_tokens(self) -> bool:
        """Whether attention_mask is 0 anywhere."""
        return self.n_attended < self.n_tokens

    @cached_property
    def n_attended(self) -> int:
        """How many tokens attention_mask leaves on (all without one)."""
        if self.attention_mask is None:
            return self.n_tokens
        return int(np.count_nonzero(self.attention_mask))

    @cached_property
    def may_pad(self) -> bool:
        """Whether any token can be padding: attention off somewhere, or a row ending in the
        pad id. Most saved datasets have neither, and then every padding view is free."""
        if self.hides_tokens:
            return True
        pad_id = self.facts.pad_id
        if pad_id is None:
            return False
        return bool((self.input_ids[self.ends[self.nonempty] - 1] == pad_id).any())

    @cached_property
    def pad_edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Per row, how many tokens of padding lead it and how many trail it (see `is_pad`):
        padding is a run at a row's edge, so it is measured from the edges inward."""
        if not self.may_pad:
            none = np.zeros(self.n_rows, dtype=np.int64)
            return none, none
        return pad_edges(self.input_ids, self.offsets,
                         attention_mask=self.attention_mask if self.hides_tokens else None,
                         pad_id=self.facts.pad_id, eos_id=self.facts.eos_id)

    @cached_property
    def hidden_index(self) -> np.ndarray:
        """Flat indices where attention is off, sorted."""
        return np.flatnonzero(self.attention_mask == 0)

    @cached_property
    def pad_index(self) -> np.ndarray:
        """Flat indices of padding, sorted."""
        lead, trail = self.pad_edges
        lo = np.stack([self.starts, self.ends - trail], axis=1).ravel()
        hi = np.stack([self.starts + lead, self.ends], axis=1).ravel()
        return ranges_index(lo, hi)

    @cached_property
    def hidden_content(self) -> np.ndarray:
        """Flat indices where attention is off on a token that is not padding, sorted."""
        if not self.hides_tokens:
            return np.zeros(0, dtype=np.int64)
        # The usual case, attention off on padding alone, is told from counts.
        in_padding = np.count_nonzero(self.attention_mask[self.pad_index] == 0)
        if in_padding == self.n_tokens - self.n_attended:
            return np.zeros(0, dtype=np.int64)
        hidden = self.hidden_index
        return hidden[self.real_at(hidden)]

    @cached_property
    def is_pad(self) -> np.ndarray:
        """Padding: a run of one pad id at either edge of a row, with attention off.

        Attention off in the middle of a row, or over several different ids, is hidden content
        rather than padding: the classic mistake of masking the prompt with attention_mask,
        which rules must tell apart from padding even when the pad id is unknown. Without an
        attention_mask, padding is the trailing run of the pad id; when the pad id is also EOS,
        the run's first token is the real EOS. Padding added by hand with attention_mask left
        at 1 (a trailing run of the pad id) is padding too.
        """
        out = np.zeros(self.n_tokens, dtype=bool)
        if self.may_pad:
            out[self.pad_index] = True
        return out

    @cached_property
    def real(self) -> np.ndarray:
        return ~self.is_pad if self.may_pad else np.ones(self.n_tokens, dtype=bool)

    def real_at(self, index: np.ndarray) -> np.ndarray:
        """Whether the tokens at flat indices `index` are real (not padding)."""
        if not self.may_pad:
            return np.ones(index.shape, dtype=bool)
        if "real" in self.__dict__:
            return self.real[index]
        # Real tokens are one range per row, between its leading and its trailing padding.
        rows = self.rows_of(index)
        lead, trail = self.pad_edges
        return (index >= (self.starts + lead)[rows]) & (index < (self.ends - trail)[rows])

    @cached_property
    def real_runs(self) -> Runs:
        rows = np.flatnonzero(self.real_lengths > 0)
        first = self.first_real_index[rows]
        return Runs(first, first + self.real_lengths[rows], rows)

    @cached_property
    def real_lengths(self) -> np.ndarray:
        if not self.may_pad:
            return self.lengths
        lead, trail = self.pad_edges
        return self.lengths - lead - trail

    @cached_property
    def first_real_index(self) -> np.ndarray:
        """Flat index of each row's first non-padding token; -1 for rows with none."""
        if not self.may_pad:
            return np.where(self.nonempty, self.starts, -1)
        return np.where(self.real_lengths > 0, self.starts + self.pad_edges[0], -1)

    @cached_property
    def last_real_index(self) -> np.ndarray:
        """Flat index of each row's last non-padding token; -1 for rows with none."""
        if not self.may_pad:
            return np.where(self.nonempty, self.ends - 1, -1)
        return np.where(self.real_lengths > 0, self.ends - self.pad_edges[1] - 1, -1)

    def ids_at(self, index: np.ndarray, step: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Per row, input_ids at flat `index + step`, and whether that is a real token of the row.

        With `first_real_index` or `last_real_index` and a step, this reads a row's edges.
        """
        pos = index + step
        ok = (index >= 0) & (pos >= self.starts) & (pos < self.ends)
        ids = np.full(self.n_rows, -1, dtype=np.int64)
        ids[ok] = self.input_ids[pos[ok]]
        if self.may_pad:  # a row's real tokens lie between its leading and trailing padding
            lead, trail = self.pad_edges
            ok &= (pos >= self.starts + lead) & (pos < self.ends - trail)
        return ids, ok

    @cached_property
    def at_max_length(self) -> np.ndarray:
        """Rows whose real length reaches max_length: cut there, or cut from a token stream."""
        if self.facts.max_length is None:
            return np.zeros(self.n_rows, dtype=bool)
        return self.real_lengths >= self.facts.max_length

    # -- special tokens ------------------------------------------------------------------------

    def where_id(self, token_id: int) -> np.ndarray:
        """Flat indices of input_ids equal to `token_id`, sorted (cached)."""
        cache = self.__dict__.setdefault("_where_id", {})
        if token_id not in cache:
            f = self.facts
            looked_up = tuple(i for i in dict.fromkeys((f.bos_id, *f.stop_ids)) if i is not None)
            if token_id in looked_up:  # rules ask for each of these: all found in one pass
                cache.update(where_ids(self.input_ids, looked_up, f.pad_id))
            else:
                cache[token_id] = np.flatnonzero(self.input_ids == token_id)
        return cache[token_id]

    @cached_property
    def stop_index(self) -> np.ndarray:
        """Flat indices of input_ids that are EOS or an end-of-turn token, sorted."""
        parts = [self.where_id(i) for i in self.facts.stop_ids]
        return parts[0] if len(parts) == 1 else union_sorted(*parts)

    @cached_property
    def stop_target_index(self) -> np.ndarray:
        """Flat indices of targets whose label is EOS or an end-of-turn token, sorted."""
        if self.labels is None or not self.facts.stop_ids:
            return np.zeros(0, dtype=np.int64)
        return self.targets_labelled(tuple(self.facts.stop_ids))

    @cached_property
    def ends_supervised(self) -> np.ndarray:
        """The last real token is a target (in the dataset convention, the one before it too:
        the last position has no next token to be labelled)."""
        last = self.last_real_index
        ok = last >= 0
        out = np.zeros(self.n_rows, dtype=bool)
        out[ok] = self.supervised[last[ok]]
        if self.facts.label_shift == "dataset":
            prev = ok & (last - 1 >= self.starts)
            out[prev] |= self.supervised[last[prev] - 1]
        return out

    @cached_property
    def ends_with_stop(self) -> np.ndarray:
        """The last real token, or the one before it (a template's trailing newline), stops."""
        out = np.zeros(self.n_rows, dtype=bool)
        for step in (0, -1):
            ids, ok = self.ids_at(self.last_real_index, step)
            out |= ok & is_any(ids, self.facts.stop_ids)
        return out

    def inside_row(self, index: np.ndarray) -> np.ndarray:
        """For flat token indices: real, and after their row's first real token."""
        first = self.first_real_index[self.rows_of(index)]
        return (first >= 0) & (index > first) & self.real_at(index)

    # -- views of modules above this one -------------------------------------------------------

    @cached_property
    def memos(self) -> dict:
        """The views of families in their own modules (turns, sequences): see `batch_view`."""
        return {}

    def regroup(self, offsets: np.ndarray) -> Batch:
        """The same tokens cut into other rows, each within one of this batch's rows (packed
        sequences as rows of their own).

        The flat columns are shared, not copied, and so is what belongs to the tokens, not to
        how they are grouped: a row's padding stays padding in its first or last sequence.
        """
        columns = {name: getattr(self, name) for name in COLUMNS[1:]}
        out = Batch(self.input_ids, offsets, facts=self.facts, row_start=self.row_start,
                    **columns)
        for name in ("is_pad", "real", "attended", "supervised", "pad_index"):
            if name in self.__dict__:
                out.__dict__[name] = self.__dict__[name]
        out.__dict__["may_pad"] = self.may_pad
        if self.may_pad:
            # A sequence's padding is what of its row's leading or trailing padding it holds.
            row = self.rows_of(out.starts)
            lead, trail = self.pad_edges
            seq_lead = np.clip(self.starts[row] + lead[row] - out.starts, 0, out.lengths)
            seq_trail = np.clip(out.ends - (self.ends[row] - trail[row]), 0,
                                out.lengths - seq_lead)
            out.__dict__["pad_edges"] = (seq_lead, seq_trail)
        return out


def batch_view(func: Callable[[Batch], T]) -> Callable[[Batch], T]:
    """`func(b)` computed once per batch, kept in `b.memos` as a cached property would be: for
    a family of views in a module of its own (turns, packed sequences)."""

    @functools.wraps(func)
    def view(b: Batch) -> T:
        memos = b.memos
        if view not in memos:
            memos[view] = func(b)
        return memos[view]

    return view
