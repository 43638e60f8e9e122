"""Rule, the @rule decorator, and select/ignore resolution.

A rule is a small pure predicate over a Batch. It returns a token mask, a row mask or one bool
(as its `per` declares), or `skip(reason)` when it does not apply to this data. What a rule
needs (a labels column, an EOS id) is declared in `requires`, so the engine can report a skipped
rule with the reason instead of calling it.
"""

from __future__ import annotations

import inspect
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from .arguments import ID_LIMIT, describe
from .errors import LabelLintError

SEVERITIES = ("error", "warning")
SCOPES = ("token", "row", "batch", "loss")
# A `per="loss"` rule judges a training loop's loss (labellint.check_loss), never data.
KINDS = ("data", "loss")
CODE = re.compile(r"^LL\d{3}$")
NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")

# What a rule may require, and the reason given when the data lacks it.
REQUIREMENTS = {
    "labels": "no labels column",
    "attention_mask": "no attention_mask column",
    "position_ids": "no position_ids column",
    "padding": "padding is unknown: no attention_mask and no pad id",
    "pad_id": "the pad id is unknown (give a tokenizer, or pad_id / --pad-id)",
    "bos_id": "the BOS id is unknown (give a tokenizer that has one, or bos_id / --bos-id)",
    "eos_id": "the EOS id is unknown (give a tokenizer, or eos_id / --eos-id)",
    "vocab_size": "the vocabulary size is unknown (give a tokenizer or model, or vocab_size)",
    "max_length": "the truncation length is unknown (give max_length / --max-length)",
}
# Data without these is not the data the rule is for (rows that are not packed have no
# position_ids), so the text report does not list the skip as something to supply.
NOT_APPLICABLE = frozenset({"position_ids"})


@dataclass(frozen=True)
class Skip:
    """A rule's answer when it does not apply; the report lists it as skipped, never clean.

    `by_design`: the rule is not meant for this data (a convention it does not check), so the
    text report leaves it out; a skip for want of a fact is always shown, since a user can act.
    """

    reason: str
    by_design: bool = False


def skip(reason: str, *, by_design: bool = False) -> Skip:
    return Skip(reason, by_design)


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: str
    per: str
    message: str | Callable[[Mapping[str, Any]], str]
    fix: str
    func: Callable[..., Any]
    requires: tuple[str, ...]
    options: Mapping[str, Any]
    misaligned_rows: bool = False

    @property
    def summary(self) -> str:
        return (inspect.getdoc(self.func) or "").splitlines()[0]

    @property
    def page(self) -> str:
        """The rule page's file name in `rules/`."""
        return f"{self.code}-{self.name}.md"

    def matches(self, selector: str) -> bool:
        return selector == self.name or self.code.startswith(selector)


_REGISTRY: dict[str, Rule] = {}


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
    """Register a rule. Options are the predicate's keyword-only parameters with defaults.

    Rows whose columns differ in length are kept out of every rule's findings, unless the rule
    is about them (`misaligned_rows=True`).
    """
    if not CODE.match(code) or not NAME.match(name):
        raise ValueError(f"rule code {code!r} / name {name!r} do not follow LL000 / kebab-case")
    if severity not in SEVERITIES or per not in SCOPES:
        raise ValueError(f"{code}: severity {severity!r} or per {per!r} is not known")
    unknown = set(requires) - set(REQUIREMENTS)
    if unknown:
        raise ValueError(f"{code}: unknown requirements {sorted(unknown)}")

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        if code in _REGISTRY or any(r.name == name for r in _REGISTRY.values()):
            raise ValueError(f"rule {code} {name} is registered twice")
        params = inspect.signature(func).parameters.values()
        options = {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}
        _REGISTRY[code] = Rule(code, name, severity, per, message, fix, func,
                               tuple(requires), options, misaligned_rows)
        return func

    return register


def all_rules() -> list[Rule]:
    """Every registered rule, in code order."""
    from . import rules  # noqa: F401  (registers the built-in rules)

    return sorted(_REGISTRY.values(), key=lambda r: r.code)


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
