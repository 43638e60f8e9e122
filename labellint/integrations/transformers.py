"""LabelLintCallback: a `transformers` Trainer callback that lints what the model receives.

    trainer = Trainer(..., callbacks=[LabelLintCallback(batches=8, check_loss=True)])
    trainer.train()   # raises LabelLintError before the first optimizer step on broken data

Two checks, both on what the model really receives:

- `on_train_begin`: the first `batches` batches of the Trainer's own dataloader and collator go
  through the data rules. They are drawn from a single-process copy of the loader with every
  random state saved and restored, so training then sees the same batches in the same order.
- The first optimizer step: a forward hook turns the outputs of each of its micro-batches into
  per-position numbers (stats.TokenStats) as they are made, the step is logged on its own,
  and the logged loss is compared with the reference over the whole accumulation window
  (loss forensics on a mismatch). Captured outputs, not a second forward pass: the optimizer
  has stepped by the time the loss is logged, and dropout makes each forward different.

Findings go to the Trainer's log (so to the user's tracker) as `labellint/...` numbers, and to
the `labellint` logger as the text report.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from transformers import Trainer, TrainerCallback

from ..config import Config, load_config
from ..errors import LabelLintError
from ..formats import counted
from ..loss.check import RTOL, report_from_stats
from ..loss.report import LossReport
from ..loss.reference import stats_from_logits, stats_from_target_log_probs
from ..loss.stats import TokenStats
from ..plan import Plan
from ..report import FAIL_ON
from ..text_report import Report
from .dataloader import first_batches

logger = logging.getLogger("labellint")

# The reference is computed from the very logits the Trainer's loss came from, not from a
# second forward, so only the loss's own float32 accumulation separates them (the CE of bf16
# logits is upcast too); half-precision log-probs summed in their own dtype keep RTOL's slack.
CAPTURED_RTOL = {**RTOL, "float64": 1e-6, "float32": 1e-5}

__all__ = ["LabelLintCallback"]


class LabelLintCallback(TrainerCallback):
    """Lint the first batches before training, and check the first optimizer step's loss.

    batches: how many batches of the Trainer's dataloader to check (at least the
        accumulation window's micro-batches when check_loss).
    check_loss: compare the loss the Trainer logs for the first optimizer step with the
        reference computed from that step's own outputs. The first step is logged on its own
        for this, whatever logging_steps says (the next log then averages from step 2).
    fail_on: "error" (default) or "warning" raises LabelLintError; None only logs.
    select, ignore, options, facts: as for `labellint.check`, laid over the `[tool.labellint]`
        table of the nearest pyproject.toml (`config=False` ignores it; a path picks one).
    rtol: the loss tolerance; by default it follows the logits' dtype (loss.RTOL).
    causal_lm: the rules are for causal LMs, so other models pass through unchecked; True
        checks a causal LM of your own that transformers' mapping does not name.
    """

    def __init__(self, batches: int = 8, *, check_loss: bool = True,
                 fail_on: str | None = "error", select: Sequence[str] | None = None,
                 ignore: Sequence[str] | None = None,
                 options: Mapping[str, Mapping[str, Any]] | None = None,
                 config: str | Path | bool = True, rtol: float | None = None,
                 causal_lm: bool | None = None, **facts: Any) -> None:
        if not isinstance(batches, int) or isinstance(batches, bool) or batches < 1:
            raise LabelLintError(f"batches must be a count of 1 or more, not {batches!r}")
        if fail_on is not None and fail_on not in FAIL_ON:
            raise LabelLintError(f"fail_on must be one of {', '.join(FAIL_ON)} or None, "
                                 f"not {fail_on!r}")
        self.batches = batches
        self.check_loss = check_loss
        self.fail_on = fail_on
        self.rtol = rtol
        self.causal_lm = causal_lm
        cfg = Config() if config is False else _load_config(config)
        if cfg.path is not None:
            logger.info("labellint: settings from %s", cfg.path)
        settings = cfg.check_kwargs(select=select, ignore=ignore, options=options, **facts)
        # A tokenizer or model path of the table loads at train begin, and only where the
        # Trainer brings none of its own (_live_plan).
        self._objects = {k: settings.pop(k) for k in ("tokenizer", "model")}
        self.plan = Plan(config=cfg, **settings)  # every bad argument: now
        self._given = set(facts)
        self._custom_loss = False
        self.report: Report | None = None
        self.loss_report: LossReport | None = None
        self._capture: _StepCapture | None = None
        self._trainer: Trainer | None = None

    # -- before the first step --------------------------------------------------------------

    def on_train_begin(self, args, state, control, model=None, processing_class=None,
                       train_dataloader=None, **kwargs):
        if self._capture is not None:  # a previous train() that raised mid-step
            self._capture.close()
            self._capture = None
        self._trainer = _calling_trainer()
        why = "the Trainer passed no train dataloader" if train_dataloader is None else \
            None if self.causal_lm else _not_a_causal_lm(model)
        if why:
            logger.warning("labellint: nothing checked: %s", why)
            return
        accumulation = max(1, args.gradient_accumulation_steps)
        try:
            batches = first_batches(train_dataloader, max(
                self.batches, accumulation if self.check_loss else 0))
        except LabelLintError as e:
            logger.warning("labellint: nothing checked: %s", e)
            return
        if not batches:
            raise LabelLintError("the Trainer's train dataloader yields no batches")
        plan = self._live_plan(processing_class, model, args)
        where = "the first" if state.global_step == 0 else "the epoch's first"
        self.report = plan.run(batches, name=f"{where} {len(batches)} training batches")
        self._log(state, _data_metrics(self.report))
        self._stop_or_warn(self.report, f"training stopped before the first step: "
                           f"{_verdict(self.report)} in {where} {len(batches)} batches the "
                           "Trainer would train on")
        if self.check_loss and model is not None:
            why = _loss_not_comparable(args, state)
            if why:
                logger.warning("labellint: the loss check is skipped: %s", why)
                return
            self._custom_loss = _custom_loss(self._trainer)
            facts = self.report.sources[0].facts  # as the data check resolved them
            self._capture = _StepCapture(model, batches[:accumulation], state.global_step + 1,
                                         ignore_index=facts.ignore_index, pad_id=facts.pad_id)

    def _live_plan(self, processing_class: Any, model: Any, args: Any) -> Plan:
        """The plan with the Trainer's own tokenizer and model, which beat paths in the table;
        the callback's own arguments beat both. So with max_length: the callback's and the
        table's beat the Trainer's args (SFTConfig.max_length)."""
        objects = dict(self._objects)
        tokenizer = getattr(processing_class, "tokenizer", processing_class)
        if tokenizer is None:  # Trainer(data_collator=DataCollatorForSeq2Seq(tok)) alone
            tokenizer = getattr(getattr(self._trainer, "data_collator", None), "tokenizer", None)
        for key, live in (("tokenizer", tokenizer), ("model", model)):
            if live is not None and key not in self._given:
                objects[key] = live
        length = None if self.plan.given.get("max_length") is not None else \
            _truncation_length(args)
        return self.plan.with_objects(**objects, max_length=length)

    def _stop_or_warn(self, report: Report | LossReport, stopped: str) -> None:
        """Raise with the report if it reaches fail_on; else log what it found or skipped."""
        if self.fail_on and report.failed(self.fail_on):
            raise LabelLintError(f"{stopped}\n\n{report.render().plain}")
        if report.findings:
            logger.warning("labellint: %s", report.render().plain)
        elif isinstance(report, Report) and _skipped(report):
            logger.warning("labellint: no finding in %s, but rules were skipped: %s",
                           report.sources[0].source, _skipped(report))

    # -- the first optimizer step -----------------------------------------------------------

    def on_step_end(self, args, state, control, **kwargs):
        capture = self._capture
        if capture is not None and state.global_step == capture.step:
            capture.close()
            control.should_log = True  # the step's own loss, not a mean over logging_steps
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        capture = self._capture
        if capture is None or not logs or "loss" not in logs or state.global_step != capture.step:
            return
        self._capture = None
        report = capture.report(float(logs["loss"]),
                                rtol=capture.rtol if self.rtol is None else self.rtol,
                                select=self.plan.select, ignore=self.plan.ignore,
                                options=self.plan.raw_options)
        if report is None:
            return
        self.loss_report = report
        self._log(state, _loss_metrics(report))
        verdict = report.evidence.verdict
        if self._custom_loss and verdict is not None and not verdict.agrees \
                and not verdict.matched:
            # A loss of the user's own (an extra term, distillation, token weights) that no
            # common mistake explains may well be deliberate: a run is not stopped on a guess.
            logger.warning("labellint: the Trainer's loss is custom code and differs from the "
                           "cross-entropy in a way no common mistake explains; if that is "
                           "deliberate, pass check_loss=False or ignore LL901: %s",
                           report.render().plain)
            return
        self._stop_or_warn(report, f"training stopped at step {state.global_step}: the logged "
                           f"loss {logs['loss']:.6g} is not the reference "
                           f"{report.reference_loss:.6g}")

    def on_train_end(self, args, state, control, **kwargs):
        if self._capture is not None:
            self._capture.close()
            self._capture = None

    # -- reporting --------------------------------------------------------------------------

    def _log(self, state: Any, metrics: dict[str, float]) -> None:
        if self._trainer is not None:
            self._trainer.log(dict(metrics))
        else:
            state.log_history.append({**metrics, "step": state.global_step})


def _load_config(config: str | Path | bool) -> Config:
    """The table named, or the nearest one to the working folder, else to the training script
    (launchers and job schedulers often start scripts from elsewhere)."""
    if config is not True:
        return load_config(config)
    found = load_config()
    script = getattr(sys.modules.get("__main__"), "__file__", None)
    if found.path is None and script:
        found = load_config(start=Path(script).resolve().parent)
    return found


def _truncation_length(args: Any) -> int | None:
    """The length TRL's SFTTrainer cuts rows to (SFTConfig.max_length), if the args carry one.

    Plain TrainingArguments have no such field: the dataset was cut before the Trainer saw it.
    Wrapped packing splits long rows across sequences instead of cutting them.
    """
    length = getattr(args, "max_length", None)
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        return None
    if getattr(args, "packing", False) and getattr(args, "packing_strategy", None) == "wrapped":
        return None
    return length


def _not_a_causal_lm(model: Any) -> str | None:
    """Why the rules (written for next-token labels) do not apply to this model, if they don't.

    Teams add callbacks to every Trainer of a shared framework: a seq2seq, token-classification
    or masked-LM model must pass through, not be stopped on causal-LM rules.
    """
    if model is None:
        return None
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT
    config = getattr(base, "config", None)
    if getattr(config, "is_encoder_decoder", False):
        return f"{type(base).__name__} is an encoder-decoder model, not a causal LM"
    causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    names = {c.__name__ for c in type(base).__mro__}
    if config is not None and not (names & causal or any(n.endswith("ForCausalLM")
                                                         for n in names)):
        return (f"{type(base).__name__} is not a causal language model as far as labellint can "
                "tell (pass causal_lm=True if it is one)")
    return None


def _custom_loss(trainer: Trainer | None) -> bool:
    """Whether the loss is the user's code: a compute_loss_func or an overridden compute_loss."""
    if trainer is None:
        return False
    if getattr(trainer, "compute_loss_func", None) is not None:
        return True
    own = type(trainer).compute_loss
    library = {Trainer.compute_loss}
    try:
        from trl import SFTTrainer

        library.add(SFTTrainer.compute_loss)
    except ImportError:
        pass
    return own not in library


def _loss_not_comparable(args: Any, state: Any) -> str | None:
    """Why the logged loss is, by the user's choice, not the plain token-mean cross-entropy."""
    if state.global_step > 0:
        return (f"the run resumes at step {state.global_step}, not at the batches checked "
                "before training")
    if args.world_size > 1 or getattr(args, "n_gpu", 1) > 1:
        return f"the logged loss is a mean over {max(args.world_size, args.n_gpu)} processes"
    if getattr(args, "label_smoothing_factor", 0):
        return f"label_smoothing_factor is {args.label_smoothing_factor}"
    loss_type = getattr(args, "loss_type", "nll")  # TRL's SFTConfig
    if loss_type not in (None, "nll"):
        return f"the loss is TRL's loss_type={loss_type!r}, not cross-entropy"
    return None


def _verdict(report: Report) -> str:
    parts = [counted(len(report.errors), "error")]
    if report.warnings:
        parts.append(counted(len(report.warnings), "warning"))
    return " and ".join(parts)


def _skipped(report: Report) -> str:
    """The rules skipped for want of a fact (not by design), with why: a clean report with
    the key rules skipped must not read as clean."""
    return "; ".join(f"{code}: {why}" for s in report.sources
                     for code, why in s.unjudged.items())


def _data_metrics(report: Report) -> dict[str, float]:
    metrics = {"labellint/errors": float(len(report.errors)),
               "labellint/warnings": float(len(report.warnings)),
               "labellint/skipped_rules": float(sum(len(s.unjudged) for s in report.sources))}
    for f in report.findings:
        metrics[f"labellint/{f.code}_{f.name}_rows"] = float(f.count_rows)
    return metrics


def _loss_metrics(report: LossReport) -> dict[str, float]:
    metrics = {"labellint/reference_loss": report.reference_loss,
               "labellint/loss_errors": float(len(report.errors)),
               "labellint/loss_warnings": float(len(report.warnings))}
    for f in report.findings:
        metrics[f"labellint/{f.code}_{f.name}"] = 1.0
    return metrics


def _calling_trainer() -> Trainer | None:
    """The Trainer whose callback handler is calling us.

    Callbacks are handed the model and the loaders but not the Trainer, and trackers hear only
    what goes through `Trainer.log`; the handler's caller is a Trainer method, a few frames up.
    """
    frame = sys._getframe(1)
    for _ in range(12):
        if frame is None:
            return None
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, Trainer):
            return candidate
        frame = frame.f_back
    return None


# -- the first optimizer step's outputs -------------------------------------------------------


class _StepCapture:
    """Per-position numbers of each micro-batch of one optimizer step, taken from the model's
    own forward as it runs.

    A forward is matched to its micro-batch by its input_ids: TRL runs a second, gradient-free
    forward of the same micro-batch for its metrics, and evaluation forwards are not training.
    Labels come from the collated batch, since a custom compute_loss pops them before the
    forward (and the Trainer's num_items_in_batch counted them there).
    """

    def __init__(self, model: Any, batches: Sequence[Mapping[str, Any]], step: int, *,
                 ignore_index: int, pad_id: int | None) -> None:
        self.batches = [{k: v for k, v in b.items() if isinstance(v, torch.Tensor)}
                        for b in batches]
        self.step = step
        self.options = dict(ignore_index=ignore_index, label_shift="model", pad_id=pad_id)
        self.vocab_size = _vocab_size(model)
        self.stats: list[TokenStats] = []
        self.notes: list[str] = []
        self.problem: str | None = None
        self.device = "cpu"
        self.handle = model.register_forward_hook(self._hook, with_kwargs=True)

    def close(self) -> None:
        self.handle.remove()

    def _hook(self, module: Any, args: tuple, kwargs: dict, output: Any) -> None:
        if not module.training:
            return
        ids = kwargs.get("input_ids", args[0] if args else None)
        batch = self.batches[len(self.stats)]
        if not isinstance(ids, torch.Tensor) or not _same(ids, batch.get("input_ids")):
            return  # another forward (a repeated one, a reference model's): not this micro-batch
        if "labels" not in batch:
            self.problem = "the collated batches have no labels"
            return
        self.device = str(ids.device)
        try:
            with torch.no_grad():
                self.stats.append(self._stats(output, batch, ids.device))
        except LabelLintError as e:
            self.problem = str(e)
        if self.problem or len(self.stats) == len(self.batches):
            self.close()  # nothing more to take: a step that then fails leaves no hook behind

    def _stats(self, output: Any, batch: Mapping[str, Any], device: Any) -> TokenStats:
        on_device = {k: v.to(device) for k, v in batch.items()}
        if _field(output, "aux_loss") is not None:
            raise LabelLintError("the model adds a router auxiliary loss to the cross-entropy")
        logits = output if isinstance(output, torch.Tensor) else _field(output, "logits")
        if logits is not None:
            return stats_from_logits(logits, on_device, **self.options)
        log_probs = _field(output, "log_probs")
        if log_probs is not None:
            if not self.notes:
                self.notes.append("the model returned the targets' log-probabilities (a fused "
                                  "LM head), not logits: the forensics are limited to how the "
                                  "loss is averaged")
            return stats_from_target_log_probs(log_probs, on_device, vocab_size=self.vocab_size,
                                               **self.options)
        raise LabelLintError("the model's outputs hold neither logits nor log-probabilities")

    def report(self, logged: float, **rules: Any) -> LossReport | None:
        self.close()
        if self.problem or len(self.stats) != len(self.batches):
            why = self.problem or (
                f"{len(self.stats)} of the first step's {len(self.batches)} micro-batches reached "
                "the model as the check drew them (a collator or dataset with its own randomness "
                "in dataloader workers, or a training_step that changes the inputs)")
            logger.warning("labellint: the loss check is skipped: %s", why)
            return None
        return report_from_stats(self.stats, logged, "the Trainer's logged loss",
                                 notes=self.notes, name=f"step {self.step}",
                                 device=self.device, **rules)


    @property
    def rtol(self) -> float:
        dtype = self.stats[0].dtype if self.stats else "bfloat16"
        return CAPTURED_RTOL.get(dtype, RTOL["bfloat16"])


def _field(output: Any, name: str) -> Any:
    value = output.get(name) if isinstance(output, Mapping) else getattr(output, name, None)
    return value if isinstance(value, torch.Tensor) else None


def _same(ids: torch.Tensor, expected: Any) -> bool:
    return isinstance(expected, torch.Tensor) and ids.shape == expected.shape and \
        torch.equal(ids.detach().cpu(), expected.cpu())


def _vocab_size(model: Any) -> int:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    weight = getattr(head, "weight", None)
    return int(weight.shape[0]) if weight is not None else 0
