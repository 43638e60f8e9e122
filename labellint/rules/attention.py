"""LL2xx: attention that hides what the model must see."""

import numpy as np

from ..batch import Batch
from ..registry import rule


@rule(
    "LL201", "attention-masked-target", severity="error", per="token",
    requires=("labels", "attention_mask"),
    message="attention_mask == 0 on content the loss depends on, in {rows} rows "
            "({tokens} tokens)",
    fix="keep attention_mask == 1 on every real token and mask the prompt out of the loss "
        "with labels = {ignore_index} instead",
)
def attention_masked_target(b: Batch):
    """attention_mask is 0 on a supervised token, or on content before one."""
    out = np.zeros(b.n_tokens, dtype=bool)
    hidden = b.hidden_content  # few, or none: attention off is padding, mostly
    if not hidden.size:
        return out
    last_supervised = b.last_index(b.runs(b.supervised))
    out[hidden[b.supervised[hidden] | (hidden < last_supervised[b.rows_of(hidden)])]] = True
    return out


@rule(
    "LL202", "left-padded-training", severity="warning", per="row",
    requires=("labels", "attention_mask"),
    message="left padding in {rows} training rows",
    fix="pad training batches on the right (tokenizer.padding_side = 'right'); left padding "
        "is for generation",
)
def left_padded_training(b: Batch):
    """Training rows padded on the left, which shifts positions for models that ignore the mask."""
    return b.first_real_index > b.starts  # -1 for a row of padding alone
