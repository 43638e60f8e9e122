"""`show --format html`: a row as a self-contained HTML page (inline CSS, no external assets).

Each token is a chip whose colour is its state and whose hover title gives its index, id,
label and position id; its data-* attributes carry the same for scripts and tests.
"""

from __future__ import annotations

from html import escape
from typing import Mapping, Protocol

from .facts import Facts
from .formats import ranges
from .report import Finding
from .strips import BOUNDARY, label_text, token_text
from .window import STATES, TRAINED, TokenWindow

CSS = """
.ll { font-family: ui-sans-serif, system-ui, sans-serif; color: #1b1b1b; max-width: 100%; }
.ll h1 { font-size: 1.15em; margin: 0 0 .3em; }
.ll .facts, .ll .note { color: #666; font-size: .85em; margin: .2em 0; }
.ll .legend { margin: .6em 0; font-size: .85em; }
.ll .row { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 13px; line-height: 2.1; border: 1px solid #ddd; border-radius: 6px;
  padding: .5em .7em; background: #fff; overflow-wrap: anywhere; }
.ll .t { display: inline-block; padding: 0 3px; margin: 0 1px; border-radius: 3px;
  line-height: 1.5; white-space: pre; border: 1px solid transparent; }
.ll .trained { background: #b9efc1; color: #0b3d14; }
.ll .masked { background: #f1f1f1; color: #555; }
.ll .padding { background: #fafafa; color: #aaa; border: 1px dashed #ccc; }
.ll .attention-off { background: #ffe08a; color: #4a3800; }
.ll .padding.target, .ll .attention-off.target { background: #d63b3b; color: #fff; }
.ll .special { font-weight: 700; border-color: #8a63d2; }
.ll .hit { box-shadow: 0 0 0 2px #e01e1e; }
.ll .lbl { color: #c4161c; font-weight: 700; }
.ll .odd { color: #c4161c; font-size: .8em; }
.ll .boundary { color: #8a63d2; font-weight: 700; margin: 0 4px; }
.ll .idx { color: #aaa; font-size: .75em; margin-right: 4px; user-select: none; }
.ll table.findings { border-collapse: collapse; margin-top: .8em; font-size: .9em; }
.ll table.findings td, .ll table.findings th { border-top: 1px solid #e5e5e5;
  padding: .3em .6em; text-align: left; vertical-align: top; }
.ll .error { color: #c4161c; font-weight: 700; }
.ll .warning { color: #a86200; font-weight: 700; }
.ll .fix { color: #333; }
"""


class ShownRow(Protocol):
    """What a page draws of one row (show.RowView is one): html.py needs no more of it."""

    @property
    def source(self) -> str: ...
    @property
    def row(self) -> int: ...
    @property
    def tokens(self) -> TokenWindow: ...
    @property
    def facts(self) -> Facts: ...
    @property
    def findings(self) -> list[Finding]: ...
    @property
    def skipped(self) -> Mapping[str, str]: ...
    @property
    def not_judged(self) -> tuple[str, ...]: ...

    def summary(self) -> str: ...

    def hits(self) -> dict[int, list[str]]: ...


def _chip(w: TokenWindow, k: int, hits: dict[int, list[str]]) -> str:
    i = w.index[k]
    state = w.states[k]
    classes = ["t", state]
    if w.target[k]:
        classes.append("target")
    if w.special[k] is not None:
        classes.append("special")
    if i in hits:
        classes.append("hit")
    label = None if w.labels is None else w.labels[k]
    pos = None if w.position_ids is None else w.position_ids[k]
    title = [f"index {i}", f"id {w.ids[k]}"]
    if label is not None:
        title.append(f"label {label}" + (f" ({w.label_texts[k]!r})" if w.label_shown[k]
                                         and w.label_texts and w.label_texts[k] else ""))
    if pos is not None:
        title.append(f"position {pos}")
    title.append(state + (", trained" if w.target[k] and state != TRAINED else ""))
    if i in hits:
        title.append("flagged: " + ", ".join(hits[i]))
    attrs = {"class": " ".join(classes), "title": " · ".join(title), "data-index": i,
             "data-id": w.ids[k], "data-state": state, "data-target": int(w.target[k])}
    if label is not None:
        attrs["data-label"] = label
    if pos is not None:
        attrs["data-position"] = pos
    body = escape(token_text(w, k))
    shown = label_text(w, k)
    if shown is not None:
        body += f'<span class="lbl">→{escape(shown)}</span>'
    if w.position_odd is not None and w.position_odd[k]:
        body += f'<span class="odd">@{pos}</span>'
    attr = " ".join(f'{name}="{escape(str(value))}"' for name, value in attrs.items())
    return f"<span {attr}>{body}</span>"


def _tokens(v: ShownRow) -> str:
    w = v.tokens
    hits = v.hits()
    out = []
    for k, i in enumerate(w.index):  # one row, shown whole: a loop per token is bounded here
        if w.boundary[k]:
            out.append('<br><span class="boundary" title="a packed sequence starts here '
                       f'(position_ids back to 0)">{BOUNDARY}</span>')
        if k == 0 or w.boundary[k] or (w.texts and w.texts[k - 1] and
                                       w.texts[k - 1].endswith("\n")):
            out.append(f'<span class="idx">{i}</span>')
        out.append(_chip(w, k, hits))
        if w.texts and w.texts[k] and w.texts[k].endswith("\n"):
            out.append("<br>")
    return "".join(out)


def _legend() -> str:
    samples = "".join(f'<span class="t {s}{" target" if s == TRAINED else ""}">{s}</span>'
                      for s in STATES)
    return (f'<div class="legend">{samples}<span class="t padding target">label on padding'
            '</span><span class="t masked special">special</span> '
            f'<span class="boundary">{BOUNDARY}</span>packed sequence starts · '
            '<span class="lbl">→y</span> label y where it is not the token · '
            '<span class="t masked hit">flagged</span> by a finding · hover a token for its '
            'index, id, label and position</div>')


def _findings(v: ShownRow) -> str:
    if not v.findings:
        return f'<p class="note">No findings on row {v.row}.</p>'
    rows = []
    for f in v.findings:
        where = ranges(f.positions[0]) if f.positions and f.positions[0] else "the row"
        rows.append(
            f'<tr><td class="{f.severity}">{escape(f.code)}</td><td>{escape(f.severity)}</td>'
            f"<td>{escape(f.message)} <span class=\"note\">[{escape(f.name)}]</span><br>"
            f'<span class="fix">help: {escape(f.fix)}</span></td><td>{escape(where)}</td></tr>')
    return ('<table class="findings"><tr><th>code</th><th>severity</th><th>finding</th>'
            f'<th>positions</th></tr>{"".join(rows)}</table>')


def fragment(v: ShownRow) -> str:
    """The row's HTML without the page around it (for Jupyter), with its own style."""
    known = [f"{k} {val['value']} ({val['from']})" for k, val in v.facts.describe().items()
             if val["value"] not in (None, [])]
    notes = []
    if v.skipped:
        notes.append("skipped: " + "; ".join(f"{c}: {why}" for c, why in v.skipped.items()))
    if v.not_judged:
        notes.append(f"not judged on one row: {', '.join(v.not_judged)} (they judge a whole "
                     "batch or source: `labellint check` runs them)")
    return (f'<style>{CSS}</style><div class="ll"><h1>{escape(v.summary())}</h1>'
            f'<p class="facts">facts: {escape(", ".join(known))}</p>{_legend()}'
            f'<div class="row">{_tokens(v)}</div>{_findings(v)}'
            + "".join(f'<p class="note">{escape(n)}</p>' for n in notes) + "</div>")


def page(v: ShownRow) -> str:
    """A whole HTML document."""
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(v.source)} row {v.row} · labellint</title></head>"
            f"<body>{fragment(v)}</body></html>\n")
