"""The bounded jinja renderer for chat templates: render, TemplateUnreadable, the bounds.

A chat template is code from a model repository. transformers renders it in jinja2's sandbox,
which stops it reaching Python's internals but not from looping for hours or writing
gigabytes (nested loops over `range`, `'x' * 10**9`). labellint renders its probes itself, in
the same sandbox with the same globals as transformers' `apply_chat_template`, bounded in time
and in size; a template past the bounds is reported as unreadable, never waited for.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from functools import lru_cache
from typing import Any

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


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse, before it is computed, an operation whose result would exceed the bounds."""
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
            _check_binop(operator, left, right)
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
