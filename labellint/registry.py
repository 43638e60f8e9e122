"""What a rule is: the Rule value, the @rule decorator that makes one, the Skip answer.

A rule is a small pure predicate over a Batch. It returns a token mask, a row mask or one bool
(as its `per` declares), or `skip(reason)` when it does not apply to this data. What a rule
needs (a labels column, an EOS id) is declared in `requires`, so the engine can report a skipped
rule with the reason instead of calling it.

This module imports no rule. `@rule` only attaches the Rule to its predicate (`func.rule`);
which rules exist is labellint.catalog's business: the built-in modules it lists, and the rules
a user adds with `labellint.rule` (catalog.rule).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping


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
class Edit:
    """What a rule's repair changes in one Batch, in its flat token coordinates.

    set: column -> (flat indices, new values); delete: flat indices of tokens removed from
    every token column; drop_rows: row indices removed; drop_columns: columns removed from the
    whole source (rows: the rows that counts as changing); left: hits the repair could not fix
    (counted, said in the summary).
    """

    set: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    delete: Any = None
    drop_rows: Any = None
    drop_columns: tuple[str, ...] = ()
    left: int = 0
    rows: Any = None  # the row indices a column drop counts as changed (its rule's hits)


@dataclass(frozen=True)
class Repair:
    """A rule's fix: `func(batch, hit, **options)` returns an Edit for the hits the rule's
    predicate found (a token or row mask); `safe` fixes run by default, unsafe ones only with
    --unsafe-fixes; `does` says what it changes, for the summary and the rule page."""

    func: Callable[..., Edit]
    safe: bool
    does: str


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
    repair: Repair | None = None  # how `labellint fix` corrects what the rule finds

    @property
    def summary(self) -> str:
        return (inspect.getdoc(self.func) or "").splitlines()[0]

    @property
    def page(self) -> str:
        """The rule page's file name in `rules/`."""
        return f"{self.code}-{self.name}.md"

    def matches(self, selector: str) -> bool:
        return selector == self.name or self.code.startswith(selector)


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
    """Make a Rule of the predicate and attach it as `func.rule`; nothing is registered.

    Options are the predicate's keyword-only parameters with defaults. Rows whose columns differ
    in length are kept out of every rule's findings, unless the rule is about them
    (`misaligned_rows=True`).
    """
    if not CODE.match(code) or not NAME.match(name):
        raise ValueError(f"rule code {code!r} / name {name!r} do not follow LL000 / kebab-case")
    if severity not in SEVERITIES or per not in SCOPES:
        raise ValueError(f"{code}: severity {severity!r} or per {per!r} is not known")
    unknown = set(requires) - set(REQUIREMENTS)
    if unknown:
        raise ValueError(f"{code}: unknown requirements {sorted(unknown)}")

    def make(func: Callable[..., Any]) -> Callable[..., Any]:
        params = inspect.signature(func).parameters.values()
        options = {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}
        func.rule = Rule(code, name, severity, per, message, fix, func,  # type: ignore[attr-defined]
                         tuple(requires), options, misaligned_rows)
        return func

    return make


def rule_of(obj: Any) -> Rule | None:
    """The Rule `@rule` attached to `obj`, or None when `obj` is not a rule's predicate."""
    found = getattr(obj, "rule", None)
    return found if isinstance(found, Rule) and found.func is obj else None


def repair(predicate: Callable[..., Any], *, safe: bool,
           does: str) -> Callable[[Callable[..., Edit]], Callable[..., Edit]]:
    """Declare the fix of the rule `predicate` carries, beside it in the rule's module.

    The Rule attached to the predicate is replaced by one with the Repair; nothing else changes.
    """
    found = rule_of(predicate)
    if found is None:
        raise ValueError(f"{predicate!r} is not a rule's predicate")

    def attach(func: Callable[..., Edit]) -> Callable[..., Edit]:
        predicate.rule = replace(found, repair=Repair(func, safe, does))  # type: ignore[attr-defined]
        return func

    return attach
