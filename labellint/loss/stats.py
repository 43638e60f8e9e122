"""TokenStats: the per-position numbers of a window's micro-batches, in numpy.

The reference forward pass (reference.py, which needs torch) makes them; the reference loss, the
forensics and the loss rules read them with numpy alone, so nothing that judges a loss imports
torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np


@dataclass
class TokenStats:
    """Per-position numbers of one micro-batch, numpy [rows, positions].

    `nll_*` is minus the log-probability of a candidate target at each position, `ok_*` whether
    that position has such a target. `shift` is how far ahead the label scored at position t
    sits (1: Hugging Face, the model shifts; 0: the dataset already shifted).
    """

    shift: int
    nll_ref: np.ndarray      # labels[t + shift]: the reference
    ok_ref: np.ndarray
    nll_noshift: np.ndarray  # labels[t + shift - 1]: a loss that does not shift
    ok_noshift: np.ndarray
    nll_double: np.ndarray   # labels[t + shift + 1]: a loss that shifts again
    ok_double: np.ndarray
    nll_next: np.ndarray     # input_ids[t + 1]: labels = input_ids
    ok_next: np.ndarray
    smooth: np.ndarray       # -mean_v log p_v: the label-smoothing term
    pad_next: np.ndarray     # position t + 1 is padding
    attended_next: np.ndarray  # attention_mask[t + 1] (all True without a mask)
    labelled: np.ndarray     # labels[t] != ignore_index, unshifted (a common wrong count)
    nonfinite: np.ndarray    # the logits at t hold inf or NaN
    vocab_size: int
    dtype: str

    @property
    def rows(self) -> int:
        return self.nll_ref.shape[0]

    @property
    def positions(self) -> int:
        return self.nll_ref.shape[1]

    @property
    def supervised(self) -> int:
        return int(self.ok_ref.sum())

    @property
    def loss_sum(self) -> float:
        return float(self.nll_ref[self.ok_ref].sum())


def supervised_count(batch: Mapping[str, Any], *, ignore_index: int = -100,
                     label_shift: str = "model") -> int:
    """Targets the loss should average over: labels[..., 1:] != ignore_index (label_shift model)."""
    labels = np.asarray(batch["labels"].cpu() if hasattr(batch["labels"], "cpu")
                        else batch["labels"])
    labels = labels[None] if labels.ndim == 1 else labels
    if label_shift == "model":
        labels = labels[:, 1:]
    return int(np.count_nonzero(labels != ignore_index))


def reference_loss(stats: Sequence[TokenStats]) -> float:
    """The token mean over the whole window: sum of target losses / number of targets."""
    n = sum(s.supervised for s in stats)
    return sum(s.loss_sum for s in stats) / n if n else float("nan")
