"""The reference forward pass: per-position log-probabilities, computed chunk by chunk.

One forward pass gives, for every position of a micro-batch, the log-probability of each
candidate target (the label the loss should score, the label one position off either way, the
next input token) and the mean log-probability over the vocabulary. The reference loss and every
forensic hypothesis (forensics.py) are sums of these per-position numbers, so the forensics cost
no second forward pass.

Memory: logits are made, upcast and reduced `chunk` positions at a time, so neither the float32
logits nor (when the model can be split into body and head) the logits in the model's dtype are
ever materialised. At vocab 128k and 2 x 4096 tokens the full float32 logits are 4 GiB; a chunk
is CHUNK_BYTES.

Precision: each chunk is upcast to float64, not only float32. A float32 log-softmax loses ~1e-7
of |logsumexp| per position, which is 1e-5 relative on a loss near 0.01; float64 agrees with a
float64 computation to 1e-12. The chunk is small and the reduction memory-bound, so the upcast
costs nothing next to the forward pass.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch

from ..errors import LabelLintError
from .stats import TokenStats

CHUNK_BYTES = 128 << 20
TOKEN_COLUMNS = ("input_ids", "labels", "attention_mask", "position_ids")
# Keys a padding-free (flattened) batch carries for FlashAttention's varlen kernels.
VARLEN_KEYS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k", "seq_idx")
NOT_MODEL_INPUTS = ("labels", "shift_labels", "num_items_in_batch", "use_cache", "return_dict")


# -- batches ----------------------------------------------------------------------------------


def as_micro_batches(batches: Any) -> list[Mapping[str, Any]]:
    """One batch dict, or a list of them (the micro-batches of one optimizer step)."""
    if isinstance(batches, Mapping):
        return [batches]
    if isinstance(batches, (list, tuple)) and batches and all(isinstance(b, Mapping)
                                                              for b in batches):
        return list(batches)
    raise LabelLintError("batches must be a batch dict or a list of batch dicts (the "
                         f"micro-batches of one optimizer step), not {type(batches).__name__}")


def to_tensors(batch: Mapping[str, Any], device: Any = None) -> dict[str, Any]:
    """The batch's columns as 2-D tensors on `device`; other keys pass through unchanged."""
    if "input_ids" not in batch:
        raise LabelLintError(f"the batch has no 'input_ids' (found: {', '.join(batch) or 'none'})")
    if "labels" not in batch:
        raise LabelLintError("the batch has no 'labels': the loss needs them")
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if key not in TOKEN_COLUMNS:
            out[key] = value.to(device) if isinstance(value, torch.Tensor) else value
            continue
        try:
            t = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
        except (ValueError, TypeError):
            raise LabelLintError(f"{key} rows differ in length: pad the micro-batch as the "
                                 "collator does (labels with -100)") from None
        if t.dtype.is_floating_point and key != "attention_mask":
            raise LabelLintError(f"{key} holds floating-point values, not token ids")
        t = t.unsqueeze(0) if t.dim() == 1 else t
        if t.dim() != 2:
            raise LabelLintError(f"{key} has {t.dim()} dimensions, not [rows, positions]")
        out[key] = t.to(device)
    shape = out["input_ids"].shape
    for key in TOKEN_COLUMNS:
        if key in out and out[key].shape != shape:
            raise LabelLintError(f"{key} has shape {tuple(out[key].shape)} but input_ids has "
                                 f"{tuple(shape)}")
    return out


# -- the per-position computation -------------------------------------------------------------


def _ahead(x: torch.Tensor, d: int, fill: int) -> torch.Tensor:
    """x[:, t + d], `fill` past the end (d >= 0) or before the start (d < 0)."""
    out = torch.full_like(x, fill)
    T = x.shape[1]
    if d >= 0 and d < T:
        out[:, : T - d] = x[:, d:]
    elif d < 0 and -d < T:
        out[:, -d:] = x[:, : T + d]
    return out


def _padding(batch: Mapping[str, Any], pad_id: int | None) -> torch.Tensor:
    """Padding positions: attention_mask == 0, or without a mask the trailing run of pad_id."""
    ids = batch["input_ids"]
    if "attention_mask" in batch:
        return batch["attention_mask"] == 0
    if pad_id is None:
        return torch.zeros_like(ids, dtype=torch.bool)
    # A trailing run of pad ids: pad == eos stays real when it ends a row before padding.
    is_pad = (ids == pad_id).flip(1)
    return (is_pad.cumprod(1) > 0).flip(1)


def token_stats(
    batch: Mapping[str, Any],
    logits_of: Callable[[int, int], torch.Tensor],
    vocab_size: int,
    *,
    ignore_index: int = -100,
    label_shift: str = "model",
    pad_id: int | None = None,
    chunk: int | None = None,
    dtype: str = "float32",
) -> TokenStats:
    """Per-position log-probabilities for one micro-batch (tensors), chunk by chunk.

    logits_of(start, stop): the logits of flat positions [start, stop) (row-major over
    [rows, positions]), in any dtype; they are upcast to float64 one chunk at a time.
    """
    ids, labels = batch["input_ids"], batch["labels"].long()
    rows, T = ids.shape
    V = vocab_size
    shift = 1 if label_shift == "model" else 0
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= V))
    if bad.any():
        values = sorted({int(v) for v in labels[bad].unique()[:5].tolist()})
        raise LabelLintError(
            f"labels hold {', '.join(map(str, values))} at {int(bad.sum())} positions: neither "
            f"ignore_index {ignore_index} nor a token id below the vocabulary size {V}, so no "
            "loss can be computed (LL104, LL405); if your loss ignores "
            f"{values[0]}, pass ignore_index={values[0]}")
    padding = _padding(batch, pad_id)
    targets = {
        "ref": _ahead(labels, shift, ignore_index),
        "noshift": _ahead(labels, shift - 1, ignore_index),
        "double": _ahead(labels, shift + 1, ignore_index),
        "next": _ahead(ids.long(), 1, ignore_index),
    }
    ok = {k: (t != ignore_index) & (t >= 0) & (t < V) for k, t in targets.items()}
    if shift == 0:  # no shift is the convention itself: nothing to compare against
        ok["noshift"] = torch.zeros_like(ok["noshift"])
    flat = {k: t.clamp(0, V - 1).reshape(-1) for k, t in targets.items()}
    n = rows * T
    step = chunk or max(1, CHUNK_BYTES // (8 * V))
    out = {k: torch.empty(n, dtype=torch.float64, device=ids.device)
           for k in (*targets, "smooth", "lse")}
    for start in range(0, n, step):
        stop = min(start + step, n)
        x = logits_of(start, stop).double()
        lse = torch.logsumexp(x, dim=-1)
        for k, t in flat.items():
            out[k][start:stop] = lse - x.gather(1, t[start:stop, None]).squeeze(1)
        out["smooth"][start:stop] = lse - x.mean(dim=-1)
        out["lse"][start:stop] = lse
        del x
    arr = {k: v.reshape(rows, T).cpu().numpy() for k, v in out.items()}
    oks = {k: v.cpu().numpy() for k, v in ok.items()}
    return TokenStats(
        shift=shift,
        nll_ref=arr["ref"], ok_ref=oks["ref"],
        nll_noshift=arr["noshift"], ok_noshift=oks["noshift"],
        nll_double=arr["double"], ok_double=oks["double"],
        nll_next=arr["next"], ok_next=oks["next"],
        smooth=arr["smooth"],
        **_mask_views(padding, labels, ignore_index),
        nonfinite=~np.isfinite(arr["lse"]),
        vocab_size=V,
        dtype=dtype,
    )


def _mask_views(padding: torch.Tensor, labels: torch.Tensor,
                ignore_index: int) -> dict[str, np.ndarray]:
    """TokenStats' padding and label masks, however the log-probabilities were had."""
    return {"pad_next": _ahead(padding.long(), 1, 0).bool().cpu().numpy(),
            "attended_next": _ahead((~padding).long(), 1, 0).bool().cpu().numpy(),
            "labelled": (labels != ignore_index).cpu().numpy()}


def stats_from_logits(logits: Any, batch: Mapping[str, Any], *, device: Any = None,
                      **options: Any) -> TokenStats:
    """TokenStats from already-computed logits [rows, positions, vocab] (or log-probs)."""
    logits = getattr(logits, "logits", None) if not isinstance(logits, torch.Tensor) else logits
    if logits is None:
        raise LabelLintError("outputs must be logits tensors or model outputs with .logits")
    ids = batch["input_ids"]
    if logits.dim() == 2:
        logits = logits.unsqueeze(0)
    if tuple(logits.shape[:2]) != tuple(ids.shape):
        raise LabelLintError(f"logits of shape {tuple(logits.shape)} do not match input_ids "
                             f"{tuple(ids.shape)}")
    V = logits.shape[-1]
    flat = logits.detach().reshape(-1, V)
    device = device or logits.device

    def logits_of(start: int, stop: int) -> torch.Tensor:
        return flat[start:stop].to(device)

    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    return token_stats(batch, logits_of, V, dtype=str(logits.dtype).removeprefix("torch."),
                       **options)


def stats_from_target_log_probs(log_probs: Any, batch: Mapping[str, Any], *,
                                ignore_index: int = -100, pad_id: int | None = None,
                                vocab_size: int = 0, **_: Any) -> TokenStats:
    """TokenStats from per-target log-probabilities [rows, positions - 1], as TRL's fused LM head
    returns them (`outputs.log_probs`: position t scores labels[t + 1], zero where ignored).

    Only the reference target is scored, so the hypotheses about other targets (no shift,
    padding counted, smoothing) have nothing to work with and stay out of the verdict; those
    about averaging (LL903) need nothing more.
    """
    ids, labels = batch["input_ids"], batch["labels"].long()
    rows, T = ids.shape
    if tuple(log_probs.shape) != (rows, T - 1):
        raise LabelLintError(f"log-probabilities of shape {tuple(log_probs.shape)} do not match "
                             f"input_ids {tuple(ids.shape)} shifted by one")
    nll = torch.zeros(rows, T, dtype=torch.float64, device=log_probs.device)
    nll[:, :-1] = -log_probs.detach().double()
    unknown = np.full((rows, T), np.nan)
    never = np.zeros((rows, T), dtype=bool)
    padding = _padding({k: v.to(log_probs.device) for k, v in batch.items()
                        if isinstance(v, torch.Tensor)}, pad_id)
    target = _ahead(labels.to(log_probs.device), 1, ignore_index)
    nll_np = nll.cpu().numpy()
    return TokenStats(
        shift=1,
        nll_ref=nll_np, ok_ref=(target != ignore_index).cpu().numpy(),
        nll_noshift=unknown, ok_noshift=never,
        nll_double=unknown, ok_double=never,
        nll_next=unknown, ok_next=never,
        smooth=unknown,
        **_mask_views(padding, labels, ignore_index),
        nonfinite=~np.isfinite(nll_np),
        vocab_size=vocab_size,
        dtype=str(log_probs.dtype).removeprefix("torch."),
    )


# -- running a model ---------------------------------------------------------------------------


def resolve_device(device: str | None, model: Any = None) -> Any:
    """`auto`: the model's accelerator if it is on one, else CUDA when available, else CPU."""
    if device in (None, "auto"):
        if model is not None:
            current = next(model.parameters()).device
            if current.type != "cpu":
                return current
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise LabelLintError(f"device must be auto, cpu or cuda, not {device!r}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise LabelLintError("device cuda was asked for, but no CUDA device is available")
    return resolved


@contextmanager
def evaluating(model: Any, device: Any) -> Iterator[None]:
    """No gradients, dropout off, on `device`; the model's mode and device are restored after."""
    was_training = model.training
    home = next(model.parameters()).device
    model.eval()
    if home != device:
        model.to(device)
    try:
        with torch.no_grad():
            yield
    finally:
        if home != device:
            model.to(home)
        model.train(was_training)


def model_inputs(model: Any, batch: Mapping[str, Any]) -> dict[str, Any]:
    """The batch's keys the model's forward takes; no attention_mask is added when absent."""
    params = inspect.signature(model.forward).parameters
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    return {k: v for k, v in batch.items() if k not in NOT_MODEL_INPUTS
            and (k in params or (takes_kwargs and k in VARLEN_KEYS))}


def accepts_loss_kwargs(model: Any) -> bool:
    """Whether the model normalises its loss by `num_items_in_batch` (the Trainer's test)."""
    if hasattr(model, "accepts_loss_kwargs"):
        return bool(model.accepts_loss_kwargs)
    params = inspect.signature(model.forward).parameters.values()
    return any(p.kind is p.VAR_KEYWORD for p in params)


def _postprocess(model: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """What a model does to its head's output before the loss (Gemma 2's soft-capping)."""
    config = getattr(model, "config", None)
    cap = getattr(config, "final_logit_softcapping", None) if config is not None else None
    if not cap:
        return lambda x: x
    return lambda x: torch.tanh(x / cap) * cap


def _body_and_head(model: Any, inputs: Mapping[str, Any]) -> tuple[Any, Any] | None:
    """Run the body once, keeping its last hidden state; the head is applied per chunk later.

    The model runs with logits_to_keep=1, so its head makes logits for the last position only;
    they check that head(hidden) reproduces the model's logits (no hidden post-processing).
    Returns None when the model cannot be split so; the caller then takes the full logits.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    base = getattr(model, "base_model", model)
    params = inspect.signature(model.forward).parameters
    if head is None or base is model or "logits_to_keep" not in params:
        return None
    captured: list[torch.Tensor] = []

    def keep(module: Any, args: Any, output: Any) -> None:
        captured.append(output[0])

    handle = base.register_forward_hook(keep)
    try:
        out = model(**inputs, use_cache=False, logits_to_keep=1, return_dict=True)
    finally:
        handle.remove()
    if len(captured) != 1 or captured[0].shape[:2] != inputs["input_ids"].shape:
        return None
    hidden = captured[0]
    post = _postprocess(model)

    def apply(h: torch.Tensor) -> torch.Tensor:
        return post(head(h))

    mine = apply(hidden[:, -1:]).float()
    theirs = out.logits[:, -1:].float()
    scale = float(theirs.abs().max()) + 1.0
    if mine.shape != theirs.shape or float((mine - theirs).abs().max()) > 1e-2 * scale:
        return None
    return hidden, apply


def stats_from_model(model: Any, batch: Mapping[str, Any], **options: Any) -> TokenStats:
    """TokenStats from one forward pass of `model` (already on its device, in eval mode).

    The body's hidden states go through the head chunk by chunk, so no logits tensor is made;
    a model that cannot be split so gives its full logits, reduced chunk by chunk.
    """
    inputs = model_inputs(model, batch)
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    split = _body_and_head(model, inputs)
    if split is None:
        logits = model(**inputs, use_cache=False, return_dict=True).logits
        return stats_from_logits(logits, batch, **options)
    hidden, apply = split
    flat = hidden.reshape(-1, hidden.shape[-1])
    V = model.get_output_embeddings().weight.shape[0]
    return token_stats(batch, lambda a, b: apply(flat[a:b]), V, dtype=dtype, **options)


def naive_loss(logits: Any, labels: Any, *, ignore_index: int = -100,
               label_shift: str = "model") -> float:
    """The textbook loss in float64 over full logits: for tests and the memory benchmark."""
    logits = logits.detach().double()
    labels = labels.long()
    if label_shift == "model":
        logits, labels = logits[:, :-1], labels[:, 1:]
    return float(torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=ignore_index))
