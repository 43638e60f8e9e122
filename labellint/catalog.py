"""The catalogue of rules: which rules exist, found by code or name, chosen by selectors.

The built-in rules come from an explicit list of modules (BUILTIN_MODULES), as pytest lists its
essential plugins: adding a rule family means adding its module here, not relying on an import
side effect. A user's own rule joins through `rule` (exported as `labellint.rule`), which makes
the Rule and adds it to the catalogue for every later check.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping

from .arguments import ID_LIMIT, describe
from .errors import LabelLintError
from .registry import KINDS, Rule, rule_of
from .registry import rule as make_rule
from .rules import (
    attention,
    chat,
    labels,
    loss,
    packing,
    shift,
    special_tokens,
    structure,
    tokenizer_model,
)

BUILTIN_MODULES = (structure, labels, attention, shift, special_tokens, packing,
                   tokenizer_model, chat, loss)


def rules_of(module: Any) -> list[Rule]:
    """The rules defined in `module` (not those it imports), in the order it defines them."""
    return [r for obj in vars(module).values()
            if (r := rule_of(obj)) is not None and obj.__module__ == module.__name__]


def _builtin() -> dict[str, Rule]:
    found: dict[str, Rule] = {}
    for module in BUILTIN_MODULES:
        for r in rules_of(module):
            _refuse_clash(r, found)
            found[r.code] = r
    return found


def _refuse_clash(r: Rule, known: Mapping[str, Rule]) -> None:
    if r.code in known or any(k.name == r.name for k in known.values()):
        raise ValueError(f"rule {r.code} {r.name} is registered twice")


BUILTIN: Mapping[str, Rule] = _builtin()
# The rules added with `rule` below, by code: a user's own, kept for the life of the process.
_ADDED: dict[str, Rule] = {}


def rule(
    code: str,
    name: str,
    *,
    severity: str,
    per: str,
    message: str | Callable[[Mapping[str, Any]], str],
    fix: str,
    requires: Iterable[str] = (),
    misaligned_rows: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A user's own rule (labellint.rule): registry.rule, then the rule joins the catalogue.

    Every later check, select_rules and `labellint rules` in this process sees it; `remove`
    takes it out again. A code or name already taken is a ValueError.
    """
    make = make_rule(code, name, severity=severity, per=per, message=message, fix=fix,
                     requires=requires, misaligned_rows=misaligned_rows)

    def add(func: Callable[..., Any]) -> Callable[..., Any]:
        made = make(func).rule
        _refuse_clash(made, {**BUILTIN, **_ADDED})
        _ADDED[made.code] = made
        return func

    return add


def remove(code: str) -> Rule:
    """Take a rule added with `rule` out of the catalogue again (built-in rules stay)."""
    if code not in _ADDED:
        raise LabelLintError(f"no rule {code!r} was added with labellint.rule")
    return _ADDED.pop(code)


def all_rules() -> list[Rule]:
    """Every rule, built-in or added, in code order."""
    return sorted([*BUILTIN.values(), *_ADDED.values()], key=lambda r: r.code)


def get_rule(code_or_name: str) -> Rule:
    for r in all_rules():
        if code_or_name in (r.code, r.name) or code_or_name.upper() == r.code:
            return r
    raise LabelLintError(f"no rule {code_or_name!r}; `labellint rules` lists them")


def selector_list(value: Any, what: str) -> list[str]:
    """`value` as a list of selector strings, or LabelLintError naming the argument `what`.

    A bare string is refused, not read as one selector: ruff's API takes lists, and a string
    iterated would select rules by its letters.
    """
    if isinstance(value, (str, bytes)):
        raise LabelLintError(f"{what} must be a list of rule codes or names, not the string "
                             f"{value!r} (write [{value!r}])")
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        raise LabelLintError(f"{what} must be a list of rule codes or names, not "
                             f"{describe(value)}")
    items = list(value)
    for item in items:
        if not isinstance(item, str):
            raise LabelLintError(f"{what} must hold rule codes or names (strings), not "
                                 f"{describe(item)}")
    return items


def _check_selectors(selectors: Iterable[str], rules: list[Rule], what: str) -> list[str]:
    selectors = [s.strip() for s in selector_list(selectors, what) if s.strip()]
    for s in selectors:
        if s.upper() == "ALL":
            continue
        if not any(r.matches(s) or r.matches(s.upper()) for r in rules):
            raise LabelLintError(f"unknown rule selector {s!r}: not a code, code prefix or name")
    return selectors


def rule_kind(r: Rule) -> str:
    """"loss" for the rules that judge a reported loss, "data" for the rest."""
    return "loss" if r.per == "loss" else "data"


def check_selectors(selectors: Iterable[str], what: str = "select") -> None:
    """Raise LabelLintError for a selector that names no rule of any kind."""
    _check_selectors(selectors, all_rules(), what)


def select_rules(
    select: Iterable[str] | None = None, ignore: Iterable[str] | None = None,
    *, kind: str = "data", allow_none: bool = False,
) -> list[Rule]:
    """Rules of `kind` matched by `select` (default: all) and by no `ignore` entry.

    A selector is a code (`LL103`), a code prefix (`LL1`), a name (`labels-on-padding`) or `ALL`.
    kind: "data" (what `check` runs) or "loss" (what `check_loss` runs); selectors naming only
    rules of the other kind select nothing here. An empty selection is an error unless
    `allow_none` (a per-path ignore may leave a path nothing to check).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    every = all_rules()
    rules = [r for r in every if rule_kind(r) == kind]
    chosen = _check_selectors(select if select is not None else ["ALL"], every, "select")
    dropped = _check_selectors([] if ignore is None else ignore, every, "ignore")
    if not chosen and not allow_none:
        raise LabelLintError("select is empty: it names no rule (leave it out to run them all)")

    def hit(r: Rule, selectors: list[str]) -> bool:
        return any(s.upper() == "ALL" or r.matches(s) or r.matches(s.upper()) for s in selectors)

    selected = [r for r in rules if hit(r, chosen) and not hit(r, dropped)]
    if not selected and not allow_none:
        other = [r.code for r in every if rule_kind(r) != kind and hit(r, chosen)]
        if other:
            judged, run = (("a training loop's loss, not data", "`labellint loss` or "
                            "labellint.check_loss") if kind == "data" else
                           ("data, not a loss", "`labellint check` or labellint.check"))
            raise LabelLintError(f"{', '.join(other)} judge {judged}: run {run}")
        raise LabelLintError("no rule is selected: the ignore list removes every selected rule")
    return selected


def resolve_options(
    rules: list[Rule], options: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, dict[str, Any]]:
    """Per-rule option values keyed by code, from a mapping keyed by code or name."""
    resolved = {r.code: dict(r.options) for r in rules}
    for key, values in options_mapping(options).items():
        r = get_rule(key)
        for opt, value in values.items():
            if opt not in r.options:
                known = ", ".join(r.options) or "none"
                raise LabelLintError(f"{r.code} has no option {describe(opt)} (options: {known})")
            checked = option_value(r, opt, value)  # checked even for a rule not run here
            if r.code in resolved:
                resolved[r.code][opt] = checked
    return resolved


def options_mapping(options: Any) -> Mapping[str, Mapping[str, Any]]:
    """`options` checked for shape: rule code or name -> option name -> value."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise LabelLintError("options must map rule codes or names to their options, e.g. "
                             f'{{"LL105": {{"min_tokens": 4}}}}, not {describe(options)}')
    for key, values in options.items():
        if not isinstance(key, str):
            raise LabelLintError("options must be keyed by rule codes or names, not "
                                 f"{describe(key)}")
        if not isinstance(values, Mapping):
            raise LabelLintError(f"options[{key!r}] must map option names to values, e.g. "
                                 f'{{"min_tokens": 4}}, not {describe(values)}')
    return options


def option_value(r: Rule, name: str, value: Any) -> Any:
    """`value` checked against the option's default: the same kind (a tuple may come as a
    list, of the same kind of items), finite, and not negative where the default is not."""
    default = r.options[name]
    if default is None:
        return value
    checked = _like(default, value)
    if checked is None:
        raise LabelLintError(f"{r.code} option {name} must be like its default {default!r}, "
                             f"not {describe(value)}")
    return checked


def _like(default: Any, value: Any) -> Any:
    """`value` as the kind of `default`, or None when it is not of that kind."""
    if isinstance(default, tuple):
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
            return None
        items = list(value)
        if default:
            items = [_like(default[0], v) for v in items]
            if any(v is None for v in items):
                return None
        return tuple(items)
    if isinstance(default, bool):
        return value if isinstance(value, bool) else None
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not math.isfinite(float(value) if abs(value) < 1e300 else math.inf):
            return None
        if default >= 0 > value:
            return None
        if isinstance(default, int):
            return int(value) if float(value).is_integer() and abs(value) < ID_LIMIT else None
        return float(value)
    return value if isinstance(value, type(default)) else None
