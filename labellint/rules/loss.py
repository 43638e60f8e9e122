"""LL9xx: the loss a training loop reports, against the reference (labellint.check_loss).

These rules read a LossEvidence, not a Batch: the data engine never runs them. A predicate
returns False when clean, `skip(reason)` when it does not apply, or the values its message needs.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from ..loss.forensics import Verdict
from ..loss.report import LossEvidence, given, number
from ..registry import Skip, rule, skip


def _equals(v: Mapping[str, Any], against: str) -> str:
    """'the reported X equals <the matched mistake>, not <against>: <what to change>'."""
    matched = v["matched"]
    which = " or ".join(f"{h.what} ({number(h.loss)})" for h in matched)
    says = matched[0].says if len(matched) == 1 else \
        "these coincide on this window, so labellint cannot tell which"
    return f"the reported {given(v['reported'])} equals {which}, not {against}: {says}"


def _mismatch_message(v: Mapping[str, Any]) -> str:
    if v["matched"]:
        return _equals(v, f"the reference {number(v['reference'])}")
    closest = v["closest"]
    near = f" (closest: {closest.what}, {number(closest.loss)})" if closest else ""
    return (f"the reported {given(v['reported'])} differs from the reference "
            f"{number(v['reference'])} by {v['pct']:.2f}% (tolerance {100 * v['rtol']:g}% for "
            f"{v['dtype']}); no common mistake reproduces it{near}")


def _verdict(e: LossEvidence) -> Verdict | Skip | None:
    """The verdict to judge; a Skip without a reported loss; None where nan-loss speaks."""
    if e.reported is None:
        return skip("no reported loss to compare (pass reported=, loss_fn= or a model with "
                    "a loss)", by_design=True)
    if not (math.isfinite(e.reported) and math.isfinite(e.reference)) or e.verdict is None:
        return None
    return e.verdict


def _values(e: LossEvidence) -> dict[str, Any]:
    v = e.verdict
    return {"reported": e.reported, "reference": e.reference, "dtype": e.dtype,
            "rtol": e.rtol, "matched": v.matched, "closest": v.closest,
            "pct": 100 * abs(e.reported - e.reference) / max(abs(e.reference), 1e-12)}


@rule(
    "LL901", "loss-mismatch", severity="error", per="loss",
    message=_mismatch_message,
    fix="compute the loss as the model does: shift labels one position (logits[..., :-1] "
        "against labels[..., 1:]), ignore -100, and divide the summed token losses by the "
        "number of targets",
)
def loss_mismatch(e: LossEvidence):
    """The reported loss differs from the reference beyond a tolerance that accounts for dtype."""
    v = _verdict(e)
    if not isinstance(v, Verdict):
        return v or False
    if v.agrees or (v.matched and all(h.code == "LL903" for h in v.matched)):
        return False
    return _values(e)


def _nan_message(v: Mapping[str, Any]) -> str:
    return f"{v['what']} is {v['value']}: {v['cause']}"


def _nan_cause(e: LossEvidence) -> str:
    if e.supervised == 0:
        return (f"no supervised target in the window (all labels are {e.ignore_index} after "
                "the shift), so the mean divides 0 by 0")
    if e.nonfinite_positions:
        rows = ", ".join(map(str, e.nonfinite_rows))
        return (f"the model's logits hold inf or NaN at {e.nonfinite_positions:,} positions "
                f"(rows {rows}): overflow in {e.dtype} or broken weights")
    empty = [i for i, n in enumerate(e.micro_supervised) if n == 0]
    if empty:
        which = ", ".join(map(str, empty))
        return (f"micro-batch {which} of {e.micro_batches} has no supervised target: a "
                "per-micro-batch mean divides 0 by 0 there, though the window has "
                f"{e.supervised:,} targets")
    if e.empty_rows:
        return (f"{e.empty_rows} rows have no supervised target: a per-row mean divides 0 by 0 "
                "there")
    return (f"the reference over the same window is {number(e.reference)}, so the NaN comes "
            "from the loss code, not from the model or the data")


@rule(
    "LL902", "nan-loss", severity="error", per="loss",
    message=_nan_message,
    fix="make sure every micro-batch holds a supervised target (drop fully masked rows, fix "
        "the prompt masking), normalise by the window's target count, and keep the logits "
        "finite (bfloat16 instead of float16)",
)
def nan_loss(e: LossEvidence):
    """The reference or reported loss is NaN or infinite, with the cause."""
    if not math.isfinite(e.reference):
        return {"what": "the reference loss", "value": number(e.reference),
                "cause": _nan_cause(e)}
    if e.reported is not None and not math.isfinite(e.reported):
        return {"what": f"the reported loss ({e.reported_from})", "value": given(e.reported),
                "cause": _nan_cause(e)}
    return False


def _accumulation_message(v: Mapping[str, Any]) -> str:
    window = (f"the token mean across the {v['k']} micro-batches" if v["k"] > 1
              else "the token mean")
    return _equals(v, f"{window} {number(v['reference'])}")


@rule(
    "LL903", "accumulation-normalization", severity="error", per="loss",
    message=_accumulation_message,
    fix="sum the token losses over every micro-batch of the step and divide once by the "
        "window's target count (the Trainer's num_items_in_batch, counted on labels[..., 1:])",
)
def accumulation_normalization(e: LossEvidence):
    """The loss is normalised wrongly: per-micro-batch or per-row means, or a wrong denominator."""
    v = _verdict(e)
    if not isinstance(v, Verdict):
        return v or False
    if v.agrees or not v.matched or not all(h.code == "LL903" for h in v.matched):
        return False
    return _values(e) | {"k": e.micro_batches}


def _init_message(v: Mapping[str, Any]) -> str:
    side = "above" if v["reference"] > v["ln_v"] else "below"
    why = ("the initial logits are too large (a broken init: weights not scaled, or loaded "
           "wrong)" if side == "above" else
           "a fresh model cannot predict its targets, so they leak into its inputs (wrong "
           "labels or label_shift)")
    whose = "a freshly initialised model's loss" if v["at_init"] else \
        "the model's loss (worse than guessing uniformly, which no model should be)"
    return (f"{whose} is {number(v['reference'])}, {v['pct']:.0f}% "
            f"{side} ln({v['vocab_size']:,}) = {number(v['ln_v'])}: {why}")


@rule(
    "LL904", "loss-at-init", severity="warning", per="loss",
    message=_init_message,
    fix="initialise with the model's own init (from_config, std = initializer_range); check "
        "that labels are the next tokens and that the vocabulary size matches the tokenizer",
)
def loss_at_init(e: LossEvidence, *, max_deviation: float = 0.25, max_above: float = 1.0):
    """A fresh model's loss is far from ln(vocab size): a broken init or wrong labels."""
    if e.at_init is False:
        return skip("not a fresh model (at_init=False)", by_design=True)
    if not math.isfinite(e.reference):
        return False
    ln_v = math.log(e.vocab_size)
    deviation = abs(e.reference - ln_v) / ln_v
    # Whether the model is fresh is unknown (the Trainer callback, check_loss without at_init):
    # a trained model is rightly far below ln(V), but none, fresh or trained, is far above it.
    allowed = max_deviation if e.at_init else max_above
    if deviation <= allowed or (not e.at_init and e.reference < ln_v):
        return False
    return {"reference": e.reference, "ln_v": ln_v, "vocab_size": e.vocab_size,
            "pct": 100 * deviation, "at_init": bool(e.at_init)}
