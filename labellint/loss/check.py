"""check_loss: one optimizer step's loss recomputed the way it should be, against the reported.

The window is one batch or the micro-batches of one gradient-accumulation step. The reference
is the token mean of the cross-entropy over the whole window, computed in float64 chunk by
chunk (reference.py, the one module here that imports torch, and only when a check runs); the
forensics (forensics.py) say which common mistake reproduces a reported number that differs.
The loss rules run in the engine (engine.run_loss), as the data rules do.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Mapping, NamedTuple, Sequence

from .. import engine
from ..errors import LabelLintError
from ..facts import LABEL_SHIFTS
from .forensics import diagnose, hypotheses
from .report import LossEvidence, LossReport
from .stats import TokenStats, reference_loss, supervised_count
from ..catalog import resolve_options, select_rules

# Relative tolerance by the dtype the logits are computed in. A bfloat16 forward differs from
# another bfloat16 forward of the same batch (other kernels, other batch shapes) by up to ~1e-2.
RTOL = {"float64": 1e-6, "float32": 1e-3, "float16": 5e-3, "bfloat16": 2e-2}
ATOL = 1e-4
WINDOWS = ("auto", "sum", "mean")


def _float(x: Any, what: str) -> float:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu()
        if x.numel() != 1:
            raise LabelLintError(f"{what} must be one number, not a tensor of shape "
                                 f"{tuple(x.shape)}")
        x = x.item()
    try:
        return float(x)
    except (TypeError, ValueError):
        raise LabelLintError(f"{what} must be a number, not {type(x).__name__}") from None


def _combine(values: Sequence[float], how: str) -> float:
    """One window's loss from its micro-batches' values: their sum (each already normalised by
    the window's target count, as the Trainer's num_items_in_batch does) or their mean."""
    return float(sum(values)) if how == "sum" else float(sum(values) / len(values))


def _loss_fn_window(loss_fn: Callable[..., Any]) -> tuple[bool, str]:
    """Whether to pass num_items_in_batch, and how the returned values make the window's loss.

    A Trainer's compute_loss is combined as Trainer.training_step does: summed when the loss is
    normalised by num_items_in_batch (a model that takes loss kwargs, a compute_loss_func),
    else averaged. A plain function that takes num_items_in_batch is summed, one that does not
    is averaged.
    """
    trainer = getattr(loss_fn, "__self__", None)
    if trainer is not None and hasattr(trainer, "model_accepts_loss_kwargs"):
        scaled = getattr(trainer, "loss_is_scaled_for_ga", None)
        if scaled is None:
            scaled = bool(trainer.model_accepts_loss_kwargs
                          or getattr(trainer, "compute_loss_func", None) is not None)
        return True, "sum" if scaled else "mean"
    try:
        params = inspect.signature(loss_fn).parameters
    except (TypeError, ValueError):
        return False, "mean"
    takes = "num_items_in_batch" in params
    return takes, "sum" if takes else "mean"


def _dropout(model: Any) -> bool:
    import torch

    return any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules())


def check_loss(
    model: Any = None,
    batches: Any = None,
    reported: float | Sequence[float] | None = None,
    loss_fn: Callable[..., Any] | None = None,
    device: str = "auto",
    *,
    outputs: Any = None,
    at_init: bool | None = None,
    window: str = "auto",
    ignore_index: int = -100,
    label_shift: str = "model",
    pad_id: int | None = None,
    tokenizer: Any = None,
    rtol: float | None = None,
    atol: float = ATOL,
    select: Sequence[str] | None = None,
    ignore: Sequence[str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    chunk: int | None = None,
    name: str = "loss",
) -> LossReport:
    """Recompute one optimizer step's loss with a chunked reference and compare.

    model: a causal LM (Hugging Face style: `.get_output_embeddings()`, `logits_to_keep`); it is
        run in eval mode without gradients, and restored after.
    batches: one batch dict or the list of micro-batches of one optimizer step (tensors, numpy or
        lists; rectangular, labels padded with -100). No attention_mask is added where a batch
        has none, so packed rows stay isolated by their position_ids.
    reported: the loss the training code logged for the window; a sequence is one number per
        micro-batch, combined by `window` ("auto": their mean).
    loss_fn: `loss_fn(model, batch)` computing a micro-batch's loss (a Trainer's `compute_loss`,
        your own); it receives `num_items_in_batch` (the window's target count) if it takes it.
    Neither: the model's own `.loss` is checked, combined over micro-batches as the Trainer does.
    outputs: the micro-batches' already-computed model outputs (or logits): the reference is
        computed from them with no forward pass, e.g. by a callback that captured a step.
    at_init: True for a freshly initialised model (loss-at-init judges its loss both ways);
        None (unknown) judges only a loss far above ln(vocab size), which no model should
        reach, fresh or trained; False judges neither.
    window: how per-micro-batch values combine into the window's loss: "sum", "mean", or "auto".
    rtol, atol: the tolerance; rtol defaults by the logits' dtype (RTOL).
    chunk: positions per chunk of the reference (default: CHUNK_BYTES of upcast logits).
    """
    _check_arguments(model=model, outputs=outputs, reported=reported, loss_fn=loss_fn,
                     at_init=at_init, window=window, label_shift=label_shift)
    from .reference import as_micro_batches, to_tensors

    micro = as_micro_batches(batches)
    if outputs is not None:
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        if len(outputs) != len(micro):
            raise LabelLintError(f"{len(outputs)} outputs for {len(micro)} micro-batches")
    if pad_id is None and tokenizer is not None:
        from ..hf_facts import tokenizer_facts

        pad_id = tokenizer_facts(tokenizer).get("pad_id")
    stat_options = dict(ignore_index=ignore_index, label_shift=label_shift, pad_id=pad_id,
                        chunk=chunk)
    given_tensors = [to_tensors(b) for b in micro]  # validated before any model runs
    counts = [supervised_count(t, ignore_index=ignore_index, label_shift=label_shift)
              for t in given_tensors]
    if model is not None:
        found = _from_model(model, given_tensors, outputs=outputs, reported=reported,
                            loss_fn=loss_fn, device=device, window=window,
                            n_window=sum(counts), stat_options=stat_options)
    else:
        found = _from_outputs(outputs, given_tensors, reported=reported, device=device,
                              window=window, stat_options=stat_options)
    value = _reported_value(reported, len(micro), found.losses, found.how)
    return report_from_stats(found.stats, value, found.reported_from, at_init=at_init,
                             rtol=rtol, atol=atol, ignore_index=ignore_index, select=select,
                             ignore=ignore, options=options, notes=found.notes,
                             device=found.device, name=name)


def _check_arguments(*, model: Any, outputs: Any, reported: Any, loss_fn: Any, at_init: Any,
                     window: str, label_shift: str) -> None:
    """check_loss's argument errors, before any batch is read or model run."""
    if at_init not in (None, True, False):
        raise LabelLintError(f"at_init must be True, False or None, not {at_init!r}")
    if window not in WINDOWS:
        raise LabelLintError(f"window must be one of {', '.join(WINDOWS)}, not {window!r}")
    if label_shift not in LABEL_SHIFTS:
        raise LabelLintError(f"label_shift must be one of {', '.join(LABEL_SHIFTS)}, "
                             f"not {label_shift!r}")
    if model is None and outputs is None:
        raise LabelLintError("check_loss needs a model, or the outputs (logits) of its forward")
    if reported is not None and loss_fn is not None:
        raise LabelLintError("pass reported= or loss_fn=, not both")


class _Computed(NamedTuple):
    """What one window's forward (or given outputs) produced, before the verdict."""

    stats: list[TokenStats]
    losses: list[float]  # per micro-batch: the training code's own numbers, if it gave any
    how: str  # how `losses` combine into the window's loss: "sum" or "mean"
    reported_from: str
    device: str
    notes: list[str]


def _from_model(model: Any, given_tensors: list[dict[str, Any]], *, outputs: Any,
                reported: Any, loss_fn: Any, device: str, window: str, n_window: int,
                stat_options: Mapping[str, Any]) -> _Computed:
    """The reference from the model (or from the outputs given, on the model's device), and
    the losses of the model's own forward or of loss_fn when neither reported= nor outputs
    give them."""
    from .reference import (evaluating, resolve_device, stats_from_logits, stats_from_model,
                            to_tensors)

    _check_ids_fit(model, given_tensors)
    dev = resolve_device(device, model)
    losses: list[float] = []
    how = "mean" if window == "auto" else window
    reported_from = "given"
    with evaluating(model, dev):
        tensors = [to_tensors(t, dev) for t in given_tensors]
        if outputs is not None:
            stats = [stats_from_logits(o, t, **stat_options) for o, t in zip(outputs, tensors)]
        elif reported is None and loss_fn is None:
            stats, losses, how = _own_loss(model, tensors, n_window, stat_options, window)
            reported_from = "the model's own loss"
        else:
            stats = [stats_from_model(model, t, **stat_options) for t in tensors]
            if loss_fn is not None:
                losses, how = _loss_fn_losses(loss_fn, model, tensors, n_window, dev, window)
                reported_from = "loss_fn"
    notes = []
    if reported is not None and _dropout(model):
        notes.append("the model has dropout: the reference runs without it, so a loss "
                     "logged in train mode differs by noise the tolerance does not cover")
    return _Computed(stats, losses, how, reported_from, str(dev), notes)


def _loss_fn_losses(loss_fn: Callable[..., Any], model: Any, tensors: list[dict[str, Any]],
                    n_window: int, dev: Any, window: str) -> tuple[list[float], str]:
    """loss_fn's value per micro-batch, and how they combine (as the Trainer would combine a
    compute_loss of that kind, unless `window` says)."""
    import torch

    takes, auto = _loss_fn_window(loss_fn)
    how = auto if window == "auto" else window
    extra = {"num_items_in_batch": torch.tensor(n_window, device=dev)} if takes else {}
    losses = []
    for t in tensors:
        value = loss_fn(model, dict(t), **extra)
        # A compute_loss(return_outputs=True) style result: (loss, outputs).
        value = value[0] if isinstance(value, (tuple, list)) else value
        losses.append(_float(value, "loss_fn's result"))
    return losses, how


def _from_outputs(outputs: list[Any], given_tensors: list[dict[str, Any]], *, reported: Any,
                  device: str, window: str, stat_options: Mapping[str, Any]) -> _Computed:
    """The reference from outputs given without a model; their own .loss is the reported
    loss when every micro-batch's output has one and reported= is not given."""
    from .reference import resolve_device, stats_from_logits

    dev = None if device in (None, "auto") else resolve_device(device)
    stats = [stats_from_logits(o, t, device=dev, **stat_options)
             for o, t in zip(outputs, given_tensors)]
    dev_name = str(dev or getattr(getattr(outputs[0], "logits", outputs[0]), "device", "cpu"))
    losses: list[float] = []
    reported_from = "given"
    if reported is None:
        own = [getattr(o, "loss", None) for o in outputs]
        if all(x is not None for x in own):
            losses = [_float(x, "outputs' loss") for x in own]
            reported_from = "outputs"
    return _Computed(stats, losses, "mean" if window == "auto" else window, reported_from,
                     dev_name, [])


def _reported_value(reported: Any, n_micro: int, losses: list[float], how: str) -> float | None:
    """The window's reported loss: reported= (one number, or one per micro-batch combined by
    `how`), else the losses found while computing the reference, else None."""
    if reported is None:
        return _combine(losses, how) if losses else None
    if not isinstance(reported, (list, tuple)):
        return _float(reported, "reported")
    if len(reported) != n_micro:
        raise LabelLintError(f"{len(reported)} reported numbers for {n_micro} "
                             "micro-batches: give one per micro-batch, or one number")
    return _combine([_float(x, "reported") for x in reported], how)


def _own_loss(model: Any, tensors: list[dict[str, Any]], n_window: int,
              stat_options: Mapping[str, Any], window: str):
    """The model's own .loss per micro-batch, from the forward that also gives the reference.

    Like the Trainer: a model that takes loss kwargs gets num_items_in_batch and its losses are
    summed; another model's losses are averaged over the micro-batches.
    """
    import torch

    from .reference import accepts_loss_kwargs, model_inputs, stats_from_logits

    takes = accepts_loss_kwargs(model)
    stats, losses = [], []
    for t in tensors:
        extra = {"num_items_in_batch": torch.tensor(n_window, device=t["input_ids"].device)} \
            if takes else {}
        out = model(**model_inputs(model, t), labels=t["labels"], use_cache=False,
                    return_dict=True, **extra)
        if getattr(out, "loss", None) is None:
            raise LabelLintError("the model returned no loss: pass reported= or loss_fn=")
        losses.append(_float(out.loss, "the model's loss"))
        stats.append(stats_from_logits(out.logits, t, **stat_options))
        del out
    how = ("sum" if takes else "mean") if window == "auto" else window
    return stats, losses, how


def report_from_stats(stats: list[TokenStats], reported: float | None, reported_from: str, *,
                      at_init: bool | None = None, rtol: float | None = None,
                      atol: float = ATOL,
                      ignore_index: int = -100, select: Any = None, ignore: Any = None,
                      options: Any = None, notes: Sequence[str] = (), device: str = "cpu",
                      name: str = "loss") -> LossReport:
    """The verdict on a window whose per-position numbers are already computed (check_loss, or
    a callback that captured them during the step)."""
    import numpy as np

    reference = reference_loss(stats)
    dtype = stats[0].dtype
    if rtol is None:
        rtol = RTOL.get(dtype, RTOL["bfloat16"])
    found = tuple(hypotheses(stats))
    verdict = None
    if reported is not None and math.isfinite(reported) and math.isfinite(reference):
        verdict = diagnose(reported, reference, found, rtol=rtol, atol=atol)
    nonfinite_rows: list[int] = []
    first = 0
    for s in stats:
        nonfinite_rows += [first + int(r) for r in np.flatnonzero(s.nonfinite.any(axis=1))]
        first += s.rows
    evidence = LossEvidence(
        reference=reference,
        reported=reported,
        reported_from=reported_from,
        supervised=sum(s.supervised for s in stats),
        micro_supervised=tuple(s.supervised for s in stats),
        rows=sum(s.rows for s in stats),
        tokens=sum(s.rows * s.positions for s in stats),
        empty_rows=int(sum(np.count_nonzero(s.ok_ref.sum(axis=1) == 0) for s in stats)),
        nonfinite_positions=int(sum(s.nonfinite.sum() for s in stats)),
        nonfinite_rows=tuple(nonfinite_rows[:5]),
        vocab_size=stats[0].vocab_size,
        dtype=dtype,
        rtol=rtol,
        atol=atol,
        hypotheses=found,
        verdict=verdict,
        at_init=at_init,
        ignore_index=ignore_index,
    )
    rules = select_rules(select, ignore, kind="loss")
    findings, skipped = engine.run_loss(evidence, rules=rules,
                                        options=resolve_options(rules, options), source=name)
    return LossReport(evidence, findings, skipped, tuple(notes), device, name)


def _check_ids_fit(model: Any, tensors: Sequence[Mapping[str, Any]]) -> None:
    """An id past the embedding table makes the forward pass fail with an IndexError deep in
    torch (or a CUDA assert): say what is wrong first."""
    embeddings = getattr(model, "get_input_embeddings", lambda: None)()
    rows = getattr(getattr(embeddings, "weight", None), "shape", (None,))[0]
    if rows is None:
        return
    top = max((int(t["input_ids"].max()) for t in tensors if t["input_ids"].numel()), default=-1)
    if top >= rows:
        raise LabelLintError(f"input id {top} is past the model's embedding table ({rows} rows): "
                             "`labellint check --model` shows where (token-out-of-vocab, "
                             "tokenizer-model-mismatch)")
