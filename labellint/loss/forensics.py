"""Loss forensics: the loss under each common mistake, from the reference pass's numbers.

Each hypothesis is a small function of the per-position numbers of one forward pass
(stats.TokenStats), so all of them together cost nothing beyond the reference. On a
mismatch, the reported number is compared with each, and the one that reproduces it is named.
A hypothesis that equals the reference on this window (no padding makes "padding included" the
reference itself) cannot explain a mismatch and is never claimed.

Codes: LL901 for what the loss scores or counts (shift, targets, smoothing, a mean over every
position that counts padding), LL903 for how it is averaged (micro-batch means under gradient
accumulation, per-row means, a wrong count of targets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from .stats import TokenStats

SMOOTHING = (0.05, 0.1, 0.2)


@dataclass(frozen=True)
class Hypothesis:
    name: str
    code: str
    what: str   # "the loss without shifting labels"
    says: str   # "your loss code does not shift labels"
    loss: float


@dataclass(frozen=True)
class Window:
    """The micro-batches of one optimizer step."""

    stats: Sequence[TokenStats]

    @property
    def k(self) -> int:
        return len(self.stats)

    @property
    def shift(self) -> int:
        return self.stats[0].shift

    def total(self, f: Callable[[TokenStats], float]) -> float:
        return float(sum(f(s) for s in self.stats))

    @property
    def loss_sum(self) -> float:
        return self.total(lambda s: s.loss_sum)

    @property
    def supervised(self) -> int:
        return int(self.total(lambda s: s.supervised))

    @property
    def rows(self) -> int:
        return int(self.total(lambda s: s.rows))

    def mean_with(self, nll: str, extra: Callable[[TokenStats], np.ndarray]) -> float | None:
        """Token mean over the reference targets plus the positions `extra` adds (scored by
        `nll`); None when it adds none (then it is the reference)."""
        added = self.total(lambda s: np.count_nonzero(extra(s) & ~s.ok_ref))
        if added == 0:
            return None
        more = self.total(lambda s: getattr(s, nll)[extra(s) & ~s.ok_ref].sum())
        return _ratio(self.loss_sum + more, self.supervised + added)

    def micro_means(self) -> list[float]:
        return [_ratio(s.loss_sum, s.supervised) for s in self.stats]


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


_HYPOTHESES: list[tuple[str, str, str, str, Callable[[Window], float | None]]] = []


def hypothesis(name: str, code: str, what: str, says: str):
    def register(f: Callable[[Window], float | None]):
        _HYPOTHESES.append((name, code, what, says, f))
        return f
    return register


# -- what is scored (LL901) -------------------------------------------------------------------


@hypothesis("no_shift", "LL901", "the loss without shifting labels",
            "your loss code scores logits[t] against labels[t]: it does not shift (shift "
            "logits[..., :-1] and labels[..., 1:], or pass labels to the model)")
def no_shift(w: Window) -> float | None:
    if w.shift == 0:
        return None
    return _ratio(w.total(lambda s: s.nll_noshift[s.ok_noshift].sum()),
                  w.total(lambda s: s.ok_noshift.sum()))


@hypothesis("double_shift", "LL901", "the loss with labels shifted twice",
            "labels are shifted twice: your code shifts labels that the model (or the dataset) "
            "already shifts, so each position is scored against the token after next")
def double_shift(w: Window) -> float:
    return _ratio(w.total(lambda s: s.nll_double[s.ok_double].sum()),
                  w.total(lambda s: s.ok_double.sum()))


@hypothesis("padding_included", "LL901", "the loss with padding positions counted",
            "your loss counts padding: labels there are the pad id instead of -100 (labels "
            "copied from input_ids, or padded by tokenizer.pad)")
def padding_included(w: Window) -> float | None:
    return w.mean_with("nll_next", lambda s: s.pad_next & s.ok_next)


@hypothesis("ignore_index_not_honoured", "LL901", "the loss with the ignored positions counted",
            "your loss scores the positions labelled with the ignore index (the prompt) as "
            "well: it uses input_ids as labels, or ignores another index than the data uses")
def ignore_index_not_honoured(w: Window) -> float | None:
    return w.mean_with("nll_next", lambda s: ~s.pad_next & s.ok_next)


@hypothesis("labels_are_input_ids", "LL901", "the loss over every token (labels = input_ids)",
            "your loss scores every token, prompt and padding included: labels = input_ids")
def labels_are_input_ids(w: Window) -> float | None:
    return w.mean_with("nll_next", lambda s: s.ok_next)


def _every_position(s: TokenStats) -> int:
    return s.rows * (s.positions - s.shift)


# A mean over the whole [rows, positions] tensor counts what was meant to be left out (padding,
# the prompt) in the denominator: what the loss counts, so LL901, though the numerator is right.
@hypothesis("all_positions", "LL901",
            "the loss averaged over every position (padding and ignored ones included)",
            "your loss averages the per-token losses over every position, padding and ignored "
            "positions included: (ce * mask).mean() (or CrossEntropyLoss(reduction='none')"
            "(...).mean()) divides by all rows x positions; divide by mask.sum() instead")
def all_positions(w: Window) -> float:
    return _ratio(w.loss_sum, w.total(_every_position))


@hypothesis("attended_over_all_positions", "LL901",
            "the loss over every attended token (labels = input_ids), averaged over every "
            "position",
            "your loss scores every attended token (labels = input_ids, so the prompt too) and "
            "averages over every position, padding included: (ce * attention_mask).mean(); "
            "score the labels (-100 left out) and divide by the number of targets")
def attended_over_all_positions(w: Window) -> float | None:
    def scored(s: TokenStats) -> np.ndarray:
        return s.ok_next & s.attended_next & ~s.pad_next

    if w.shift == 0 or w.total(lambda s: np.count_nonzero(scored(s) & ~s.ok_ref)) == 0:
        return None  # nothing but the targets is attended: it is all_positions
    return _ratio(w.total(lambda s: s.nll_next[scored(s)].sum()), w.total(_every_position))


def _smoothing(eps: float) -> Callable[[Window], float]:
    def f(w: Window) -> float:
        smooth = w.total(lambda s: s.smooth[s.ok_ref].sum())
        return _ratio((1 - eps) * w.loss_sum + eps * smooth, w.supervised)
    return f


for _eps in SMOOTHING:
    hypothesis(f"label_smoothing_{_eps}", "LL901", f"the loss with label smoothing {_eps}",
               f"your loss uses label smoothing {_eps} (CrossEntropyLoss(label_smoothing="
               f"{_eps}) or TrainingArguments.label_smoothing_factor); the reference has none")(
        _smoothing(_eps))


# -- how it is averaged (LL903) ---------------------------------------------------------------


@hypothesis("mean_of_micro_batch_means", "LL903", "the mean of the micro-batch means",
            "your loop averages each micro-batch's mean loss (loss / accumulation_steps per "
            "micro-batch), so a token in a micro-batch with few targets weighs more; divide the "
            "summed token losses by the window's target count (num_items_in_batch) instead")
def mean_of_micro_batch_means(w: Window) -> float | None:
    return float(np.mean(w.micro_means())) if w.k > 1 else None


@hypothesis("sum_of_micro_batch_means", "LL903", "the sum of the micro-batch means",
            "each micro-batch's mean loss is added up without dividing by the accumulation "
            "steps (a custom compute_loss returning a per-micro-batch mean while the Trainer "
            "expects one normalised by num_items_in_batch)")
def sum_of_micro_batch_means(w: Window) -> float | None:
    return float(np.sum(w.micro_means())) if w.k > 1 else None


@hypothesis("divided_by_accumulation_twice", "LL903",
            "the window's token mean divided by the accumulation steps",
            "the loss is divided by the accumulation steps although it is already normalised by "
            "the window's target count (num_items_in_batch): gradients are that many times "
            "too small")
def divided_twice(w: Window) -> float | None:
    return w.loss_sum / w.supervised / w.k if w.k > 1 and w.supervised else None


@hypothesis("mean_of_means_divided_by_accumulation", "LL903",
            "the mean of the micro-batch means divided by the accumulation steps again",
            "each micro-batch's mean is divided by the accumulation steps twice")
def mean_of_means_divided(w: Window) -> float | None:
    return float(np.mean(w.micro_means())) / w.k if w.k > 1 else None


@hypothesis("last_micro_batch", "LL903", "the last micro-batch's own loss",
            "the number is the last micro-batch's loss, not the window's: log the loss "
            "accumulated over all micro-batches of the step")
def last_micro_batch(w: Window) -> float | None:
    return w.micro_means()[-1] if w.k > 1 else None


@hypothesis("mean_of_row_means", "LL903", "the mean of per-row means",
            "your loss averages each row's mean loss, so a token in a short answer weighs "
            "more than one in a long answer; average over all targets instead")
def mean_of_row_means(w: Window) -> float | None:
    means = []
    for s in w.stats:
        n = s.ok_ref.sum(axis=1)
        sums = np.where(s.ok_ref, s.nll_ref, 0.0).sum(axis=1)
        means.append(sums[n > 0] / n[n > 0])
    means = np.concatenate(means)
    return float(means.mean()) if means.size else None


@hypothesis("unshifted_label_count", "LL903",
            "the summed loss divided by the count of unshifted labels",
            "the denominator counts labels != -100 before the shift (num_items_in_batch from "
            "labels instead of labels[..., 1:]): a label at position 0 is never a target")
def unshifted_label_count(w: Window) -> float | None:
    if w.shift == 0:
        return None
    return _ratio(w.loss_sum, w.total(lambda s: s.labelled.sum()))


@hypothesis("attended_positions", "LL903", "the summed loss divided by the attended positions",
            "the denominator is attention_mask.sum(), which counts the prompt: divide by the "
            "number of labels != -100 instead")
def attended_positions(w: Window) -> float | None:
    if w.shift == 0:
        return None
    return _ratio(w.loss_sum, w.total(lambda s: s.attended_next[:, :-1].sum()))


@hypothesis("rows_as_denominator", "LL903", "the summed loss divided by the number of rows",
            "the loss is summed over tokens and averaged over rows")
def rows_as_denominator(w: Window) -> float:
    return _ratio(w.loss_sum, w.rows)


@hypothesis("token_sum", "LL903", "the summed loss, not divided by anything",
            "the loss is a sum over targets (reduction='sum') that is never normalised")
def token_sum(w: Window) -> float:
    return w.loss_sum


# A loss written from scratch often makes two mistakes at once: it scores the wrong target and
# averages per micro-batch. Each pair is the averaging mistake applied to the wrong targets.
PAIRED_SCORING = {"no_shift": ("nll_noshift", "ok_noshift"),
                  "double_shift": ("nll_double", "ok_double")}
PAIRED_AVERAGING = ("sum_of_micro_batch_means", "mean_of_micro_batch_means")


def hypotheses(stats: Sequence[TokenStats]) -> list[Hypothesis]:
    """Every applicable hypothesis's loss on this window, in order of priority."""
    w = Window(stats)
    out = []
    for name, code, what, says, f in _HYPOTHESES:
        value = f(w)
        # None: the mistake adds nothing here; NaN: the numbers it needs were not computed.
        if value is not None and math.isfinite(value):
            out.append(Hypothesis(name, code, what, says, float(value)))
    if w.k > 1 and w.shift == 1:
        table = {name: (what, says, f) for name, _, what, says, f in _HYPOTHESES}
        for scored, (nll, ok) in PAIRED_SCORING.items():
            wrong = Window([replace(s, nll_ref=getattr(s, nll), ok_ref=getattr(s, ok))
                            for s in stats])
            for averaged in PAIRED_AVERAGING:
                value = table[averaged][2](wrong)
                if value is not None and math.isfinite(value):
                    out.append(Hypothesis(
                        f"{scored}+{averaged}", "LL901",
                        f"{table[averaged][0]} of {table[scored][0]}",
                        f"two mistakes: {table[scored][1]}; and {table[averaged][1]}",
                        float(value)))
    return out


# -- matching ---------------------------------------------------------------------------------


def within(a: float, b: float, rtol: float, atol: float) -> bool:
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= atol + rtol * abs(b)


@dataclass(frozen=True)
class Verdict:
    agrees: bool                      # reported equals the reference within tolerance
    matched: tuple[Hypothesis, ...]   # the hypotheses that reproduce it (ties: several)
    closest: Hypothesis | None        # the nearest claimable one, when none matches
    coincident: tuple[str, ...]       # hypotheses equal to the reference on this window


def diagnose(reported: float, reference: float, found: Sequence[Hypothesis], *,
             rtol: float, atol: float) -> Verdict:
    """Which hypothesis reproduces the reported loss; never one equal to the reference here."""
    coincident = tuple(h.name for h in found if within(h.loss, reference, rtol, atol))
    claimable = [h for h in found if h.name not in coincident and math.isfinite(h.loss)]
    if within(reported, reference, rtol, atol):
        return Verdict(True, (), None, coincident)
    hits = [h for h in claimable if within(reported, h.loss, rtol, atol)]
    # Two names for one number (no prompt masking makes "labels = input_ids" equal "padding
    # included"): keep the first, the more specific.
    distinct: list[Hypothesis] = []
    for h in hits:
        if not any(abs(h.loss - d.loss) <= 1e-9 * max(abs(d.loss), 1.0) for d in distinct):
            distinct.append(h)
    closest = min(claimable, key=lambda h: abs(h.loss - reported), default=None)
    return Verdict(False, tuple(distinct), None if distinct else closest, coincident)
