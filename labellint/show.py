"""`show`: one training row the way a person wants to see it, with that row's findings.

Which findings concern the row: the rules run on that row alone, under the facts of the whole
source (read from the tokenizer, or inferred from the same sample of rows `check` infers
from). Token and row rules judge a row by its own tokens and the facts only, so on one row they
find exactly what `check` finds on it, and no finding is lost to `check`'s cap of max_examples
rows. Facts inferred from the one row could differ (a pad id or max_length cannot be told from
one row), which is why they are not. Whole-batch rules (fully-masked-batch) judge a batch or a
dataset, not a row: `show` leaves them to `check` and says so.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping

import numpy as np
from rich.text import Text

from . import arguments, engine, view
from .batch import Batch, slice_ragged
from .errors import LabelLintError
from .facts import Facts, infer_facts
from .catalog import resolve_options, select_rules
from .report import SEVERITY_STYLE, Finding, Printable, _ranges
from .sources import open_sources
from .hf_facts import known_facts, load_tokenizer

WIDTH = 100  # where lines fold when the text is not for a terminal


@dataclass(frozen=True)
class RowView(Printable):
    """One row: its tokens and their states, the facts it was read under, its findings."""

    source: str
    row: int
    tokens: view.TokenWindow
    facts: Facts
    findings: list[Finding]
    skipped: Mapping[str, str]
    not_judged: tuple[str, ...]  # whole-batch rules: `check` judges them

    @property
    def sequences(self) -> int:
        """Packed sequences in the row (1 when it is not packed)."""
        return 1 + sum(self.tokens.boundary)

    def hits(self) -> dict[int, list[str]]:
        """Row position -> codes of the findings that flag it."""
        out: dict[int, list[str]] = {}
        for f in self.findings:
            for p in (f.positions[0] if f.positions else ()):
                out.setdefault(p, []).append(f.code)
        return out

    def summary(self) -> str:
        c = self.tokens.counts()
        parts = [f"{c[view.TRAINED]:,} trained", f"{c[view.MASKED]:,} masked"]
        parts += [f"{c[s]:,} {s}" for s in (view.PADDING, view.HIDDEN) if c[s]]
        off = c["target"] - c[view.TRAINED]
        if off:
            parts.append(f"{off:,} of them with a label")
        seq = f"; {self.sequences} packed sequences" if self.sequences > 1 else ""
        n = len(self.tokens)
        return (f"{self.source} row {self.row}: {n:,} token{'s' * (n != 1)} "
                f"({', '.join(parts)}){seq}")

    def render(self, *, color: bool = False, width: int = WIDTH) -> Text:
        """The row as text: coloured chips on a terminal, bracketed states when plain."""
        t = self.tokens
        text = Text()
        text.append(self.summary() + "\n", style="bold" if color else "")
        known = [f"{k} {v['value']} ({v['from']})" for k, v in self.facts.describe().items()
                 if v["value"] not in (None, [])]
        text.append("facts: " + ", ".join(known) + "\n", style="dim" if color else "")
        text.append_text(view.legend([t], color=color))
        digits = len(str(max(t.length - 1, 0)))
        if t.position_ids is not None:
            pids = dict(zip(t.index, t.position_ids))
            pwidth = max(len(str(p)) for p in t.position_ids) if t.position_ids else 1
            text.append(f"{'':>{digits}}  lines start with the token index and its position "
                        "id (p)\n", style="dim" if color else "")

            def prefix(i: int) -> str:
                return f"{i:>{digits}} p{pids[i]:<{pwidth}} │ "
        else:
            def prefix(i: int) -> str:
                return f"{i:>{digits}} │ "
        text.append_text(view.fold(view.chips(t, color=color, newlines=True), width=width,
                                   rest=prefix, color=color))
        text.append_text(self._findings_text(color))
        return text

    def _findings_text(self, color: bool) -> Text:
        text = Text()
        if not self.findings:
            text.append(f"No findings on row {self.row}.\n", style="bold green" if color else "")
        for f in self.findings:
            text.append(f"{f.code} ({f.severity})", style=SEVERITY_STYLE[f.severity]
                        if color else "")
            text.append(f" {f.message} ")
            text.append(f"[{f.name}]\n", style="dim" if color else "")
            if f.positions and f.positions[0]:
                text.append(f"  positions: {_ranges(f.positions[0])}\n")
            text.append("  help: ", style="cyan" if color else "")
            text.append(f.fix + "\n")
        dim = "dim" if color else ""
        if self.skipped:
            text.append("skipped: " + "; ".join(f"{c}: {why}" for c, why in self.skipped.items())
                        + "\n", style=dim)
        if self.not_judged:
            text.append(f"not judged on one row: {', '.join(self.not_judged)} (they judge a "
                        "whole batch or source: `labellint check` runs them)\n", style=dim)
        return text

    def to_html(self) -> str:
        """A self-contained HTML page (inline CSS, no external assets) for sharing."""
        from .html import page

        return page(self)

    def _repr_html_(self) -> str:  # Jupyter
        from .html import fragment

        return fragment(self)


def _row_of(chunks: Iterable[engine.Chunk], base: Facts, row: int,
            name: str) -> tuple[Facts, engine.Chunk]:
    """The source's facts, inferred as `check` infers them, and the chunk of row `row` alone.

    Chunks are read only up to the row (and the facts' sample): memory stays one chunk.
    """
    stream = iter(chunks)
    buffered, sample = engine._sample(stream)
    facts = infer_facts(Batch.from_columns(sample, base))
    seen = 0
    for chunk in itertools.chain(buffered, stream):
        n = len(chunk["input_ids"][1]) - 1
        if row < seen + n:
            return facts, {k: slice_ragged(v, row - seen, row - seen + 1)
                           for k, v in chunk.items()}
        seen += n
    raise LabelLintError(f"{name}: no row {row}; it has {seen:,} rows (0 to {seen - 1:,})")


def show(
    source: Any,
    row: int,
    tokenizer: Any = None,
    *,
    model: Any = None,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    columns: Mapping[str, str] | None = None,
    name: str | None = None,
    trust_remote_code: bool = False,
    **facts: Any,
) -> RowView:
    """One row of `source` (anything `check` reads) as tokens and states, with its findings.

    `print(labellint.show(ds, row=3, tokenizer=tok))` draws it (coloured on a terminal);
    `.to_html()` gives a self-contained page; in Jupyter it renders as HTML. Without a
    tokenizer the tokens are shown as ids, and the special ids the facts know by name.
    """
    if not isinstance(row, (int, np.integer)) or isinstance(row, bool) or row < 0:
        raise LabelLintError(f"row must be a row index (0 or more), not {row!r}")
    row = int(row)
    name = arguments.source_name(name)
    rules = select_rules(select, ignore)
    row_rules = [r for r in rules if r.per != "batch"]
    resolved = resolve_options(row_rules, options)
    tok = None if tokenizer is None else \
        load_tokenizer(tokenizer, trust_remote_code=trust_remote_code)
    base = known_facts(facts, tok, model)
    sources = open_sources(source, columns=columns, name=name)
    if len(sources) != 1:
        names = ", ".join(s.name for s in sources)
        raise LabelLintError(f"{len(sources)} sources here ({names}): show reads one; "
                             "give one split")
    src = sources[0]
    facts_, chunk = _row_of(src.chunks, base, row, src.name)
    result = engine.run(iter([chunk]), source=src.name, facts=facts_, rules=row_rules,
                        options=resolved, max_examples=1, infer=False)
    one = Batch.from_columns(chunk, facts_, row_start=row)
    # Positions come from the batch the engine judged: without labels, the collator's labels.
    judged = one if "labels" in chunk else one.with_collator_labels(mask_pad_id=False)
    by_code = {r.code: r for r in row_rules}
    findings = []
    for f in result.findings:
        positions: tuple[tuple[int, ...], ...] = ()
        rule = by_code[f.code]
        if rule.per == "token":
            # Every flagged position of the row, not the engine's first MAX_POSITIONS.
            mask = np.asarray(rule.func(judged, **resolved[f.code]), dtype=bool)
            positions = (tuple(np.flatnonzero(mask).tolist()),)
        findings.append(replace(f, rows=(row,), positions=positions, windows=()))
    tokens = view.tokens_of(one, hits=sorted({p for f in findings for p in
                                              (f.positions[0] if f.positions else ())}))
    if tok is not None:
        tokens = view.decode_window(tok, tokens)
    return RowView(source=src.name, row=row, tokens=tokens, facts=facts_, findings=findings,
                   skipped=result.unjudged,
                   not_judged=tuple(r.code for r in rules if r.per == "batch"))
