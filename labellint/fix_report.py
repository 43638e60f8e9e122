"""FixReport: per rule, what `fix` changed, held back or left firing on the corrected copy."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .decode import decode_windows
from .printable import WIDTH
from .registry import Rule
from .strips import chips, fold, legend
from .window import TokenWindow, capture, row_batch, tokens_of

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

    def zeroed(self) -> RuleFix:
        """This rule's fix with nothing counted yet (a worker's start)."""
        return replace(self, rows=0, tokens=0, dropped=0, held=0, left=0, drawn=0)

    def add(self, other: RuleFix) -> None:
        """Count in what a worker's part counted."""
        self.rows += other.rows
        self.tokens += other.tokens
        self.dropped += other.dropped
        self.held += other.held
        self.left += other.left
        self.reason = self.reason or other.reason

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
    diffs: list[DiffRow] = field(default_factory=list)
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
        lines += render_diffs(self.diffs)
        if self.remaining:
            lines.append("not fixed, still found on the copy:")
            lines += [f"  {c} {n} ({k:,} rows): {w}" for c, n, k, w in self.remaining]
            lines.append(f"{len(self.remaining)} rules still fire on {self.out}")
        else:
            lines.append(f"{self.out} is clean for every rule checked")
        return "\n".join(lines)


@dataclass(frozen=True)
class DiffRow:
    """One changed row for --diff: its token strip before and after the rule's fix (after is
    None for a dropped row), the positions the fix changed marked."""

    code: str
    row: int
    positions: tuple[int, ...]
    before: TokenWindow
    after: TokenWindow | None
    note: str = ""

    def decoded(self, tok: Any) -> DiffRow:
        """The strips with the tokenizer's text in place of ids."""
        windows = decode_windows(tok, [w for w in (self.before, self.after) if w is not None])
        return replace(self, before=windows[0],
                       after=windows[1] if self.after is not None else None)

    def shifted(self, rows: int) -> DiffRow:
        """Renumbered: a part's rows as rows of the whole source."""
        return replace(self, row=self.row + rows, before=replace(self.before,
                                                                 row=self.before.row + rows),
                       after=None if self.after is None else
                       replace(self.after, row=self.after.row + rows))

    def render(self, width: int = WIDTH) -> str:
        at = f" (positions {', '.join(map(str, self.positions[:8]))})" if self.positions else ""
        lines = [f"{self.code} row {self.row}{at}" + (f": {self.note}" if self.note else ":")]
        for label, w in (("before", self.before), ("after", self.after)):
            if w is None:
                lines.append(f"  {label}: (row dropped)")
                continue
            head = f"  {label + ':':<8}"
            lines.append(fold(chips(w, color=False), width=width, first=head,
                              rest=" " * len(head), color=False).plain.rstrip("\n"))
        return "\n".join(lines)


def render_diffs(diffs: list[DiffRow], width: int = WIDTH) -> list[str]:
    """The --diff strips, under the legend of their marks."""
    if not diffs:
        return []
    windows = [w for d in diffs for w in (d.before, d.after) if w is not None]
    return [legend(windows, color=False).plain.rstrip("\n")] + [d.render(width) for d in diffs]


def strips_before(b: Any, found: np.ndarray, read_rows: np.ndarray, n: int,
                   per_row: bool) -> dict[int, TokenWindow]:
    """The first `n` rows the rule hit, as strips around their hits, keyed by row as read."""
    if per_row:
        rows, hit = np.flatnonzero(found)[:n], {}
    else:
        index = np.flatnonzero(found)
        of = b.rows_of(index)
        rows = np.unique(of)[:n]
        hit = {int(r): index[of == r] - b.offsets[r] for r in rows.tolist()}
    return {int(read_rows[r]): capture(b, r, hit.get(r, np.zeros(0, np.int64)).tolist())
            for r in rows.tolist()}


def diff_row(code: str, row: int, row_start: int, at: np.ndarray, before: TokenWindow,
              after: Any, w: Any, deleted: bool, columns: tuple[str, ...]) -> DiffRow:
    """One changed row's strips: the same stretch of the row before and after, the changed
    positions marked (on the after strip only where no token was removed)."""
    marked = tuple(int(p) for p in at)
    before = replace(before, row=row + row_start, hits=marked)
    note = f"{', '.join(columns)} dropped" if columns else ""
    k = int(np.searchsorted(w.rows, row))
    if k >= w.rows.size or w.rows[k] != row:
        return DiffRow(code, row + row_start, marked, before, None, "dropped")
    one = row_batch(after, k)
    index = np.asarray([i for i in before.index if i < one.n_tokens], dtype=np.int64)
    strip = replace(tokens_of(one, index, hits=() if deleted else marked), row=row + row_start)
    return DiffRow(code, row + row_start, marked, before, strip, note)
