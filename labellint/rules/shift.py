"""LL3xx: labels aligned with the wrong token."""


from ..batch import Batch
from ..registry import rule, skip

MIN_MATCHES = 2
SHARE = 0.8


def _matches(b: Batch):
    """Per row: supervised labels equal to input_ids at the same position, and at the next."""
    return b.row_sum(b.label_is_input), b.row_sum(b.label_is_next)


def _aligned_to(matches, other, candidates):
    """Rows whose labels clearly follow one alignment: enough matches, most, more than the other.

    Repeated tokens match both alignments, so a row is judged only on a clear majority.
    """
    return (matches >= MIN_MATCHES) & (matches >= SHARE * candidates) & (matches > other)


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
    same, nxt = _matches(b)
    return _aligned_to(nxt, same, b.row_sum(b.supervised & b.has_next))


@rule(
    "LL302", "unshifted-labels", severity="error", per="row", requires=("labels",),
    message="labels equal to input_ids at the same position, for a loss that does not "
            "shift them (label_shift='dataset'), in {rows} rows",
    fix="shift labels left by one (labels[t] = input_ids[t+1]) for a loss that does not "
        "shift, or pass label_shift='model' (--label-shift model) if the model shifts them",
)
def unshifted_labels(b: Batch):
    """With already-shifted labels expected, labels equal input_ids: the model learns to copy."""
    if b.facts.label_shift != "dataset":
        return skip("applies to label_shift='dataset'", by_design=True)
    same, nxt = _matches(b)
    return _aligned_to(same, nxt, b.row_sum(b.supervised))


@rule(
    "LL303", "label-input-mismatch", severity="warning", per="token", requires=("labels",),
    message="supervised labels that match input_ids under neither alignment: {tokens} in "
            "{rows} rows",
    fix="build labels from the same tokenization as input_ids (copy input_ids, then mask); "
        "labels from another tokenizer or another row train the wrong targets",
)
def label_input_mismatch(b: Batch):
    """Supervised labels equal to neither input_ids[t] nor input_ids[t+1]."""
    valid = b.labels >= 0  # other labels are invalid-label's finding
    if b.facts.vocab_size is not None:
        valid &= b.labels < b.facts.vocab_size
    return b.supervised & valid & ~b.label_is_input & ~b.label_is_next
