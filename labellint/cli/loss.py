"""`labellint loss`: a saved model's first optimizer step on a saved dataset, for check_loss."""

from __future__ import annotations

from typing import Any

from ..errors import LabelLintError
from ..loss.check import check_loss
from ..loss.report import LossReport
from ..catalog import select_rules


def load_model(path: str, *, device: str = "auto", trust_remote_code: bool = False) -> Any:
    """A causal LM from a local folder: safetensors only (no pickle), never the hub."""
    from pathlib import Path

    folder = Path(path)
    if not folder.is_dir():
        raise LabelLintError(f"{folder}: no such model folder")
    try:
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging

        from ..loss.reference import resolve_device  # imports torch
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
    from ..sources import open_sources

    if batch_size < 1 or accumulation < 1:
        raise LabelLintError("--batch-size and --accumulation must be 1 or more")
    wanted = batch_size * accumulation
    sources = open_sources(path)
    if len(sources) != 1:
        raise LabelLintError(f"{path}: {len(sources)} splits here "
                             f"({', '.join(s.name for s in sources)}); give one split's folder")
    rows = _first_rows(sources[0], wanted)
    if len(rows) < wanted:
        raise LabelLintError(f"{path}: {len(rows)} rows, fewer than --batch-size x "
                             f"--accumulation = {wanted}")
    notes = []
    if "labels" not in rows[0]:
        notes.append("the data has no labels column: every token is a target (labels = "
                     "input_ids)")
    pad = 0 if pad_id is None else pad_id
    # Which columns exist is decided by the first row, for every micro-batch alike.
    columns = frozenset(rows[0])
    batches = [_padded_batch(rows[k * batch_size:(k + 1) * batch_size], columns, pad=pad,
                             ignore_index=ignore_index)
               for k in range(accumulation)]
    return batches, notes


def _first_rows(source: Any, wanted: int) -> list[dict[str, Any]]:
    """Up to `wanted` rows of a source, each column sliced out of its chunk (row by row, but
    only the few rows of one optimizer step)."""
    import itertools

    rows: list[dict[str, Any]] = []
    for chunk in source.chunks:
        n = len(chunk["input_ids"][1]) - 1
        for i in itertools.islice(range(n), wanted - len(rows)):
            rows.append({k: v[o[i]:o[i + 1]] for k, (v, o) in chunk.items()})
        if len(rows) >= wanted:
            break
    return rows


def _padded(group: list[dict[str, Any]], column: str, fill: int, width: int) -> Any:
    """One column of a micro-batch's rows, right-padded with `fill` to `width`."""
    import numpy as np

    out = np.full((len(group), width), fill, dtype=np.int64)
    for i, r in enumerate(group):
        out[i, :len(r[column])] = r[column]
    return out


def _padded_batch(group: list[dict[str, Any]], columns: frozenset, *, pad: int,
                  ignore_index: int) -> dict[str, Any]:
    """One micro-batch of rows, padded to its longest row (see window_from_path)."""
    import numpy as np

    width = max(len(r["input_ids"]) for r in group)
    ragged = any(len(r["input_ids"]) != width for r in group)
    real = np.zeros((len(group), width), dtype=np.int64)
    for i, r in enumerate(group):
        real[i, :len(r["input_ids"])] = 1
    batch = {"input_ids": _padded(group, "input_ids", pad, width)}
    if "labels" in columns:
        batch["labels"] = _padded(group, "labels", ignore_index, width)
    else:
        batch["labels"] = np.where(real == 1, batch["input_ids"], ignore_index)
    if "attention_mask" in columns:
        batch["attention_mask"] = _padded(group, "attention_mask", 0, width)
    elif ragged:
        # Only padding needs a mask: equal-length rows stay as the data has them (no mask),
        # so packed rows stay isolated by their position_ids, as check_loss leaves them.
        batch["attention_mask"] = real
    if "position_ids" in columns:
        batch["position_ids"] = _padded(group, "position_ids", 0, width)
    return batch


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
    select_rules(args.select, args.ignore, kind="loss")  # bad selectors fail before any work
    batches, notes = window_from_path(args.data, batch_size=args.batch_size,
                                      accumulation=args.accumulation, pad_id=pad_id,
                                      ignore_index=args.ignore_index)
    model = load_model(args.model, device=args.device, trust_remote_code=args.trust_remote_code)
    report = check_loss(model, batches, reported=args.reported, device=args.device,
                        at_init=args.at_init or None, ignore_index=args.ignore_index,
                        label_shift=args.label_shift, pad_id=pad_id, select=args.select,
                        ignore=args.ignore, name=str(args.data))
    return replace(report, notes=report.notes + tuple(notes))
