"""check_loss: recompute one optimizer step's loss the way it should be, and compare.

The window is one batch or the micro-batches of one gradient-accumulation step. The reference
is the token mean of the cross-entropy over the whole window, computed in float64 chunk by
chunk (reference.py); the
forensics (forensics.py) say which common mistake reproduces a reported number that differs.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Mapping, Sequence

from ..errors import LabelLintError
from ..facts import LABEL_SHIFTS
from .forensics import diagnose, hypotheses
from .report import LossEvidence, LossReport
from .reference import (
    TokenStats,
    accepts_loss_kwargs,
    as_micro_batches,
    evaluating,
    model_inputs,
    reference_loss,
    resolve_device,
    stats_from_logits,
    stats_from_model,
    supervised_count,
    to_tensors,
)
# The module, not its names: the catalogue imports rules/loss.py, which imports loss/report.py
# and so this package; bound names would fail when the catalogue is imported first. This is an
# import circle (tests/test_layout.py lists it) until LossEvidence lives outside this package.
from .. import catalog
from ..registry import Skip
from ..report import Finding

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


def run_loss_rules(evidence: LossEvidence, *, select: Any = None, ignore: Any = None,
                   options: Mapping[str, Mapping[str, Any]] | None = None,
                   source: str = "loss") -> tuple[list[Finding], dict[str, str]]:
    """Run the selected LL9xx rules on the evidence: findings, and skipped rules with reasons."""
    rules = catalog.select_rules(select, ignore, kind="loss")
    resolved = catalog.resolve_options(rules, options)
    findings, skipped = [], {}
    for r in rules:
        result = r.func(evidence, **resolved[r.code])
        if isinstance(result, Skip):
            if not result.by_design:
                skipped[r.code] = result.reason
            continue
        if not result:
            continue
        values = dict(result)
        message = r.message(values) if callable(r.message) else r.message.format(**values)
        findings.append(Finding(
            code=r.code, name=r.name, severity=r.severity, message=message, source=source,
            rows=(), positions=(), count_rows=evidence.rows, count_tokens=evidence.supervised,
            total_rows=evidence.rows, total_tokens=evidence.tokens,
            fix=r.fix.format(**values), doc=f"rules/{r.page}"))
    return findings, skipped


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
    n_window = sum(counts)
    notes: list[str] = []
    losses: list[float] = []
    how = "mean" if window == "auto" else window
    reported_from = "given"

    if model is not None:
        _check_ids_fit(model, given_tensors)
        dev = resolve_device(device, model)
        import torch

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
                    takes, auto = _loss_fn_window(loss_fn)
                    how = auto if window == "auto" else window
                    extra = {"num_items_in_batch": torch.tensor(n_window, device=dev)} if takes \
                        else {}
                    for t in tensors:
                        value = loss_fn(model, dict(t), **extra)
                        value = value[0] if isinstance(value, (tuple, list)) else value
                        losses.append(_float(value, "loss_fn's result"))
                    reported_from = "loss_fn"
        if reported is not None and _dropout(model):
            notes.append("the model has dropout: the reference runs without it, so a loss "
                         "logged in train mode differs by noise the tolerance does not cover")
        dev_name = str(dev)
    else:
        dev = None if device in (None, "auto") else resolve_device(device)
        stats = [stats_from_logits(o, t, device=dev, **stat_options)
                 for o, t in zip(outputs, given_tensors)]
        dev_name = str(dev or getattr(getattr(outputs[0], "logits", outputs[0]), "device", "cpu"))
        if reported is None:
            own = [getattr(o, "loss", None) for o in outputs]
            if all(x is not None for x in own):
                losses = [_float(x, "outputs' loss") for x in own]
                reported_from = "outputs"

    if reported is not None:
        if isinstance(reported, (list, tuple)):
            if len(reported) != len(micro):
                raise LabelLintError(f"{len(reported)} reported numbers for {len(micro)} "
                                     "micro-batches: give one per micro-batch, or one number")
            losses = [_float(x, "reported") for x in reported]
            value: float | None = _combine(losses, how)
        else:
            value = _float(reported, "reported")
    else:
        value = _combine(losses, how) if losses else None
    return report_from_stats(stats, value, reported_from, at_init=at_init, rtol=rtol, atol=atol,
                   ignore_index=ignore_index, select=select, ignore=ignore, options=options,
                   notes=notes, device=dev_name, name=name)


def _own_loss(model: Any, tensors: list[dict[str, Any]], n_window: int,
              stat_options: Mapping[str, Any], window: str):
    """The model's own .loss per micro-batch, from the forward that also gives the reference.

    Like the Trainer: a model that takes loss kwargs gets num_items_in_batch and its losses are
    summed; another model's losses are averaged over the micro-batches.
    """
    import torch

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
    findings, skipped = run_loss_rules(evidence, select=select, ignore=ignore, options=options,
                                       source=name)
    return LossReport(evidence, findings, skipped, tuple(notes), device, name)


# -- the command line: a saved model and dataset --------------------------------------------


def load_model(path: str, *, device: str = "auto", trust_remote_code: bool = False) -> Any:
    """A causal LM from a local folder: safetensors only (no pickle), never the hub."""
    from pathlib import Path

    folder = Path(path)
    if not folder.is_dir():
        raise LabelLintError(f"{folder}: no such model folder")
    try:
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging
    except ImportError:
        raise LabelLintError("labellint loss needs transformers and torch: "
                             "pip install 'labellint[hf]'") from None
    logging.disable_progress_bar()  # stderr carries one line per error, nothing else
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), local_files_only=True, use_safetensors=True,
            trust_remote_code=trust_remote_code)
    except Exception as e:  # transformers raises many types for a bad folder
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise LabelLintError(f"{folder}: cannot load a causal LM from it ({first})") from None
    return model.to(resolve_device(device))


def window_from_path(path: str, *, batch_size: int, accumulation: int, pad_id: int | None,
                     ignore_index: int = -100) -> tuple[list[dict[str, Any]], list[str]]:
    """The first batch_size x accumulation rows of a dataset as padded micro-batches.

    Rows are right-padded to the longest row of their micro-batch: input_ids with the pad id,
    labels with the ignore index, attention_mask with 0 (made when the data has none and rows
    differ in length). A dataset without labels is trained on every token: labels = input_ids.
    """
    import itertools

    import numpy as np

    from ..sources import open_sources

    if batch_size < 1 or accumulation < 1:
        raise LabelLintError("--batch-size and --accumulation must be 1 or more")
    wanted = batch_size * accumulation
    sources = open_sources(path)
    if len(sources) != 1:
        raise LabelLintError(f"{path}: {len(sources)} splits here "
                             f"({', '.join(s.name for s in sources)}); give one split's folder")
    source = sources[0]
    rows: list[dict[str, np.ndarray]] = []
    for chunk in source.chunks:  # per row, but only the few rows of one optimizer step
        n = len(chunk["input_ids"][1]) - 1
        for i in itertools.islice(range(n), wanted - len(rows)):
            rows.append({k: v[o[i]:o[i + 1]] for k, (v, o) in chunk.items()})
        if len(rows) >= wanted:
            break
    if len(rows) < wanted:
        raise LabelLintError(f"{path}: {len(rows)} rows, fewer than --batch-size x "
                             f"--accumulation = {wanted}")
    notes = []
    if "labels" not in rows[0]:
        notes.append("the data has no labels column: every token is a target (labels = "
                     "input_ids)")
    pad = 0 if pad_id is None else pad_id
    batches = []
    for k in range(accumulation):
        group = rows[k * batch_size:(k + 1) * batch_size]
        width = max(len(r["input_ids"]) for r in group)
        ragged = any(len(r["input_ids"]) != width for r in group)

        def padded(column: str, fill: int, group=group, width=width) -> np.ndarray:
            out = np.full((len(group), width), fill, dtype=np.int64)
            for i, r in enumerate(group):
                out[i, :len(r[column])] = r[column]
            return out

        real = np.zeros((len(group), width), dtype=np.int64)
        for i, r in enumerate(group):
            real[i, :len(r["input_ids"])] = 1
        batch = {"input_ids": padded("input_ids", pad)}
        if "labels" in rows[0]:
            batch["labels"] = padded("labels", ignore_index)
        else:
            batch["labels"] = np.where(real == 1, batch["input_ids"], ignore_index)
        if "attention_mask" in rows[0]:
            batch["attention_mask"] = padded("attention_mask", 0)
        elif ragged:
            batch["attention_mask"] = real
        if "position_ids" in rows[0]:
            batch["position_ids"] = padded("position_ids", 0)
        batches.append(batch)
    return batches, notes


def _config_pad_id(folder: str) -> int | None:
    """The pad id a model folder's config.json names (else its EOS), read without loading it."""
    import json
    from pathlib import Path

    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return None  # load_model says what is wrong with the folder
    config = config.get("text_config", config)
    pad = config.get("pad_token_id")
    pad = pad if pad is not None else config.get("eos_token_id")
    return pad[0] if isinstance(pad, list) and pad else pad


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


def cli_check_loss(args: Any) -> LossReport:
    """`labellint loss`: the first optimizer step's rows, then the model, then check_loss.

    The data is read first, so that a bad path or batch size fails before a model loads.
    """
    from dataclasses import replace

    pad_id = args.pad_id
    if pad_id is None and args.tokenizer:
        from ..hf_facts import load_tokenizer

        pad_id = load_tokenizer(args.tokenizer,
                                trust_remote_code=args.trust_remote_code).pad_token_id
    if pad_id is None:
        pad_id = _config_pad_id(args.model)
    catalog.select_rules(args.select, args.ignore, kind="loss")  # bad selectors fail first
    batches, notes = window_from_path(args.data, batch_size=args.batch_size,
                                      accumulation=args.accumulation, pad_id=pad_id,
                                      ignore_index=args.ignore_index)
    model = load_model(args.model, device=args.device, trust_remote_code=args.trust_remote_code)
    report = check_loss(model, batches, reported=args.reported, device=args.device,
                        at_init=args.at_init or None, ignore_index=args.ignore_index,
                        label_shift=args.label_shift, pad_id=pad_id, select=args.select,
                        ignore=args.ignore, name=str(args.data))
    return replace(report, notes=report.notes + tuple(notes))
