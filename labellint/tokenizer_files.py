"""A tokenizer folder read with the tokenizers library, where that reads what transformers would.

Importing transformers (and the torch it pulls in) costs seconds; labellint needs from a
tokenizer only ids, special tokens, the chat template, encode and decode, all of which a
`tokenizer.json` holds. A folder whose transformers tokenizer is that file as it is (class
`TokenizersBackend` / `PreTrainedTokenizerFast`, every setting in tokenizer_config.json one
whose effect is known here, every special token already in the file) is read directly, as a
`TokenizerFolder`. Any other folder (a model-specific tokenizer class, which transformers
rebuilds from its own code; `auto_map`; sentencepiece files only; a setting not known here) is
loaded by transformers, as before. A TokenizerFolder hands anything it does not offer itself to
the transformers tokenizer, loaded on first use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import files
from .errors import LabelLintError

NAMED = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
         "mask_token")
# transformers' classes that use tokenizer.json as saved (PreTrainedTokenizerFast is an alias
# of TokenizersBackend in transformers 5); every model-specific class rebuilds the pipeline.
PLAIN_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")
# tokenizer_config.json keys whose effect on what labellint reads is known: none, or read here.
# add_bos_token/add_eos_token are dropped by transformers when tokenizer.json exists.
KNOWN_KEYS = frozenset(NAMED) | {
    "backend", "tokenizer_class", "clean_up_tokenization_spaces", "model_max_length",
    "padding_side", "truncation_side", "model_input_names", "chat_template",
    "added_tokens_decoder", "additional_special_tokens", "extra_special_tokens",
    "add_bos_token", "add_eos_token", "split_special_tokens", "name_or_path",
}
TOKENIZER_BYTES = 1 << 30  # the largest real tokenizer.json files are tens of MB
TEMPLATE_BYTES = 1 << 24
_ADDED_FLAGS = ("content", "special", "lstrip", "rstrip", "normalized", "single_word")


def load_folder(path: Path, *, trust_remote_code: bool) -> Any:
    """The tokenizer of a local folder: a TokenizerFolder where it reads the same as
    transformers' tokenizer, else transformers' own."""
    light = read_folder(path, trust_remote_code=trust_remote_code)
    return light if light is not None else transformers_tokenizer(path, trust_remote_code)


def transformers_tokenizer(path: Path, trust_remote_code: bool) -> Any:
    """AutoTokenizer.from_pretrained on a local folder, its failures as one LabelLintError."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise LabelLintError("reading a tokenizer folder needs transformers: "
                             "pip install 'labellint[hf]'") from None
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True,
                                             trust_remote_code=trust_remote_code)
    except (KeyboardInterrupt, SystemExit):
        raise
    # transformers raises many types for a bad folder, and the tokenizers library panics
    # (a BaseException) on some malformed tokenizer.json files.
    except BaseException as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if "trust_remote_code" in str(e) or "custom code" in str(e):
            raise LabelLintError(
                f"{path}: this tokenizer needs its own code (auto_map in tokenizer_config.json), "
                "and labellint runs none unless asked: --trust-remote-code, or "
                "trust_remote_code=True") from None
        raise LabelLintError(f"{path}: cannot load a tokenizer from it ({first[:300]})") from None


def read_folder(path: Path, *, trust_remote_code: bool = False) -> TokenizerFolder | None:
    """The folder as a TokenizerFolder, or None where only transformers reads it right (any
    failure here included: transformers then says what is wrong, in its own words)."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        return None
    if not path.is_dir() or any((path / n).exists() for n in (
            "added_tokens.json", "additional_chat_templates")):
        # Legacy files whose merge into the config follows rules not repeated here.
        return None
    try:
        config = files.read_json(path / "tokenizer_config.json")
        if not _plain_config(config, path) or not _map_agrees(config, path):
            return None
        backend = Tokenizer.from_buffer(_read_bytes(path / "tokenizer.json", TOKENIZER_BYTES))
        template = config.get("chat_template")
        if (path / "chat_template.jinja").exists():
            template = _read_bytes(path / "chat_template.jinja", TEMPLATE_BYTES).decode("utf-8")
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # unreadable here: transformers reads it, or says why not
        return None
    if template is not None and not isinstance(template, str):
        return None  # several named templates: transformers chooses among them
    named = {k: _content(config.get(k)) for k in NAMED}
    extra = [_content(t) for t in config.get("extra_special_tokens")
             or config.get("additional_special_tokens") or []]
    if not _same_tokens(backend, config, [*named.values(), *extra]):
        return None
    return TokenizerFolder(path, backend, named, extra, template, trust_remote_code)


def _read_bytes(path: Path, limit: int) -> bytes:
    fd = files.open_fd(path)
    with os.fdopen(fd, "rb") as f:
        raw = f.read(limit + 1)
    if len(raw) > limit:
        raise LabelLintError(f"{path}: too large")
    return raw


def _plain_config(config: dict, path: Path) -> bool:
    """Whether transformers builds this folder's tokenizer from tokenizer.json unchanged."""
    if config.get("tokenizer_class") not in PLAIN_CLASSES or set(config) - KNOWN_KEYS:
        return False
    if config.get("clean_up_tokenization_spaces") not in (None, False) \
            or config.get("split_special_tokens") not in (None, False):
        return False
    extra = config.get("extra_special_tokens") or config.get("additional_special_tokens") or []
    if not isinstance(extra, list) or not all(isinstance(t, (str, dict)) for t in extra):
        return False
    if not all(v is None or isinstance(v, str) or (isinstance(v, dict) and isinstance(
            v.get("content"), str)) for v in (config.get(k) for k in NAMED)):
        return False
    if (path / "config.json").exists():
        # transformers patches the pre-tokenizer of Mistral tokenizers saved before 5.0.
        model = files.read_json(path / "config.json", object)
        if not isinstance(model, dict) or "mistral" in str(model.get("model_type", "")).lower():
            return False
    return True


def _map_agrees(config: dict, path: Path) -> bool:
    """Whether special_tokens_map.json (transformers 4 writes one beside the config) says what
    the config says: transformers reads it only for a config without added_tokens_decoder, and
    then lets it override the config's special tokens."""
    if not (path / "special_tokens_map.json").exists():
        return True
    mapped = files.read_json(path / "special_tokens_map.json")
    if "added_tokens_decoder" not in config:
        return False
    for key, value in mapped.items():
        if key in NAMED:
            if key not in config or _content(value) != _content(config[key]):
                return False
        elif key in ("additional_special_tokens", "extra_special_tokens"):
            mine = config.get("extra_special_tokens") or config.get("additional_special_tokens")
            if not isinstance(value, list) or [_content(t) for t in value] != \
                    [_content(t) for t in mine or []]:
                return False
        else:
            return False
    return True


def _content(value: Any) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


def _same_tokens(backend: Any, config: dict, specials: list[str | None]) -> bool:
    """Whether transformers would add no token nor change one: every special token is already
    an added token of tokenizer.json, and the config's added tokens are its own, flag for flag."""
    added = backend.get_added_tokens_decoder()
    contents = {t.content for t in added.values()}
    if any(s is not None and s not in contents for s in specials):
        return False
    saved = config.get("added_tokens_decoder") or {}
    if not isinstance(saved, dict):
        return False
    for index, token in saved.items():
        have = added.get(int(index)) if str(index).isdigit() else None
        if have is None or not isinstance(token, dict) or any(
                token.get(k, getattr(have, k)) != getattr(have, k) for k in _ADDED_FLAGS):
            return False
    return True


class TokenizerFolder:
    """The part of a transformers tokenizer labellint calls, read from a folder's files with the
    tokenizers library; every other attribute is the transformers tokenizer's, loaded on first
    use (`transformers()`)."""

    is_light = True

    def __init__(self, path: Path, backend: Any, named: dict[str, str | None],
                 extra: list[str | None], chat_template: str | None,
                 trust_remote_code: bool) -> None:
        self.name_or_path = str(path)
        self.backend_tokenizer = backend
        self.chat_template = chat_template
        self._named = named
        self._extra = [t for t in extra if t is not None]
        self._trust_remote_code = trust_remote_code
        self._full: Any = None
        for key, text in named.items():
            setattr(self, key, text)
            setattr(self, f"{key}_id", None if text is None else backend.token_to_id(text))

    def transformers(self) -> Any:
        """The transformers tokenizer of the same folder (imports transformers)."""
        if self._full is None:
            self._full = transformers_tokenizer(Path(self.name_or_path), self._trust_remote_code)
        return self._full

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not set above. Private names (dunders for pickle and copy,
        # transformers' own internals) are never forwarded: reading one must not load
        # transformers, and labellint reads no tokenizer's internals.
        if name.startswith("_") or "_full" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.transformers(), name)

    def __len__(self) -> int:
        return self.backend_tokenizer.get_vocab_size(with_added_tokens=True)

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"TokenizerFolder({self.name_or_path!r})"

    @property
    def vocab_size(self) -> int:
        return self.backend_tokenizer.get_vocab_size(with_added_tokens=False)

    @property
    def special_tokens_map(self) -> dict[str, str]:
        return {k: v for k, v in self._named.items() if v is not None}

    @property
    def all_special_tokens(self) -> list[str]:
        return list(dict.fromkeys([*self.special_tokens_map.values(), *self._extra]))

    @property
    def all_special_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self.all_special_tokens)

    @property
    def added_tokens_decoder(self) -> dict[int, Any]:
        return self.backend_tokenizer.get_added_tokens_decoder()

    def get_vocab(self) -> dict[str, int]:
        return self.backend_tokenizer.get_vocab(with_added_tokens=True)

    def get_chat_template(self) -> str:
        if self.chat_template is None:
            raise ValueError("this tokenizer has no chat template")
        return self.chat_template

    def apply_chat_template(self, *args: Any, **kwargs: Any) -> Any:
        return self.transformers().apply_chat_template(*args, **kwargs)

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> Any:
        if isinstance(tokens, str):
            return self._token_id(tokens)
        return [self._token_id(t) for t in tokens]

    def _token_id(self, token: str) -> int | None:
        found = self.backend_tokenizer.token_to_id(token)
        return self.unk_token_id if found is None else found

    def convert_ids_to_tokens(self, ids: int | list[int]) -> Any:
        if isinstance(ids, int):
            return self.backend_tokenizer.id_to_token(ids)
        return [self.backend_tokenizer.id_to_token(int(i)) for i in ids]

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.backend_tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        ids = self.encode(text, add_special_tokens=add_special_tokens)
        return {"input_ids": ids, "attention_mask": [1] * len(ids)}

    def decode(self, ids: Any, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None) -> str:
        # The folder's clean_up_tokenization_spaces is False (or the folder is transformers'):
        # a caller's True is transformers' to honour.
        if clean_up_tokenization_spaces:
            return self.transformers().decode(ids, skip_special_tokens=skip_special_tokens,
                                              clean_up_tokenization_spaces=True)
        ids = [ids] if isinstance(ids, int) else [int(i) for i in ids]
        return self.backend_tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool | None = None) -> list[str]:
        return [self.decode(s, skip_special_tokens, clean_up_tokenization_spaces)
                for s in sequences]
