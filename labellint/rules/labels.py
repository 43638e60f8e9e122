"""LL1xx: labels that give no signal, or a wrong one."""

import numpy as np

from ..batch import Batch
from ..registry import Edit, repair, rule


@rule(
    "LL101", "fully-masked-row", severity="warning", per="row", requires=("labels",),
    message="no supervised target in {rows} rows ({tokens} tokens of compute with no signal)",
    fix="drop rows whose labels are all {ignore_index}, or fix the masking or truncation that "
        "removed their answer",
)
def fully_masked_row(b: Batch):
    """A row whose labels are all ignore_index: it costs compute and teaches nothing."""
    return b.targets_per_row == 0


@repair(fully_masked_row, safe=False, does="drops the row (at most --max-drop-fraction of a "
        "source's rows)")
def drop_fully_masked_rows(b: Batch, hit: np.ndarray) -> Edit:
    return Edit(drop_rows=np.flatnonzero(hit))


def _fully_masked_batch_message(t):
    if t["training_batches"]:
        return (f"no supervised target in {t['batches']} of {t['total_batches']} batches: "
                "their mean loss is NaN (or 0)")
    return (f"no supervised target in any of the {t['total_rows']} rows: the mean loss is "
            "NaN (or 0) on every batch")


@rule(
    "LL102", "fully-masked-batch", severity="error", per="batch", requires=("labels",),
    message=_fully_masked_batch_message,
    fix="check the prompt/response masking (a response template that never matches masks "
        "everything); sample batches so that each holds supervised tokens",
)
def fully_masked_batch(b: Batch):
    """A batch, or a whole dataset, with no supervised label: the mean loss is NaN or zero."""
    return not b.targets.any()


@rule(
    "LL103", "labels-on-padding", severity="error", per="token", requires=("labels", "padding"),
    message="labels on padding in {rows} rows ({tokens} tokens)",
    fix="set labels to {ignore_index} wherever attention_mask == 0 (DataCollatorForSeq2Seq "
        "pads labels with -100; tokenizer.pad() on labels pads them with the pad id)",
)
def labels_on_padding(b: Batch):
    """Padding positions carry a label, so the loss trains the model to emit padding."""
    out = np.zeros(b.n_tokens, dtype=bool)
    if not b.may_pad:
        return out
    pad = b.pad_index  # padding is a small share of the tokens: judge it alone
    labels = b.labels[pad]
    # A negative label on padding (-1 as the ignore index) is invalid-label's finding.
    out[pad[(labels != b.facts.ignore_index) & (labels >= 0)]] = True
    return out


@repair(labels_on_padding, safe=True, does="sets the label of each padding position to "
        "ignore_index")
def mask_padding_labels(b: Batch, hit: np.ndarray) -> Edit:
    index = np.flatnonzero(hit)
    return Edit(set={"labels": (index, b.facts.ignore_index)})


@rule(
    "LL104", "invalid-label", severity="error", per="token", requires=("labels",),
    message="labels that are neither {ignore_index} nor a token id below the vocabulary "
            "size: {tokens} in {rows} rows",
    fix="mark positions without a target with ignore_index={ignore_index} (not -1 or the pad "
        "id), or set ignore_index to what the loss uses; resize the embeddings for new tokens",
)
def invalid_label(b: Batch):
    """A negative label other than ignore_index, or a label past the vocabulary."""
    return b.token_mask(b.invalid_label_index)


@repair(invalid_label, safe=True, does="sets negative labels (a wrong ignore index such as "
        "-1) to ignore_index; labels past the vocabulary are left: which token was meant "
        "cannot be known")
def configured_ignore_index(b: Batch, hit: np.ndarray) -> Edit:
    index = np.flatnonzero(hit)
    negative = b.labels[index] < 0
    return Edit(set={"labels": (index[negative], b.facts.ignore_index)},
                left=int(index.size - np.count_nonzero(negative)))


@rule(
    "LL105", "few-supervised-tokens", severity="warning", per="row", requires=("labels",),
    message="fewer than {min_tokens} supervised targets in {rows} rows",
    fix="check for answers truncated or masked away; raise max_length or drop such rows",
)
def few_supervised_tokens(b: Batch, *, min_tokens: int = 2):
    """Rows with only a token or two of supervision: usually an answer cut or masked away."""
    return (b.targets_per_row > 0) & (b.targets_per_row < min_tokens)


