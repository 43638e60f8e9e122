"""Report: every finding of one check, drawn as text with token strips under its findings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text

from .facts import Facts
from .formats import counted, ranges, short_count
from .printable import SEVERITY_STYLE, WIDTH, Printable
from .report import JSON_VERSION, Finding, Outcome, SourceResult
from .strips import chips, fold, legend

STRIPS = 3    # example rows drawn as token strips under each finding


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


def _example(row: int, positions: tuple[int, ...]) -> str:
    return f"{row} (positions {ranges(positions)})" if positions else str(row)


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
    text = Text()
    for w in f.windows[:STRIPS]:
        label = f"    row {w.row}: "
        text.append_text(fold(chips(w, color=color), width=width, first=label,
                              rest=" " * len(label), color=color))
    return text


def render_text(report: Report, *, details: bool = True, color: bool = False,
                width: int = WIDTH) -> Text:
    """The findings' table, each finding with its strips, the facts, then the verdict."""
    text = Text()
    if report.findings:
        text.append_text(_table(report, color))
        windows = [w for f in report.findings for w in f.windows[:STRIPS]]
        if windows:
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
    scope = f"{counted(rows, 'row')} ({short_count(tokens)} tokens)"
    if report.findings:
        n_err, n_warn = len(report.errors), len(report.warnings)
        first = (report.errors or report.findings)[0].code
        text.append(
            f"Found {counted(len(report.findings), 'problem')} ({counted(n_err, 'error')}, "
            f"{counted(n_warn, 'warning')}) in {scope}. `labellint rule {first}` explains.",
            style="bold",
        )
    else:
        text.append(f"All checks passed on {scope}.", style="bold green")
    return text
