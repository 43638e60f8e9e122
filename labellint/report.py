"""Finding and Report, and their text, JSON and GitHub renderings."""

from __future__ import annotations

import io
import json
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable

from rich.text import Text

from .errors import LabelLintError
from .facts import Facts

JSON_VERSION = 1
FAIL_ON = ("warning", "error")
WIDTH = 100   # where token strips fold when the text is not for a terminal
STRIPS = 3    # example rows drawn as token strips under each finding


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
    # The tokens around each example row (view.TokenWindow), for the text report's strips;
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


class Printable:
    """`print(x)` and rich printing of something drawn by `render(color=, width=)`: coloured on
    a terminal (unless NO_COLOR), plain text otherwise."""

    def render(self, *, color: bool = False, width: int = WIDTH) -> Text:
        raise NotImplementedError

    def __str__(self) -> str:
        if not (sys.stdout.isatty() and "NO_COLOR" not in os.environ):
            return self.render().plain
        return self.to_ansi()

    def to_ansi(self, width: int | None = None) -> str:
        """The coloured drawing as text with ANSI codes, `width` columns wide (default: the
        terminal's)."""
        from rich.console import Console

        buffer = io.StringIO()
        console = Console(file=buffer, width=width, force_terminal=True, soft_wrap=True,
                          highlight=False)
        console.print(self.render(color=True, width=console.width), end="")
        return buffer.getvalue()

    def __rich_console__(self, console: Any, options: Any) -> Iterable[Text]:
        color = console.color_system is not None and not console.no_color
        yield self.render(color=color, width=options.max_width if console.is_terminal else WIDTH)


@dataclass(frozen=True)
class Report(Outcome, Printable):
    """Every finding of one check, over one or more sources."""

    sources: list[SourceResult] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        return [f for s in self.sources for f in s.findings]

    @property
    def facts(self) -> dict[str, Facts]:
        return {s.source: s.facts for s in self.sources}

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": JSON_VERSION,
            "findings": [f.to_dict() for f in self.findings],
            "facts": {s.source: s.facts.describe() for s in self.sources},
            "summary": {
                "errors": len(self.errors),
                "warnings": len(self.warnings),
                "rows": sum(s.rows for s in self.sources),
                "tokens": sum(s.tokens for s in self.sources),
                "sources": {
                    s.source: {"rows": s.rows, "tokens": s.tokens, "batches": s.batches,
                               "skipped": dict(s.skipped), "notes": list(s.notes)}
                    for s in self.sources
                },
            },
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def render(self, *, details: bool = True, color: bool = False,
               width: int = WIDTH) -> Text:
        """The text report as rich Text.

        color: token strips in colour (for a terminal); otherwise their states are marked with
        brackets, so that the plain text still tells them apart. width: where strips fold.
        """
        return render_text(self, details=details, color=color, width=width)


def _count(n: int) -> str:
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _ranges(positions: Iterable[int]) -> str:
    """1,2,3,7 -> '1-3, 7'."""
    runs: list[list[int]] = []
    for p in positions:
        if runs and p == runs[-1][1] + 1:
            runs[-1][1] = p
        else:
            runs.append([p, p])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


SEVERITY_STYLE = {"error": "bold red", "warning": "yellow"}


def plural(text: str) -> str:
    """'1 rows' -> '1 row': messages are written for counts, and a count can be one."""
    return re.sub(r"(?<![\d.,])1 (row|token|label|batche|input id|supervised label|target)s\b",
                  lambda m: "1 " + ("batch" if m.group(1) == "batche" else m.group(1)), text)


def _n(count: int, word: str) -> str:
    return f"{count:,} {word}{'s' * (count != 1)}"


def _example(row: int, positions: tuple[int, ...]) -> str:
    return f"{row} (positions {_ranges(positions)})" if positions else str(row)


def _table(report: Report, color: bool) -> Text:
    """One line per finding: code, name, severity, rows affected and their share."""
    several = len(report.sources) > 1
    head = (["source"] if several else []) + ["code", "name", "severity", "rows", "% rows"]
    body = [([f.source] if several else []) + [
        f.code, f.name, f.severity, f"{f.count_rows:,}",
        f"{100 * f.count_rows / max(f.total_rows, 1):.1f}%"] for f in report.findings]
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    numeric = {len(head) - 2, len(head) - 1}

    def cell(i: int, value: str) -> str:
        return value.rjust(widths[i]) if i in numeric else value.ljust(widths[i])

    text = Text()
    text.append("  ".join(cell(i, h) for i, h in enumerate(head)).rstrip() + "\n",
                style="bold" if color else "")
    severity = len(head) - 3
    for row, f in zip(body, report.findings):
        for i, value in enumerate(row):
            text.append("  " if i else "")
            text.append(cell(i, value), style=SEVERITY_STYLE[f.severity] if i == severity else "")
        text.append("\n")
    return text


def _strips(f: Finding, color: bool, width: int) -> Text:
    from . import view

    text = Text()
    for w in f.windows[:STRIPS]:
        label = f"    row {w.row}: "
        text.append_text(view.fold(view.chips(w, color=color), width=width, first=label,
                                   rest=" " * len(label), color=color))
    return text


def render_text(report: Report, *, details: bool = True, color: bool = False,
                width: int = WIDTH) -> Text:
    text = Text()
    if report.findings:
        text.append_text(_table(report, color))
        windows = [w for f in report.findings for w in f.windows[:STRIPS]]
        if windows:
            from .view import legend

            text.append_text(legend(windows, color=color))
        text.append("\n")
    for f in report.findings:
        where = f"{f.source}[{f.rows[0]}]" if f.rows else f.source
        text.append(f"{where}: ", style="bold")
        text.append(f"{f.code} ({f.severity})", style=SEVERITY_STYLE[f.severity])
        text.append(f" {f.message} ")
        text.append(f"[{f.name}]", style="dim")
        text.append("\n")
        if f.rows:
            shown = ", ".join(_example(r, p) for r, p in zip(f.rows, f.positions))
            more = f.count_rows - len(f.rows)
            text.append(f"  rows: {shown}" + (f" (+{more:,} more)" if more else "") + "\n")
            text.append_text(_strips(f, color, width))
        text.append("  help: ", style="cyan")
        text.append(f.fix + "\n")
    if details:
        for s in report.sources:
            known = [f"{k} {v['value']} ({v['from']})" for k, v in s.facts.describe().items()
                     if v["value"] not in (None, [])]
            text.append(f"facts for {s.source}: " + ", ".join(known) + "\n", style="dim")
            for note in s.notes:
                text.append(f"note for {s.source}: {note}\n", style="dim")
            if s.unjudged:
                skipped = "; ".join(f"{c}: {why}" for c, why in s.unjudged.items())
                text.append(f"skipped for {s.source}: {skipped}\n", style="dim")
    rows = sum(s.rows for s in report.sources)
    tokens = sum(s.tokens for s in report.sources)
    scope = f"{_n(rows, 'row')} ({_count(tokens)} tokens)"
    if report.findings:
        n_err, n_warn = len(report.errors), len(report.warnings)
        first = (report.errors or report.findings)[0].code
        text.append(
            f"Found {_n(len(report.findings), 'problem')} ({_n(n_err, 'error')}, "
            f"{_n(n_warn, 'warning')}) in {scope}. `labellint rule {first}` explains.",
            style="bold",
        )
    else:
        text.append(f"All checks passed on {scope}.", style="bold green")
    return text


def render_github(report: Report) -> str:
    """GitHub Actions workflow commands, one annotation per finding."""
    lines = []
    for f in report.findings:
        level = "error" if f.severity == "error" else "warning"
        rows = ", ".join(map(str, f.rows))
        more = f" (+{f.count_rows - len(f.rows):,} more)" if f.count_rows > len(f.rows) else ""
        body = f"{f.message}. Rows: {rows}{more}. Fix: {f.fix}"
        body = body.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        where = f"file={f.source}," if os.path.exists(f.source) else ""
        lines.append(f"::{level} {where}title={f.code} {f.name}::{body}")
    return "\n".join(lines)
