"""Chat-template markers found from the tokenizer's own template, and the turns they mark in rows.

A chat row is a run of turns, each opened by a role header (`<|im_start|>assistant\\n`,
`<|start_header_id|>user<|end_header_id|>\\n\\n`) and closed by an end-of-turn token
(`<|im_end|>`, `<|eot_id|>`). The markers are read from the template, not from a list: a probe
conversation with sentinel contents is rendered with `apply_chat_template(tokenize=False)`, and
the text between the sentinels is the previous turn's end followed by the next turn's header.
A list of well-known families is only the fallback for a tokenizer without a template.

Turns are then found in the flat token arrays with vectorised comparisons: candidate starts
where a header's first id occurs, narrowed by one comparison per header token (a loop over the
header's few ids, never over the row's tokens), and per-turn sums with `np.bincount`.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from os.path import commonprefix
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

if TYPE_CHECKING:
    from .batch import Batch

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
    """

    headers: Any = ()
    turn_end: Any = ()
    header_cores: Any = None
    special: Any = ()
    decode: Callable[[list[int]], str] | None = field(default=None, compare=False, repr=False)
    origin: str = "user"

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


# -- rendering a template, bounded ----------------------------------------------------------------

# A chat template is code from a model repository. transformers renders it in jinja2's sandbox,
# which stops it reaching Python's internals but not from looping for hours or writing
# gigabytes (nested loops over `range`, `'x' * 10**9`). labellint renders its probes itself, in
# the same sandbox with the same globals as transformers' `apply_chat_template`, bounded in time
# and in size; a template past the bounds is reported as unreadable, never waited for.
PROBE_SECONDS = 2.0
PROBE_CHARS = 1 << 20  # the render, and any one string or count the template builds
TEMPLATE_CHARS = 1 << 20  # templates are kilobytes; a bigger one is not compiled


class TemplateUnreadable(Exception):
    """A render that failed or passed the bounds; `final` when no other probe would do better."""

    def __init__(self, reason: str, *, final: bool = False) -> None:
        super().__init__(reason)
        self.final = final


_limits = threading.local()
# Templates that failed for good: their next render fails at once (tokenizer_facts renders
# a template three times; a slow one must cost the bound once, not three times).
_FAILED: dict[str, str] = {}


def _tick() -> None:
    if time.monotonic() > getattr(_limits, "deadline", float("inf")):
        raise TemplateUnreadable(f"its render ran past {PROBE_SECONDS:g} s", final=True)


def _too_big(reason: str) -> TemplateUnreadable:
    return TemplateUnreadable(f"it builds {reason} past the probe's {PROBE_CHARS:,} characters",
                              final=True)


def _check_counts(args: tuple, kwargs: dict) -> None:
    """Counts and widths passed to a call or filter (`center(10**9)`) stay under the bound."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > PROBE_CHARS:
            raise _too_big(f"a count of {value:,}")


FORMAT_WIDTH = re.compile(r"[%:{][^%{}]*?\d{7,}")  # a width of a million or more


def _bounded_iter(iterable: Any) -> Any:
    for item in iterable:
        _tick()
        yield item


@lru_cache(maxsize=1)
def _environment() -> Any:
    import json
    from datetime import datetime

    import jinja2
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(Extension):
        """`{% generation %}...{% endgeneration %}` (transformers' assistant masks): its body."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            next(parser.stream)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    class Bounded(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**", "%"})

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
            _tick()
            _check_counts(args, kwargs)
            # The sandbox hands out str.format wrapped; the string is on the wrapped method.
            owner = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
            if isinstance(owner, str) and FORMAT_WIDTH.search(owner):
                raise _too_big("a format width")
            return super().call(__context, __obj, *args, **kwargs)

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            _tick()
            if operator == "*":
                for seq, n in ((left, right), (right, left)):
                    if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and \
                            len(seq) * n > PROBE_CHARS:
                        raise _too_big(f"a {type(seq).__name__} repeated {n:,} times")
            if operator == "**" and isinstance(left, int) and isinstance(right, int) and \
                    abs(left) > 1 and right * max(abs(left).bit_length(), 1) > 4 * PROBE_CHARS:
                raise _too_big(f"a power {left}**{right}")
            if operator == "%" and isinstance(left, str) and FORMAT_WIDTH.search(left):
                raise _too_big("a format width")
            return super().call_binop(context, operator, left, right)

    def guarded(f: Any) -> Any:
        @functools.wraps(f)
        def run(*args: Any, **kwargs: Any) -> Any:
            _tick()
            _check_counts(args, kwargs)
            return f(*args, **kwargs)

        return run

    def raise_exception(message: Any) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    class Namespace(jinja2.utils.Namespace):
        # As transformers': no underscore attributes stored on a namespace.
        def __init__(*args: Any, **kwargs: Any) -> None:
            self, args = args[0], args[1:]
            attrs = dict(*args, **kwargs)
            if any(isinstance(k, str) and k.startswith("_") for k in attrs):
                raise jinja2.exceptions.SecurityError("no underscore attributes on a namespace")
            jinja2.utils.Namespace.__init__(self, attrs)

    env = Bounded(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.filters = {name: guarded(f) for name, f in env.filters.items()}
    env.globals.update(raise_exception=raise_exception, namespace=Namespace,
                       strftime_now=lambda fmt: datetime.now().strftime(fmt),
                       dict=lambda *a, **k: dict(*a, **k), labellint_bounded=_bounded_iter)
    return env


@lru_cache(maxsize=32)
def _compiled(template: str) -> Any:
    from jinja2 import nodes

    env = _environment()
    try:
        tree = env.parse(template)
        for loop in tree.find_all(nodes.For):
            # Every loop steps through the deadline check, however its iterable was built.
            loop.iter = nodes.Call(nodes.Name("labellint_bounded", "load"), [loop.iter], [],
                                   None, None)
        return env.from_string(tree), None
    except Exception as e:  # jinja2's syntax errors, and Python's limits on nesting
        return None, f"it does not compile ({type(e).__name__}: {_first_line(e)})"


def _first_line(e: BaseException) -> str:
    return ((str(e).strip().splitlines() or [type(e).__name__])[0])[:200]


def _template_text(tok: Any) -> str:
    get = getattr(tok, "get_chat_template", None)
    try:
        template = get() if callable(get) else tok.chat_template
    except Exception as e:  # transformers raises when there is none, or several and no default
        raise TemplateUnreadable(_first_line(e), final=True) from None
    if not isinstance(template, str):
        raise TemplateUnreadable(f"it is a {type(template).__name__}, not text", final=True)
    return template


def render(tok: Any, messages: list[dict[str, str]], *,
           add_generation_prompt: bool = False) -> str:
    """`tok.apply_chat_template(messages, tokenize=False)`, bounded in time and output size.

    Raises TemplateUnreadable with the reason when the template cannot be rendered within the
    bounds, or raises (a template may reject a role order).
    """
    template = _template_text(tok)
    if template in _FAILED:
        raise TemplateUnreadable(_FAILED[template], final=True)
    try:
        return _render_bounded(template, tok, messages, add_generation_prompt)
    except TemplateUnreadable as e:
        if e.final:
            if len(_FAILED) >= 32:
                _FAILED.pop(next(iter(_FAILED)))
            _FAILED[template] = str(e)
        raise


def _render_bounded(template: str, tok: Any, messages: list[dict[str, str]],
                    add_generation_prompt: bool) -> str:
    if len(template) > TEMPLATE_CHARS:
        raise TemplateUnreadable(f"it is {len(template):,} characters long", final=True)
    compiled, error = _compiled(template)
    if compiled is None:
        raise TemplateUnreadable(error, final=True)
    specials = getattr(tok, "special_tokens_map", {}) or {}
    context = {k: v for k, v in specials.items() if isinstance(v, (str, list))}
    context |= {"messages": messages, "tools": None, "documents": None,
                "add_generation_prompt": add_generation_prompt}
    _limits.deadline = time.monotonic() + PROBE_SECONDS
    out: list[str] = []
    size = 0
    try:
        for piece in compiled.generate(**context):
            size += len(piece)
            if size > PROBE_CHARS:
                raise TemplateUnreadable(f"its render passed {PROBE_CHARS:,} characters",
                                         final=True)
            _tick()
            out.append(piece)
    except TemplateUnreadable:
        raise
    except RecursionError:
        raise TemplateUnreadable("it recurses without end", final=True) from None
    except Exception as e:  # the template's own raise_exception, or a type error in it
        raise TemplateUnreadable(f"it raised {type(e).__name__}: {_first_line(e)}") from None
    finally:
        _limits.deadline = float("inf")
    return "".join(out)


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
                      decode=_decoder(tok), origin=origin)


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

    def decode(ids: list[int]) -> str:
        # The tokenizer raises OverflowError on an id outside its vocabulary (a negative id, a
        # corrupt one): such an id has no text, and the id rules report it.
        if size is not None:
            ids = [i for i in ids if 0 <= i < size]
        return tok.decode(ids, skip_special_tokens=False)

    return decode


# -- turns in a batch --------------------------------------------------------------------------


def _find(b: Batch, seq: Ids) -> np.ndarray:
    """Flat indices where `seq` starts with all of it inside one row."""
    at = b.where_id(seq[0])
    at = at[_room(b, at) >= len(seq)]
    for k, token in enumerate(seq[1:], 1):  # one comparison per header token
        at = at[b.input_ids[at + k] == token]
    return at


def _matches(b: Batch, seq: Ids, at: np.ndarray) -> np.ndarray:
    """Whether `seq` starts at each index of `at`."""
    ok = _room(b, at) >= len(seq)
    for k, token in enumerate(seq):
        ok[ok] &= b.input_ids[at[ok] + k] == token
    return ok


def _room(b: Batch, at: np.ndarray) -> np.ndarray:
    """Tokens left in the row from each flat index of `at` (itself included)."""
    return b.ends[b.rows_of(at)] - at


class Turns:
    """The turns of a batch's chat rows, found from the role headers in `facts.chat`.

    A turn runs from its header to the next header or the row's end; tokens before a row's first
    header (BOS) belong to no turn. Per token: `turn` (-1 outside), `in_header`, `in_core`
    (the header without trailing whitespace), `content` (real tokens after the header). Per
    turn: `start`, `row`, `role`, `assistant`, `stop` (flat index of its first turn-end token,
    -1 when it has none).
    """

    def __init__(self, b: Batch) -> None:
        fmt = b.facts.chat
        ids = b.input_ids
        self.cache: dict = {}
        starts, roles, full_len, core_len = [], [], [], []
        for r, role in enumerate(fmt.roles):
            full, core = dict(fmt.headers)[role], fmt.core(role)
            at = _find(b, core)
            starts.append(at)
            roles.append(np.full(at.size, r))
            full_len.append(np.where(_matches(b, full, at), len(full), len(core)))
            core_len.append(np.full(at.size, len(core)))
        order = np.argsort(np.concatenate(starts), kind="stable")
        start = np.concatenate(starts)[order]
        keep = np.ones(start.size, dtype=bool)
        keep[1:] = start[1:] != start[:-1]  # two roles' headers at one place: keep the first
        order = order[keep]
        self.start = start[keep]
        self.role = np.concatenate(roles)[order]
        header_len = np.concatenate(full_len)[order]
        core = np.concatenate(core_len)[order]
        self.assistant = self.role == (fmt.roles.index(ASSISTANT) if ASSISTANT in fmt.roles else -1)
        self.n = int(self.start.size)
        self.row = b.rows_of(self.start)

        # A turn runs to the next turn's start or its row's end: the flat indices of its tokens
        # come from its extent, without a row index per token.
        stop = b.ends[self.row]
        stop[:-1] = np.minimum(stop[:-1], self.start[1:])
        length = stop - self.start
        before = np.cumsum(length) - length
        owner = np.repeat(np.arange(self.n), length)
        offset = np.arange(int(length.sum())) - np.repeat(before, length)
        index = self.start[owner] + offset
        self.turn = np.full(b.n_tokens, -1, dtype=np.int64)
        self.turn[index] = owner
        self.in_header = np.zeros(b.n_tokens, dtype=bool)
        self.in_header[index] = offset < header_len[owner]
        self.in_core = np.zeros(b.n_tokens, dtype=bool)
        self.in_core[index] = offset < core[owner]
        self.content = (self.turn >= 0) & ~self.in_header & b.real

        self.stop = np.full(self.n, -1, dtype=np.int64)
        # A turn end split into pieces (LL407) cannot be told apart from content: use EOS then.
        ends = np.asarray(fmt.turn_end if len(fmt.turn_end) == 1 else b.facts.stop_ids,
                          dtype=ids.dtype)
        is_end = self.content & np.isin(ids, ends)
        at = np.flatnonzero(is_end)
        owner = self.turn[at]  # sorted, as turns run in token order
        first = np.ones(at.size, dtype=bool)
        first[1:] = owner[1:] != owner[:-1]
        self.stop[owner[first]] = at[first]

    def per_turn(self, mask: np.ndarray) -> np.ndarray:
        """Per turn, how many tokens of `mask` it holds."""
        return np.bincount(self.turn[mask & (self.turn >= 0)], minlength=self.n)

    def spread(self, turn_mask: np.ndarray) -> np.ndarray:
        """Per token, whether its turn is in `turn_mask` (False outside every turn).

        A batch with no turn at all (pretraining text under a chat tokenizer) gives all False.
        """
        out = np.zeros(self.turn.size, dtype=bool)
        inside = self.turn >= 0
        out[inside] = turn_mask[self.turn[inside]]
        return out

    def per_row(self, turn_mask: np.ndarray, n_rows: int) -> np.ndarray:
        """Per row, how many turns of `turn_mask` it holds."""
        return np.bincount(self.row[turn_mask], minlength=n_rows)

    @cached_property
    def prompt(self) -> np.ndarray:
        return ~self.assistant


def masking(b: Batch) -> tuple[Turns, dict[str, np.ndarray]]:
    """The turns, and per turn whether it has content, whether any of it is trained, and
    whether its header's markers are trained."""
    t = b.turns
    if "masking" not in t.cache:  # shared by LL601-LL603 and the inference of the facts
        body = t.content & ~_stop_token(b, t)
        t.cache["masking"] = {
            "has_content": t.per_turn(body) > 0,
            "trained": t.per_turn(body & b.trained) > 0,
            # A mask that runs past an answer's turn end trains the next turn's header and
            # nothing of its content (message-prefix renders under Qwen3's template).
            "header_trained": t.per_turn(t.in_core & b.trained) > 0,
        }
    return t, t.cache["masking"]


def _stop_token(b: Batch, t: Turns) -> np.ndarray:
    out = np.zeros(b.n_tokens, dtype=bool)
    out[t.stop[t.stop >= 0]] = True
    return out


def prompt_rows(b: Batch) -> dict[str, np.ndarray]:
    """Per row: prompt turns with content, those of them whose content is trained, and whether
    some role has both a trained turn (header or content) and a wholly masked one in the row (a
    mask that stopped after the first turn, or ran into the next turn's header).

    A trained header alone does not count as a trained prompt turn here: such rows mask their
    prompts' contents, which is what the inference of assistant_only_loss reads.
    """
    t, info = masking(b)
    if "prompt_rows" in t.cache:
        return t.cache["prompt_rows"]
    prompt = t.prompt & info["has_content"]
    trained = prompt & info["trained"]
    touched = prompt & (info["trained"] | info["header_trained"])
    masked = prompt & ~touched
    n_roles = max(len(b.facts.chat.roles), 1)
    key = t.row * n_roles + t.role
    mixed_rows = np.intersect1d(key[touched], key[masked]) // n_roles
    mixed = np.zeros(b.n_rows, dtype=bool)
    mixed[mixed_rows] = True
    t.cache["prompt_rows"] = {"prompts": t.per_row(prompt, b.n_rows),
                              "trained": t.per_row(trained, b.n_rows), "mixed": mixed}
    return t.cache["prompt_rows"]


def infer_assistant_only_loss(b: Batch, *, share_masked: float = 0.5,
                              share_trained: float = 0.9, min_rows: int = 2) -> bool | None:
    """Whether the data masks prompt turns (True) or trains on whole conversations (False).

    Read from the chat rows that have a prompt turn and a trained token: True when at least half
    of them mask every prompt turn, False when nearly all train every prompt turn (full-sequence
    training, chosen on purpose), unknown in between or on too few rows.
    """
    if b.labels is None or b.facts.chat is None or not b.facts.chat.headers:
        return None
    rows = prompt_rows(b)
    judged = (rows["prompts"] > 0) & (b.targets_per_row > 0)
    n = int(judged.sum())
    if n < min_rows:
        return None
    if np.count_nonzero(judged & (rows["trained"] == 0)) >= share_masked * n:
        return True
    if np.count_nonzero(judged & (rows["trained"] == rows["prompts"])) >= share_trained * n:
        return False
    return None


def rows_with_turn_end(b: Batch) -> np.ndarray:
    """Rows holding an assistant turn closed by its end-of-turn token: LL603 judges their stop."""
    t = b.turns
    return t.per_row(t.assistant & (t.stop >= 0), b.n_rows) > 0


def answer_unfinished(b: Batch) -> np.ndarray:
    """Per row with chat turns: its last real token lies in a prompt turn, in a header, or in
    an assistant turn with no content yet (the answer cut away before or as it began)."""
    t = b.turns
    last = b.last_real_index
    ok = last >= 0
    turn = np.full(b.n_rows, -1, dtype=np.int64)
    turn[ok] = t.turn[last[ok]]
    has = turn >= 0  # rows whose last token is before every header are not chat rows
    out = np.zeros(b.n_rows, dtype=bool)
    at = turn[has]
    content = t.per_turn(t.content)[at] > 0
    out[has] = ~t.assistant[at] | t.in_header[last[has]] | ~content
    return out
