"""FixReport: per rule, what `fix` changed, held back or left firing on the corrected copy."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .registry import Rule

# Why a rule has no fix: what it finds cannot be repaired in the data without guessing.
NEVER = {
    "LL001": "columns of different lengths: which tokens belong together cannot be known",
    "LL102": "no supervised target in a whole batch or source: the masking upstream is wrong",
    "LL405": "an input id past the vocabulary: which token was meant cannot be known",
    "LL407": "special-token text split into ordinary tokens: re-tokenize with the right "
             "tokenizer",
    "LL408": "the tokenizer and the model disagree: the fix is in the model or tokenizer, not "
             "the data",
}
DEFAULT_NEVER = "no fix is right for every row: the cause is upstream (`labellint rule {code}`)"
LOSS_NEVER = "a loss rule: it judges training code, not data"


def never_reason(code: str) -> str:
    if code.startswith("LL9"):
        return LOSS_NEVER
    return NEVER.get(code, DEFAULT_NEVER.format(code=code))


@dataclass
class RuleFix:
    """One rule's fix over the whole input: rows and tokens changed, rows dropped, rows held
    back (an unsafe fix not asked for), hits it could not repair, and why."""

    code: str
    name: str
    safe: bool
    does: str
    applied: bool
    rows: int = 0
    tokens: int = 0
    dropped: int = 0
    held: int = 0
    left: int = 0
    reason: str = ""
    drawn: int = 0  # rows drawn for --diff

    @classmethod
    def of(cls, r: Rule, unsafe_fixes: bool) -> RuleFix:
        assert r.repair is not None
        return cls(r.code, r.name, r.repair.safe, r.repair.does, r.repair.safe or unsafe_fixes)

    def why(self) -> str:
        """Why this rule still fires on the fixed copy."""
        if not self.applied:
            more = f"{self.held:,} rows more" if self.held else "fixed"
            return f"an unsafe fix: {more} with --unsafe-fixes (it {self.does})"
        if self.reason:
            return self.reason
        if self.left:
            return f"{self.left:,} hits its fix cannot repair (it {self.does})"
        return "found only once the other fixes ran: run fix again on the copy"

    def to_dict(self) -> dict:
        return {"code": self.code, "name": self.name, "safe": self.safe,
                "applied": self.applied, "rows_changed": self.rows,
                "tokens_changed": self.tokens, "rows_dropped": self.dropped,
                "held_back_rows": self.held, "left": self.left, "reason": self.reason,
                "does": self.does}


@dataclass
class FixReport:
    """The result of `fix`: per rule what changed, and the findings left on OUT (each with why
    it was not fixed). exit_code: 0 when OUT is clean, 1 when findings remain."""

    source: str
    out: Path
    journal: Path
    rules: list[RuleFix]
    remaining: list[tuple[str, str, int, str]]  # code, name, rows, why it is not fixed
    rows: int
    diffs: list[str] = field(default_factory=list)
    recheck: Any = None  # the Report of checking OUT

    @property
    def exit_code(self) -> int:
        return 1 if self.remaining else 0

    @property
    def changed(self) -> dict[str, RuleFix]:
        return {r.code: r for r in self.rules if r.rows}

    def to_dict(self) -> dict:
        return {"input": self.source, "out": str(self.out), "journal": str(self.journal),
                "rows": self.rows, "rules": [r.to_dict() for r in self.rules],
                "remaining": [{"code": c, "name": n, "rows": k, "why": w}
                              for c, n, k, w in self.remaining]}

    def render(self) -> str:
        lines = [f"fixed copy of {self.source} written to {self.out} ({self.rows:,} rows "
                 f"read); journal: {self.journal}"]
        acted = [r for r in self.rules if r.rows or r.held or r.left or r.reason]
        if acted:
            lines.append(f"{'code':<6} {'name':<28} {'fix':<7} {'rows':>8} {'tokens':>8} "
                         f"{'dropped':>8}")
        for r in acted:
            kind = "safe" if r.safe else "unsafe"
            line = (f"{r.code:<6} {r.name:<28} {kind:<7} {r.rows:>8,} {r.tokens:>8,} "
                    f"{r.dropped:>8,}")
            if r.held:
                line += f"  {r.held:,} more with --unsafe-fixes"
            lines.append(line)
        lines += self.diffs
        if self.remaining:
            lines.append("not fixed, still found on the copy:")
            lines += [f"  {c} {n} ({k:,} rows): {w}" for c, n, k, w in self.remaining]
            lines.append(f"{len(self.remaining)} rules still fire on {self.out}")
        else:
            lines.append(f"{self.out} is clean for every rule checked")
        return "\n".join(lines)


def _window(values: np.ndarray, lo: int, hi: int) -> str:
    shown = " ".join(str(v) for v in values[lo:hi].tolist())
    return ("… " if lo > 0 else "") + shown + (" …" if hi < values.size else "")


def draw_diff(r: Rule, row: int, positions: np.ndarray, read_row: int, before: Any,
              w: Any) -> str:
    """The row's token columns before and after the rule's fix, around what it changed."""
    rows_before, columns_before = before
    at_before = int(np.searchsorted(rows_before, read_row))
    kept = np.flatnonzero(w.rows == read_row)
    head = f"{r.code} row {row}" + (f" (positions {', '.join(map(str, positions[:8]))})"
                                   if positions.size else "")
    if not kept.size:
        return f"{head}: dropped"
    at_after = int(kept[0])
    first = int(positions[0]) if positions.size else 0
    lo, hi = max(first - 4, 0), first + 12
    lines = [head + ":"]
    for name, (values, offsets) in columns_before.items():
        old = values[offsets[at_before]:offsets[at_before + 1]]
        if name not in w.columns:
            lines.append(f"  {name:<15} {_window(old, lo, hi)}  →  (column dropped)")
            continue
        new_values, new_offsets = w.columns[name]
        new = new_values[new_offsets[at_after]:new_offsets[at_after + 1]]
        if name != "input_ids" and np.array_equal(old, new):
            continue
        lines.append(f"  {name:<15} {_window(old, lo, hi)}")
        if not np.array_equal(old, new):
            lines.append(f"  {'':<13}→  {_window(new, lo, hi)}")
    return "\n".join(lines)
