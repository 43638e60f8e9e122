"""ChatFormat: the chat-template markers around each turn, read from the tokenizer's own template.

A chat row is a run of turns, each opened by a role header (`<|im_start|>assistant\\n`,
`<|start_header_id|>user<|end_header_id|>\\n\\n`) and closed by an end-of-turn token
(`<|im_end|>`, `<|eot_id|>`). The markers are read from the template, not from a list: a probe
conversation with sentinel contents is rendered with `apply_chat_template(tokenize=False)`, and
the text between the sentinels is the previous turn's end followed by the next turn's header.
A list of well-known families is only the fallback for a tokenizer without a template.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from os.path import commonprefix
from typing import Any, Callable, Mapping

import numpy as np

from .template import TemplateUnreadable, render

ASSISTANT = "assistant"
SENTINEL = "Zqx{}qZ"  # letters only: never merges with a header's trailing whitespace
PROBES = (
    ("system", "user", "assistant", "user", "assistant"),
    ("user", "assistant", "user", "assistant"),  # templates that reject a system turn (Gemma)
)
# Families a tokenizer without a chat template may still use: header (with the role), turn end.
KNOWN_FAMILIES = (
    ("<|im_start|>{role}\n", "<|im_end|>", {}),
    ("<|start_header_id|>{role}<|end_header_id|>\n\n", "<|eot_id|>", {}),
    ("<start_of_turn>{role}\n", "<end_of_turn>", {ASSISTANT: "model"}),
)
# The markers inside a template's headers and turn ends: `<|im_start|>`, `<start_of_turn>`.
MARKER = re.compile(r"<[^<>\s]{2,}>")
# Special tokens that read like HTML tags (`<s>`, `</s>`, `<pad>`) also occur in real text.
TAG_LIKE = re.compile(r"^</?[A-Za-z]+>$")

Ids = tuple[int, ...]


def _pairs(value: Any) -> tuple:
    items = value.items() if isinstance(value, Mapping) else value
    return tuple((str(k), None if v is None else _ids(v)) for k, v in items)


def _ids(value: Any) -> Any:
    if isinstance(value, (int, np.integer)):
        return int(value)
    return tuple(int(i) for i in value)


@dataclass(frozen=True)
class ChatFormat:
    """What the tokenizer's chat template writes around each turn, as token ids.

    headers: role -> ids of the role header as the template writes it (`<|im_start|>user\\n`).
    header_cores: role -> the header without its trailing whitespace tokens; turns are found by
        it, since the whitespace may merge with the content that follows. Defaults to `headers`.
    turn_end: ids that close an assistant turn (`<|im_end|>`); the first one in a turn ends it.
    special: text -> its single id (None when the tokenizer has no single token for it): the
        special tokens and template markers that must never be written as several tokens.
    decode: ids -> text, for checking that special text (LL407); from the tokenizer.
    split_suspects: ids -> whether each could start a special text written as ordinary tokens
        in `decode`'s text; a row with none of them cannot hold a split (LL407 decodes only
        the others). From the tokenizer, where its decoder allows the proof; else None.
    """

    headers: Any = ()
    turn_end: Any = ()
    header_cores: Any = None
    special: Any = ()
    decode: Callable[[list[int]], str] | None = field(default=None, compare=False, repr=False)
    origin: str = "user"
    split_suspects: Callable[[np.ndarray], np.ndarray] | None = field(
        default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        from .errors import LabelLintError

        try:
            headers = _pairs(self.headers)
            cores = headers if self.header_cores is None else _pairs(self.header_cores)
            special = _pairs(self.special)
            turn_end = _ids(self.turn_end)
        except (TypeError, ValueError, AttributeError):
            raise LabelLintError("chat headers, turn_end and special must map roles or texts to "
                                 "token ids") from None
        if any(not ids for _, ids in headers) or isinstance(turn_end, int):
            raise LabelLintError("a chat header or turn_end is empty or not a list of ids")
        object.__setattr__(self, "headers", headers)
        object.__setattr__(self, "header_cores", cores)
        object.__setattr__(self, "special", special)
        object.__setattr__(self, "turn_end", turn_end)

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(role for role, _ in self.headers)

    def core(self, role: str) -> Ids:
        return dict(self.header_cores).get(role) or dict(self.headers)[role]

    def describe(self) -> str:
        """One line for the report's facts."""
        parts = [f"{'/'.join(self.roles)} headers"] if self.headers else []
        if self.turn_end:
            parts.append(f"turn end {list(self.turn_end)}")
        if self.special:
            parts.append(f"{len(self.special)} special texts")
        return ", ".join(parts + [self.origin] if self.origin != "user" else parts) or \
            "no markers"

    def __str__(self) -> str:
        return self.describe()


# -- discovery from a tokenizer ----------------------------------------------------------------

NO_TEMPLATE = "no chat template"


def chat_format(tok: Any) -> ChatFormat | None:
    """The chat markers of a transformers tokenizer: from its template, else a known family.

    When the template cannot be read (it raises, runs past the probe's bounds, or never writes
    the messages), the reason is kept in the origin, which the report's facts line shows.
    """
    found, why, rendered = _from_template(tok)
    unread = f"the chat template could not be read: {why}" if why else None
    if found is None:
        found = _from_known_family(tok, rendered)
        if found is not None and unread:
            found = (*found[:3], f"known family ({unread})", *found[4:])
    none = (NO_TEMPLATE if not getattr(tok, "chat_template", None)
            else unread or "a chat template whose role headers could not be read")
    headers, cores, end, origin, _, _ = found or ({}, {}, (), none, {}, "")
    special = _special_texts(tok, found)
    if not headers and not special and not unread:
        return None
    return ChatFormat(headers=headers, header_cores=cores, turn_end=end, special=special,
                      decode=_decoder(tok), origin=origin,
                      split_suspects=SplitSuspects.of(tok, special))


def _encode(tok: Any, text: str) -> list[int]:
    return list(tok.encode(text, add_special_tokens=False))


def _encode_before(tok: Any, text: str) -> list[int]:
    """`text`'s ids as they come out with content after them (whitespace can merge differently
    at the end of a string than before a word)."""
    after = SENTINEL.format("end")
    full, tail = _encode(tok, text + after), _encode(tok, after)
    if tail and full[-len(tail):] == tail:
        return full[: -len(tail)]
    return _encode(tok, text)


def _strip_space(tok: Any, ids: list[int]) -> list[int]:
    """`ids` without trailing tokens that decode to whitespace."""
    while ids and not tok.decode(ids[-1:]).strip():
        ids = ids[:-1]
    return ids


def _render(tok: Any, roles: tuple[str, ...]) -> str:
    """The probe conversation in `roles` order, rendered; TemplateUnreadable says why not."""
    messages = [{"role": r, "content": SENTINEL.format(i)} for i, r in enumerate(roles)]
    return render(tok, messages)


def _split(text: str, roles: tuple[str, ...]) -> tuple[dict[str, str], str] | None:
    """Headers by role and the turn end, from a render of sentinel messages in `roles` order.

    The text between two sentinels is the first turn's end and the second turn's header; what
    follows the last sentinel is the last turn's end. The end is what all of them start with; a
    role's header is what all its turns share after it (Qwen3 adds `<think></think>` to the last
    assistant turn only).
    """
    sentinels = [SENTINEL.format(i) for i in range(len(roles))]
    at = [text.find(s) for s in sentinels]
    if min(at) < 0 or at != sorted(at):
        return None
    after = [a + len(s) for a, s in zip(at, sentinels)]
    gaps = [text[after[i]: at[i + 1]] for i in range(len(roles) - 1)]
    end = _whole_markers(commonprefix(gaps + [text[after[-1]:]]))
    if not end.strip():
        return None
    candidates: dict[str, list[str]] = {}
    for gap, role in zip(gaps, roles[1:]):
        candidates.setdefault(role, []).append(gap[len(end):])
    headers = {role: _shared_header(c) for role, c in candidates.items()}
    user = headers.get("user", "")
    if "system" not in headers and "user" in user:
        # The first turn's header is mixed with what precedes it (BOS, a date line): name it by
        # analogy with the user header, and keep it only if the render contains it.
        system = user.replace("user", "system", 1)
        if system in text[: at[0]]:
            headers["system"] = system
    if not headers.get(ASSISTANT, "").strip():
        return None  # not a header family ([INST] ... [/INST] has no assistant header)
    return {r: h for r, h in headers.items() if h.strip()}, end


def _shared_header(candidates: list[str]) -> str:
    """A role's header from the text before each of its turns: what they all start with, else
    what they all end with. A template may write more after the previous turn's end only before
    some turns (Apriel 1.5 closes assistant turns with `<|end|>\n<|im_end|>`, so a user header
    reads `<|im_end|><|user|>\n` after an answer and `<|user|>\n` after the system turn)."""
    head = _whole_markers(commonprefix(candidates))
    if head.strip():
        return head
    tail = commonprefix([c[::-1] for c in candidates])[::-1]
    opens, closes = tail.find("<"), tail.find(">")
    if closes >= 0 and (opens < 0 or closes < opens):  # starts inside a marker: cut it off
        tail = tail[closes + 1:]
    return tail if MARKER.search(tail) else ""


def _whole_markers(text: str) -> str:
    """A common prefix cut back to whole markers: `<|end|>\n<|user|>` and `<|end|>\n<|assistant|>`
    share `<|end|>\n<|`, which ends inside the next marker."""
    cut = text.rfind("<")
    return text[:cut] if cut > text.rfind(">") else text


def _markers_to_ids(tok: Any, headers: Mapping[str, str], end: str, origin: str):
    ids = {role: _encode_before(tok, h) for role, h in headers.items()}
    cores = {role: _strip_space(tok, list(v)) or v for role, v in ids.items()}
    end_ids = _strip_space(tok, _encode(tok, end.strip()))
    if not end_ids or not all(ids.values()):
        return None
    return ids, cores, tuple(end_ids), origin, headers, end


def _from_template(tok: Any) -> tuple[Any, str | None, str | None]:
    """The markers read from the template, or None and why they could not be; and the first
    probe render that succeeded (None when none did)."""
    if not getattr(tok, "chat_template", None) or not hasattr(tok, "apply_chat_template"):
        return None, None, None
    reasons, rendered = [], None
    for roles in PROBES:
        try:
            text = _render(tok, roles)
        except TemplateUnreadable as e:
            reasons.append(str(e))
            if e.final:  # a template that runs too long or too large does so for every probe
                break
            continue
        rendered = rendered if rendered is not None else text
        parsed = _split(text, roles)
        if parsed:
            found = _markers_to_ids(tok, *parsed, "chat template")
            if found:
                return found, None, text
            reasons.append("its markers do not encode to tokens")
        elif all(SENTINEL.format(i) in text for i in range(len(roles))):
            reasons.append("its render has no role header before the assistant's turn")
        else:
            reasons.append("its render does not contain the messages' contents")
    return None, reasons[-1] if reasons else None, rendered


def _from_known_family(tok: Any, rendered: str | None):
    """A known family's markers, when the vocabulary holds them and the template's render (if
    one succeeded) writes them."""
    # A template that renders without a family's markers writes other ones (DeepSeek's
    # R1 distill of Llama 3 keeps Llama 3's vocabulary but writes `<｜User｜>`): data made with
    # it holds none of the family's headers, so they would find no turns to judge.
    families = [(header, end, names) for header, end, names in KNOWN_FAMILIES
                if rendered is None or MARKER.match(header).group(0) in rendered]
    if not families:
        return None  # before get_vocab, which builds a dict of the whole vocabulary
    vocab = tok.get_vocab() if hasattr(tok, "get_vocab") else {}
    for header, end, names in families:
        opener = MARKER.match(header).group(0)
        if opener in vocab and end in vocab:
            headers = {r: header.format(role=names.get(r, r))
                       for r in ("system", "user", ASSISTANT)}
            return _markers_to_ids(tok, headers, end, "known family")
    return None


def _special_texts(tok: Any, found) -> dict[str, int | None]:
    """Special tokens, and the markers the template writes, each with its single id or None."""
    texts = list(getattr(tok, "all_special_tokens", []) or [])
    added = getattr(tok, "added_tokens_decoder", {}) or {}
    texts += [t.content for t in added.values() if getattr(t, "special", False)]
    if found:
        *_, headers, end = found
        texts += MARKER.findall("".join(headers.values()) + end)
    out: dict[str, int | None] = {}
    for text in dict.fromkeys(t for t in texts if isinstance(t, str) and len(t) > 1):
        try:
            ids = _encode(tok, text)
        except Exception:  # a text the tokenizer cannot encode at all is no use here
            continue
        out[text] = ids[0] if len(ids) == 1 else None
    return out


def _decoder(tok: Any) -> Callable[[list[int]], str]:
    try:
        size = len(tok)
    except TypeError:
        size = getattr(tok, "vocab_size", None)

    backend = _backend_decode(tok)

    def decode(ids: list[int]) -> str:
        # The tokenizer raises OverflowError on an id outside its vocabulary (a negative id, a
        # corrupt one): such an id has no text, and the id rules report it.
        if size is not None and ids and (min(ids) < 0 or max(ids) >= size):
            ids = [i for i in ids if 0 <= i < size]
        if backend is not None:
            return backend(ids, skip_special_tokens=False)
        return tok.decode(ids, skip_special_tokens=False)

    return decode


# The transformers classes whose decode is the `tokenizers` library's, then an optional clean-up.
_BACKEND_DECODE = {"decode": ("PreTrainedTokenizerBase",),
                   "_decode": ("TokenizersBackend", "PreTrainedTokenizerFast")}


def _backend_decode(tok: Any) -> Callable | None:
    """The `tokenizers` decode that `tok.decode` calls, when calling it directly gives the same
    text: transformers' own decode, not a model's override, with no clean-up of spaces. Its
    conversion of the ids to Python objects first costs more than the decoding itself."""
    mro = type(tok).__mro__
    for name, owners in _BACKEND_DECODE.items():
        owner = next((c for c in mro if name in c.__dict__), None)
        if owner is None or owner.__name__ not in owners or \
                not owner.__module__.startswith("transformers."):
            return None
    if getattr(tok, "clean_up_tokenization_spaces", True):
        return None
    return getattr(getattr(tok, "backend_tokenizer", None), "decode", None)


class SplitSuspects:
    """Which token ids could start a special text in a byte-level tokenizer's decoded text,
    other than as that text's own single token: ids whose bytes hold a special text's first
    character, less the special tokens whose text no other special text can start inside.

    Every character of a decoded text comes from the bytes of one token, and an ASCII byte
    decodes to its own character whatever surrounds it (UTF-8 repair never absorbs it), so a
    special text that occurs other than as its own token starts at a suspect's byte. Ids are
    judged when first met (their token string read from the tokenizer), and kept.
    """

    def __init__(self, backend: Any, size: int, firsts: str, benign: set[int]) -> None:
        self.backend, self.firsts, self.benign = backend, firsts, benign
        self.state = np.zeros(size, dtype=np.int8)  # 0 not judged yet, 1 suspect, 2 not

    @classmethod
    def of(cls, tok: Any, special: Mapping[str, int | None]) -> SplitSuspects | None:
        backend = getattr(tok, "backend_tokenizer", None)
        if type(getattr(backend, "decoder", None)).__name__ != "ByteLevel" or not special:
            return None
        try:
            size = len(tok)
        except TypeError:
            return None
        firsts = "".join(sorted({text[0] for text in special}))
        # The byte-level alphabet writes the printable ASCII bytes as themselves.
        if not all("!" <= c <= "~" for c in firsts):
            return None
        benign = {i for text, i in special.items()
                  if i is not None and not _starts_another(text, i, special, firsts)}
        return cls(backend, size, firsts, benign)

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        """Per id of `ids` (all inside the vocabulary), whether it is a suspect."""
        state = self.state[ids]
        new = np.unique(ids[state == 0])
        if new.size:
            # Once per id met for the first time: bounded by the vocabulary, not the data.
            self.state[new] = [self._judge(int(i)) for i in new]
            state = self.state[ids]
        return state == 1

    def _judge(self, i: int) -> int:
        if i in self.benign:
            return 2
        token = self.backend.id_to_token(i)
        return 1 if token is None or any(c in token for c in self.firsts) else 2


def _starts_another(text: str, token: int, special: Mapping[str, int | None],
                    firsts: str) -> bool:
    """Whether some special text could start inside `text` (or at its start, as another text
    than the one `token` is), running on past its end or not."""
    for at, c in enumerate(text):
        if c not in firsts:
            continue
        rest = text[at:]
        for other, other_id in special.items():
            if at == 0 and other_id == token and other == text:
                continue
            if rest.startswith(other) or other.startswith(rest):
                return True
    return False
