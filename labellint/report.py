"""What a check found, as data: Finding, SourceResult, the Outcome they add up to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.text import Text

from .errors import LabelLintError
from .facts import Facts

JSON_VERSION = 1
FAIL_ON = ("warning", "error")


@dataclass(frozen=True)
class Finding:
    """One rule's result on one source: counts, the first few rows, and the fix."""

    code: str
    name: str
    severity: str
    message: str
    source: str
    rows: tuple[int, ...]
    positions: tuple[tuple[int, ...], ...]
    count_rows: int
    count_tokens: int
    total_rows: int
    total_tokens: int
    fix: str
    doc: str
    # The tokens around each example row (window.TokenWindow), for the text report's strips;
    # not part of the JSON form.
    windows: tuple = field(default=(), compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "severity": self.severity,
            "message": self.message,
            "source": self.source,
            "rows": list(self.rows),
            "positions": [list(p) for p in self.positions],
            "count_rows": self.count_rows,
            "count_tokens": self.count_tokens,
            "total_rows": self.total_rows,
            "total_tokens": self.total_tokens,
            "fix": self.fix,
            "doc": self.doc,
        }


@dataclass(frozen=True)
class SourceResult:
    """What checking one source found, with the facts it was checked under."""

    source: str
    facts: Facts
    findings: list[Finding]
    skipped: dict[str, str]
    rows: int
    tokens: int
    batches: int | None = None
    skipped_by_design: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # how the source was read, when a reader should know

    @property
    def unjudged(self) -> dict[str, str]:
        """Rules skipped for want of a fact, with why: what a clean report did not judge
        (skips by design, such as position_ids rules on unpacked rows, are not listed)."""
        return {c: why for c, why in self.skipped.items() if c not in self.skipped_by_design}


class Outcome:
    """What a report's findings add up to; a report has `findings` and `render()`."""

    findings: list[Finding]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when no finding has error severity."""
        return not self.errors

    def failed(self, fail_on: str = "warning") -> bool:
        """Whether a finding reaches `fail_on` severity ("warning": any finding)."""
        if fail_on not in FAIL_ON:
            raise LabelLintError(f"fail_on must be one of {', '.join(FAIL_ON)}, not {fail_on!r}")
        return bool(self.errors if fail_on == "error" else self.findings)

    def raise_for_errors(self, fail_on: str = "error") -> None:
        """Raise LabelLintError, carrying the text report, if a finding reaches `fail_on`."""
        if self.failed(fail_on):
            raise LabelLintError(self.render().plain)

    def render(self) -> Text:
        raise NotImplementedError
