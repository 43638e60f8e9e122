"""Facts read from a tokenizer or a model: ids, vocabulary size, whether BOS is added.

transformers is imported only when a tokenizer folder needs it (tokenizer_files), so that
`import labellint` and checks of plain files, or of a folder's tokenizer.json, start fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from . import files, tokenizer_files
from .arguments import ID_LIMIT, describe
from .errors import LabelLintError
from .facts import Facts, merge_facts

# Special tokens that end an assistant turn in common chat templates. The model must learn to
# emit them as it learns EOS.
END_OF_TURN = (
    "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>",
    "</s>", "<|end_of_text|>", "<|END_OF_TURN_TOKEN|>", "<|return|>",
)
PROBE = "labellint probe"
# No model has an embedding table of 2**32 rows; a config claiming one is corrupt.
MAX_VOCAB = 2**32


def load_tokenizer(tokenizer: Any, *, trust_remote_code: bool = False) -> Any:
    """A transformers tokenizer from a loaded one or a local folder (never the hub); a folder
    that tokenizer.json describes whole is read without transformers (tokenizer_files).

    A folder's own code (`auto_map` in tokenizer_config.json) runs only with
    `trust_remote_code=True`; without it transformers is told no, rather than left to ask on
    the terminal.
    """
    if not isinstance(tokenizer, (str, Path)):
        if not callable(getattr(tokenizer, "convert_tokens_to_ids", None)):
            raise LabelLintError("tokenizer must be a transformers tokenizer or a local "
                                 f"tokenizer folder, not a {type(tokenizer).__name__}")
        return tokenizer
    path = Path(tokenizer)
    if not path.exists():
        raise LabelLintError(f"{path}: no such tokenizer folder")
    if path.is_dir():
        for entry in path.iterdir():
            if entry.exists() and not (entry.is_file() or entry.is_dir()):
                # A FIFO or device would block transformers' read forever.
                raise LabelLintError(f"{entry}: not a regular file; a tokenizer folder holds "
                                     "files")
    if trust_remote_code is not True and trust_remote_code is not False:
        raise LabelLintError(f"trust_remote_code must be True or False, not {trust_remote_code!r}")
    return tokenizer_files.load_folder(path, trust_remote_code=trust_remote_code)


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
    special = _special_token_ids(tok)
    # Qwen pads with <|endoftext|>: a pad id is never an end of turn, whatever its text.
    facts["end_of_turn_ids"] = tuple(
        i for i in (special.get(t) for t in END_OF_TURN)
        if i is not None and i not in (facts["eos_id"], facts["pad_id"])
    )
    from .chat_format import chat_format

    facts["chat"] = chat_format(tok)
    if facts["chat"] is not None and len(facts["chat"].turn_end) == 1:
        # The template's own turn end counts even when it is not in the list above (a marker
        # split into pieces is no end of turn: LL407 reports it).
        extra = [i for i in facts["chat"].turn_end if i not in (facts["eos_id"], facts["pad_id"])]
        facts["end_of_turn_ids"] = tuple(dict.fromkeys(facts["end_of_turn_ids"] + tuple(extra)))
    facts["eos_every_turn"] = _eos_every_turn(tok, facts["eos_id"], facts["chat"])
    return facts


def _special_token_ids(tok: Any) -> dict[str, int]:
    """Text -> id of the tokenizer's special and added tokens.

    Only these can be a template's markers: a byte-level vocabulary also holds `</s>` as an
    ordinary merge (Qwen2's id 128247), which text containing "</s>" encodes to, and which ends
    nothing.
    """
    out: dict[str, int] = {}
    added = getattr(tok, "added_tokens_decoder", None) or {}
    for i, t in added.items():
        out[str(getattr(t, "content", t))] = int(i)
    for t, i in zip(getattr(tok, "all_special_tokens", ()), getattr(tok, "all_special_ids", ())):
        out.setdefault(str(t), int(i))
    return out


def _bos_every_turn(tok: Any, bos_id: int | None) -> bool | None:
    """Whether the chat template writes BOS at every user turn (Llama-2's `<s>[INST]`).

    Found by rendering a two-turn conversation, as `add_bos` is found by encoding a probe.
    """
    if bos_id is None or not getattr(tok, "chat_template", None):
        return None
    return _written_twice(tok, bos_id)


def _eos_every_turn(tok: Any, eos_id: int | None, chat: Any) -> bool | None:
    """Whether the chat template writes EOS after every answer although EOS is not its turn end
    (Apriel 1.5 closes an answer with `<|end|>\n</s>` and goes on with the next user turn).

    Found by rendering a two-answer conversation, as `bos_every_turn` is.
    """
    if eos_id is None or chat is None or not chat.headers or eos_id in chat.turn_end:
        return None
    return _written_twice(tok, eos_id)


def _written_twice(tok: Any, token_id: int) -> bool | None:
    """Whether the template writes `token_id` twice in a two-answer conversation; None when it
    cannot be rendered or encoded (chat_format reports why)."""
    from .template import TemplateUnreadable, render

    turns = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}] * 2
    try:
        # Rendered bounded, then encoded as apply_chat_template(tokenize=True) encodes it.
        ids = tok.encode(render(tok, turns), add_special_tokens=False)
    except TemplateUnreadable:
        return None
    except Exception:  # a tokenizer that cannot encode the render tells us nothing here
        return None
    return sum(1 for i in ids if i == token_id) >= 2


def _special_ids(config: Any) -> dict[str, Any]:
    """bos/eos/pad ids of a model config (a dict or a config object); eos may be a list."""
    get = config.get if isinstance(config, dict) else lambda k: getattr(config, k, None)

    def ids(value: Any) -> tuple[int, ...]:
        values = value if isinstance(value, (list, tuple)) else [value]
        # Old conversions write -1 for "none".
        return tuple(int(v) for v in values
                     if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < ID_LIMIT)

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
        files.regular(config_file, "a regular file (a model config is a JSON file)")
        try:
            config = files.read_json(config_file, object)
        except LabelLintError as e:
            reason = str(e).removeprefix(f"{config_file}: ")
            raise LabelLintError(f"{config_file}: cannot read a model config ({reason})") \
                from None
        return _config_facts(config, str(config_file))
    if isinstance(model, Mapping):
        return _config_facts(model, "the model config")
    if not (hasattr(model, "config") or hasattr(model, "vocab_size")
            or callable(getattr(model, "get_input_embeddings", None))):
        raise LabelLintError("model must be a transformers model, its config (or a dict of "
                             f"it), or a local model folder, not a {type(model).__name__}")
    config = getattr(model, "config", model)
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    embeddings = getattr(model, "get_input_embeddings", None)
    if callable(embeddings) and embeddings() is not None:
        size = int(embeddings().weight.shape[0])
    else:
        size = getattr(config, "vocab_size", None)
    return {"vocab_size": size, "model_vocab_size": size, **_special_ids(config)}


def _config_facts(config: Any, where: str) -> dict[str, Any]:
    """vocab_size and special ids of a config.json's contents, checked: it is data on disk."""
    if not isinstance(config, Mapping):
        raise LabelLintError(f"{where}: a model config must be a JSON object, not "
                             f"{describe(config)}")
    text = config.get("text_config", config)
    if text is None:
        text = config
    if not isinstance(text, Mapping):
        raise LabelLintError(f"{where}: text_config must be an object, not {describe(text)}")
    size = text.get("vocab_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int)
                             or not 1 <= size < MAX_VOCAB):
        raise LabelLintError(f"{where}: vocab_size must be a positive whole number below "
                             f"2**32, not {describe(size)}")
    return {"vocab_size": size, "model_vocab_size": size, **_special_ids(text)}


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
