"""GitHub Actions workflow commands: one annotation per finding of a report."""

from __future__ import annotations

import os

from .report import Outcome


def render_github(report: Outcome) -> str:
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
