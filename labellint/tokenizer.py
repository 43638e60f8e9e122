"""Facts read from a tokenizer or a model: ids, vocabulary size, whether BOS is added.

transformers is imported only when a tokenizer or model is given as a path, so that
`import labellint` and checks of plain files start fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from .errors import LabelLintError
from .facts import Facts, merge_facts

# Special tokens that end an assistant turn in common chat templates. The model must learn to
# emit them as it learns EOS.
END_OF_TURN = (
    "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>",
    "</s>", "<|end_of_text|>", "<|END_OF_TURN_TOKEN|>", "<|return|>",
)
PROBE = "labellint probe"


def load_tokenizer(tokenizer: Any) -> Any:
    """A transformers tokenizer from a loaded one or a local folder (never the hub)."""
    if not isinstance(tokenizer, (str, Path)):
        if not callable(getattr(tokenizer, "convert_tokens_to_ids", None)):
            raise LabelLintError("tokenizer must be a transformers tokenizer or a local "
                                 f"tokenizer folder, not a {type(tokenizer).__name__}")
        return tokenizer
    path = Path(tokenizer)
    if not path.exists():
        raise LabelLintError(f"{path}: no such tokenizer folder")
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise LabelLintError("reading a tokenizer folder needs transformers: "
                             "pip install 'labellint[hf]'") from None
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as e:  # transformers raises many types for a bad folder
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise LabelLintError(f"{path}: cannot load a tokenizer from it ({first})") from None


def tokenizer_facts(tokenizer: Any) -> dict[str, Any]:
    """pad/bos/eos ids, vocabulary size, end-of-turn ids, chat markers, and whether encoding
    adds BOS.

    Whether BOS is added is found by encoding a probe string, not read from flags:
    `add_bos_token` can read False while the post-processor still adds BOS.
    """
    if tokenizer is None:
        return {}
    tok = load_tokenizer(tokenizer)
    facts: dict[str, Any] = {
        "pad_id": getattr(tok, "pad_token_id", None),
        "bos_id": getattr(tok, "bos_token_id", None),
        "eos_id": getattr(tok, "eos_token_id", None),
    }
    try:
        facts["vocab_size"] = facts["tokenizer_size"] = len(tok)
    except TypeError:
        facts["vocab_size"] = getattr(tok, "vocab_size", None)
    facts["bos_every_turn"] = _bos_every_turn(tok, facts["bos_id"])
    if facts["bos_id"] is not None:
        try:
            ids = tok(PROBE)["input_ids"]
            facts["add_bos"] = bool(ids) and ids[0] == facts["bos_id"]
        except Exception:  # a tokenizer that cannot encode plain text tells us nothing here
            pass
    vocab = tok.get_vocab() if hasattr(tok, "get_vocab") else {}
    added = _added_ids(tok)
    # Qwen pads with <|endoftext|>: a pad id is never an end of turn, whatever its text. Nor is
    # an ordinary token that only reads like one (Gemma 4's `</s>`, id 212: its EOS is <eos>).
    facts["end_of_turn_ids"] = tuple(
        vocab[t] for t in END_OF_TURN
        if t in vocab and vocab[t] not in (facts["eos_id"], facts["pad_id"])
        and (added is None or vocab[t] in added)
    )
    from .chat import chat_format

    facts["chat"] = chat_format(tok)
    if facts["chat"] is not None and len(facts["chat"].turn_end) == 1:
        # The template's own turn end counts even when it is not in the list above (a marker
        # split into pieces is no end of turn: LL407 reports it).
        extra = [i for i in facts["chat"].turn_end if i not in (facts["eos_id"], facts["pad_id"])]
        facts["end_of_turn_ids"] = tuple(dict.fromkeys(facts["end_of_turn_ids"] + tuple(extra)))
    return facts


def _added_ids(tok: Any) -> set[int] | None:
    """The ids of the tokenizer's added and special tokens, where it lists them (None if not).

    Chat markers and EOS are added tokens in every transformers tokenizer; a vocabulary entry
    that is not one is text the BPE merges can produce, not a marker."""
    decoder = getattr(tok, "added_tokens_decoder", None)
    if not isinstance(decoder, Mapping) or not decoder:
        return None
    ids = set(decoder)
    ids.update(getattr(tok, "all_special_ids", None) or ())
    return ids


def _bos_every_turn(tok: Any, bos_id: int | None) -> bool | None:
    """Whether the chat template writes BOS at every user turn (Llama-2's `<s>[INST]`).

    Found by rendering a two-turn conversation, as `add_bos` is found by encoding a probe.
    """
    if bos_id is None or not getattr(tok, "chat_template", None):
        return None
    turns = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}] * 2
    try:
        ids = tok.apply_chat_template(turns, tokenize=True)
    except Exception:  # a template that rejects this conversation tells us nothing here
        return None
    ids = ids.get("input_ids", ids) if hasattr(ids, "get") else ids
    return sum(1 for i in ids if i == bos_id) >= 2


def _special_ids(config: Any) -> dict[str, Any]:
    """bos/eos/pad ids of a model config (a dict or a config object); eos may be a list."""
    get = config.get if isinstance(config, dict) else lambda k: getattr(config, k, None)

    def ids(value: Any) -> tuple[int, ...]:
        values = value if isinstance(value, (list, tuple)) else [value]
        # Old conversions write -1 for "none".
        return tuple(int(v) for v in values if isinstance(v, int) and v >= 0)

    bos, pad = ids(get("bos_token_id")), ids(get("pad_token_id"))
    return {"model_bos_id": bos[0] if len(bos) == 1 else None,
            "model_eos_ids": ids(get("eos_token_id")),
            "model_pad_id": pad[0] if len(pad) == 1 else None}


def model_facts(model: Any) -> dict[str, Any]:
    """The embedding table's size and the config's special ids, from a model, a config, or a
    local folder's config.json."""
    if model is None:
        return {}
    if isinstance(model, (str, Path)):
        path = Path(model)
        config_file = path / "config.json" if path.is_dir() else path
        try:
            config = json.loads(config_file.read_text())
        except (OSError, ValueError) as e:
            raise LabelLintError(f"{config_file}: cannot read a model config ({e})") from None
        config = config.get("text_config", config)
        size = config.get("vocab_size")
        return {"vocab_size": size, "model_vocab_size": size, **_special_ids(config)}
    config = getattr(model, "config", model)
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    embeddings = getattr(model, "get_input_embeddings", None)
    if callable(embeddings) and embeddings() is not None:
        size = int(embeddings().weight.shape[0])
    else:
        size = getattr(config, "vocab_size", None)
    return {"vocab_size": size, "model_vocab_size": size, **_special_ids(config)}


def known_facts(given: Mapping[str, Any], tokenizer: Any = None, model: Any = None) -> Facts:
    """The facts known before any data is read: given beat the model's, which beat the
    tokenizer's (a loaded tokenizer, or None).

    Without a tokenizer, the model config's special ids stand in for the tokenizer's (a
    Trainer given only a model and a collator): they name the same tokens when both exist.
    """
    from_model = model_facts(model)
    if tokenizer is None and from_model:
        eos = from_model["model_eos_ids"]
        stand_in = {"pad_id": from_model["model_pad_id"], "bos_id": from_model["model_bos_id"],
                    "eos_id": eos[0] if len(eos) == 1 else None}
        from_model |= {k: v for k, v in stand_in.items() if v is not None}
    return merge_facts(("given", given), ("model", from_model),
                       ("tokenizer", tokenizer_facts(tokenizer)))
