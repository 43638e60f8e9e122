"""LL408: a tokenizer that does not belong to the model."""

from __future__ import annotations

from typing import Any, Mapping

from ..batch import Batch
from ..registry import rule, skip

# The tokenizer's id fact, and the config field it must agree with.
SPECIAL = (("bos_id", "model_bos_id", "bos_token_id"), ("pad_id", "model_pad_id", "pad_token_id"))


def mismatches(facts: Mapping[str, Any]) -> list[str]:
    """What disagrees between tokenizer and model, each as a phrase with its numbers.

    An embedding table larger than the tokenizer is padded on purpose (to a multiple of 64 or
    128) and is fine; a config whose eos_token_id lists several ids is fine if it lists the
    tokenizer's. The ids are compared only with a tokenizer given: an id inferred from the data
    is a guess, not the tokenizer's.
    """
    out = []
    size, rows = facts.get("tokenizer_size"), facts.get("model_vocab_size")
    if size is not None and rows is not None and size > rows:
        ids = f"id {rows:,} has" if size == rows + 1 else f"ids {rows:,} to {size - 1:,} have"
        out.append(f"the tokenizer has {size:,} tokens but the model's embedding table has "
                   f"{rows:,} rows ({ids} no embedding)")
    if size is None:
        return out
    for ours, theirs, field in SPECIAL:
        tok, model = facts.get(ours), facts.get(theirs)
        if tok is not None and model is not None and tok != model:
            out.append(f"the model config's {field} is {model}, the tokenizer's {tok}")
    eos, model_eos = facts.get("eos_id"), tuple(facts.get("model_eos_ids") or ())
    if eos is not None and model_eos and eos not in model_eos:
        listed = model_eos[0] if len(model_eos) == 1 else list(model_eos)
        out.append(f"the model config's eos_token_id is {listed}, the tokenizer's {eos}")
    return out


def _message(values: Mapping[str, Any]) -> str:
    return "; ".join(mismatches(values)) or "tokenizer and model disagree"


@rule(
    "LL408", "tokenizer-model-mismatch", severity="error", per="batch",
    message=_message,
    fix="after adding tokens call model.resize_token_embeddings(len(tokenizer)); set "
        "model.config (and generation_config) bos/eos/pad_token_id from the tokenizer",
)
def tokenizer_model_mismatch(b: Batch):
    """The tokenizer is longer than the model's embedding table, or their special ids differ."""
    f = b.facts
    if f.model_vocab_size is None or f.tokenizer_size is None:
        return skip("needs both a tokenizer and a model (or its config)")
    values = {name: getattr(f, name) for name in
              ("tokenizer_size", "model_vocab_size", "bos_id", "eos_id", "pad_id",
               "model_bos_id", "model_eos_ids", "model_pad_id")}
    return bool(mismatches(values))
