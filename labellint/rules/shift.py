"""LL3xx: labels aligned with the wrong token."""


import numpy as np

from ..batch import Batch
from ..ragged import SPARSE, outside_vocab, ranges_index
from ..registry import Edit, repair, rule, skip

MIN_MATCHES = 2
SHARE = 0.8


def _aligned_to(b: Batch, view: str, other_view: str, candidates: np.ndarray) -> np.ndarray:
    """Rows whose labels clearly follow one alignment: enough matches, most, more than the other.

    Repeated tokens match both alignments, so a row is judged only on a clear majority. On
    correct data the suspected alignment is rare, so the other is counted only if some row
    could be a finding.
    """
    matches = b.row_sum(getattr(b, view))
    maybe = (matches >= MIN_MATCHES) & (matches >= SHARE * candidates)
    if not maybe.any():
        return maybe
    return maybe & (matches > b.row_sum(getattr(b, other_view)))


@rule(
    "LL301", "double-shifted-labels", severity="error", per="row", requires=("labels",),
    message="labels already shifted by one (labels[t] == input_ids[t+1]) for a model "
            "that shifts them again, in {rows} rows",
    fix="give labels aligned with input_ids (labels = input_ids with {ignore_index} on masked "
        "positions); Hugging Face models shift inside the loss. If your loss does not shift, "
        "pass label_shift='dataset' (--label-shift dataset)",
)
def double_shifted_labels(b: Batch):
    """Labels shifted by hand for a model that shifts them again: next-next-token training."""
    if b.facts.label_shift != "model":
        return skip("applies to label_shift='model'", by_design=True)
    # Supervised tokens that have a next token in their row.
    last = b.ends[b.nonempty] - 1
    candidates = b.supervised_per_row.copy()
    candidates[b.nonempty] -= b.supervised[last]
    differ = b.label_differs_index
    if differ is None:
        return _aligned_to(b, "label_is_next", "label_is_input", candidates)
    # A row whose every supervised label equals its input id matches the next input id only
    # where the input repeats, so never more often than its own: not a finding. Only the rows
    # with a differing label are read, when they are few.
    rows = np.flatnonzero(np.bincount(b.rows_of(differ), minlength=b.n_rows))
    if b.lengths[rows].sum() * SPARSE >= b.n_tokens:
        return _aligned_to(b, "label_is_next", "label_is_input", candidates)
    return _next_aligned(b, rows, candidates, differ)


def _next_aligned(b: Batch, rows: np.ndarray, candidates: np.ndarray,
                  differ: np.ndarray) -> np.ndarray:
    """`_aligned_to(b, "label_is_next", "label_is_input", candidates)`, counting label_is_next
    in `rows` alone: every other row has no label that differs from its input (`differ`)."""
    index = ranges_index(b.starts[rows], b.ends[rows])
    token_rows = np.repeat(rows, b.lengths[rows])
    hit = b.label_is_next_at(index, token_rows)
    matches = np.bincount(token_rows[hit], minlength=b.n_rows)
    maybe = (matches >= MIN_MATCHES) & (matches >= SHARE * candidates)
    if not maybe.any():
        return maybe
    same = b.supervised_per_row - np.bincount(b.rows_of(differ), minlength=b.n_rows)
    return maybe & (matches > same)


def _shifted(b: Batch, hit: np.ndarray, step: int) -> Edit:
    """Every label of the rows hit moved `step` places along its row (+1: right), the place
    left empty set to ignore_index."""
    rows = np.flatnonzero(hit & (b.lengths > 0))
    index = ranges_index(b.starts[rows], b.ends[rows])
    source = index - step
    edge = b.starts[rows] if step > 0 else b.ends[rows] - 1
    values = b.labels[np.clip(source, 0, max(b.n_tokens - 1, 0))].copy()
    values[np.searchsorted(index, edge)] = b.facts.ignore_index
    return Edit(set={"labels": (index, values)})


@repair(double_shifted_labels, safe=False, does="shifts the row's labels right by one "
        "(labels[t] = old labels[t-1]), undoing the hand-made shift")
def unshift_labels(b: Batch, hit: np.ndarray) -> Edit:
    return _shifted(b, hit, 1)


@rule(
    "LL302", "unshifted-labels", severity="error", per="row", requires=("labels",),
    message="labels equal to input_ids at the same position, for a loss that does not "
            "shift them (label_shift='dataset'), in {rows} rows",
    fix="shift labels left by one (labels[t] = input_ids[t+1]; for a shift_labels column, "
        "F.pad(labels, (0, 1), value={ignore_index})[..., 1:]) for a loss that does not shift, "
        "or pass label_shift='model' (--label-shift model) if the model shifts them",
)
def unshifted_labels(b: Batch):
    """With already-shifted labels expected, labels equal input_ids: the model learns to copy."""
    if b.facts.label_shift != "dataset":
        return skip("applies to label_shift='dataset'", by_design=True)
    return _aligned_to(b, "label_is_input", "label_is_next", b.supervised_per_row)


@repair(unshifted_labels, safe=False, does="shifts the row's labels left by one "
        "(labels[t] = old labels[t+1]), as a loss that does not shift expects")
def shift_labels_left(b: Batch, hit: np.ndarray) -> Edit:
    return _shifted(b, hit, -1)


@rule(
    "LL303", "label-input-mismatch", severity="warning", per="token", requires=("labels",),
    message="supervised labels that match input_ids under neither alignment: {tokens} in "
            "{rows} rows",
    fix="build labels from the same tokenization as input_ids (copy input_ids, then mask); "
        "labels from another tokenizer or another row train the wrong targets",
)
def label_input_mismatch(b: Batch):
    """Supervised labels equal to neither input_ids[t] nor input_ids[t+1]."""
    # Supervised labels that differ from input_ids at their position; with the model's shift
    # they are few on correct data, and only those need the other alignment looked up.
    # Labels outside the vocabulary are invalid-label's finding, not this one's.
    vocab = b.facts.vocab_size
    index = b.label_differs_index
    if index is None:
        return b.label_differs & ~outside_vocab(b.labels, vocab) & ~b.label_is_next
    index = index[~outside_vocab(b.labels[index], vocab) & ~b.label_is_next_at(index)]
    return b.token_mask(index)
