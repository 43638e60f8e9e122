"""The loss check's result: LossEvidence (what the loss rules judge), LossReport (what it returns).

A LossReport carries the numbers, not only a verdict: the reference loss, the reported one, the
window's supervised-token count and every forensic hypothesis's loss. It answers like the data
Report: `ok`, `errors`, `failed()`, `raise_for_errors()`, `to_dict()`, text rendering.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text

from .forensics import Hypothesis, Verdict
from ..formats import counted
from ..printable import SEVERITY_STYLE, WIDTH, Printable
from ..report import JSON_VERSION, Finding, Outcome


@dataclass(frozen=True)
class LossEvidence:
    """The numbers of one optimizer step's window, as the loss rules read them."""

    reference: float
    reported: float | None
    reported_from: str                  # "given", "loss_fn", "the model's own loss", "outputs"
    supervised: int
    micro_supervised: tuple[int, ...]   # targets per micro-batch
    rows: int
    tokens: int
    empty_rows: int                     # rows without a target
    nonfinite_positions: int            # positions whose logits hold inf or NaN
    nonfinite_rows: tuple[int, ...]
    vocab_size: int
    dtype: str
    rtol: float
    atol: float
    hypotheses: tuple[Hypothesis, ...]
    verdict: Verdict | None
    at_init: bool | None = None  # None: unknown, only a loss far above ln(V) is judged
    ignore_index: int = -100

    @property
    def micro_batches(self) -> int:
        return len(self.micro_supervised)


def number(x: float | None) -> str:
    """A loss as people read it: 4 decimals, or nan/inf."""
    if x is None:
        return "none"
    return f"{x:.4f}" if math.isfinite(x) else str(x)


def given(x: float) -> str:
    """A reported number as the user wrote it (2.31 stays 2.31)."""
    return f"{x:.6g}" if math.isfinite(x) else str(x)


def _plain(x: float | None) -> float | None:
    """JSON has no NaN: a non-finite number is null (the finding says which)."""
    return x if x is None or math.isfinite(x) else None


@dataclass(frozen=True)
class LossReport(Outcome, Printable):
    """The loss check of one optimizer step: the numbers, the findings, and what was skipped."""

    evidence: LossEvidence
    findings: list[Finding]
    skipped: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    device: str = "cpu"
    source: str = "loss"

    # -- the numbers ---------------------------------------------------------------------------

    @property
    def reference_loss(self) -> float:
        return self.evidence.reference

    @property
    def reported_loss(self) -> float | None:
        return self.evidence.reported

    @property
    def supervised_tokens(self) -> int:
        return self.evidence.supervised

    @property
    def hypotheses(self) -> dict[str, float]:
        """Each forensic hypothesis's loss on this window, by name."""
        return {h.name: h.loss for h in self.evidence.hypotheses}

    @property
    def matched(self) -> str | None:
        """The one hypothesis that reproduces the reported loss; "reference" when it agrees."""
        v = self.evidence.verdict
        if v is None:
            return None
        if v.agrees:
            return "reference"
        return v.matched[0].name if len(v.matched) == 1 else None

    @property
    def candidates(self) -> tuple[str, ...]:
        """Every hypothesis that reproduces the reported loss (several when they tie)."""
        v = self.evidence.verdict
        return tuple(h.name for h in v.matched) if v is not None else ()

    def to_dict(self) -> dict[str, Any]:
        e = self.evidence
        return {
            "version": JSON_VERSION,
            "reference_loss": _plain(e.reference),
            "reported_loss": _plain(e.reported),
            "reported_from": e.reported_from,
            "supervised_tokens": e.supervised,
            "micro_batches": e.micro_batches,
            "micro_batch_supervised_tokens": list(e.micro_supervised),
            "rows": e.rows,
            "tokens": e.tokens,
            "vocab_size": e.vocab_size,
            "dtype": e.dtype,
            "device": self.device,
            "tolerance": {"rtol": e.rtol, "atol": e.atol},
            "hypotheses": {k: _plain(v) for k, v in self.hypotheses.items()},
            "matched": self.matched,
            "candidates": list(self.candidates),
            "findings": [f.to_dict() for f in self.findings],
            "skipped": dict(self.skipped),
            "notes": list(self.notes),
            "summary": {"errors": len(self.errors), "warnings": len(self.warnings)},
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def render(self, *, details: bool = True, color: bool = False, width: int = WIDTH) -> Text:
        """The text report; colour and width are the console's business here (no strips)."""
        e = self.evidence
        text = Text()
        for f in self.findings:
            text.append(f"{f.source}: ", style="bold")
            text.append(f"{f.code} ({f.severity})", style=SEVERITY_STYLE[f.severity])
            text.append(f" {f.message} ")
            text.append(f"[{f.name}]", style="dim")
            text.append("\n  help: ", style="cyan")
            text.append(f.fix + "\n")
        window = (f"{counted(e.supervised, 'target')} in {counted(e.rows, 'row')}"
                  + (f", {e.micro_batches} micro-batches" if e.micro_batches > 1 else ""))
        if details:
            reported = (f"; reported {given(e.reported)} ({e.reported_from})"
                        if e.reported is not None else "")
            text.append(f"reference {number(e.reference)} (cross-entropy of a {e.dtype} "
                        f"model over {window}, on {self.device}){reported}; tolerance "
                        f"{e.rtol:g} relative\n", style="dim")
            if e.hypotheses and not self.ok:
                shown = ", ".join(f"{h.name} {number(h.loss)}" for h in e.hypotheses)
                text.append(f"hypotheses: {shown}\n", style="dim")
            for note in self.notes:
                text.append(f"note: {note}\n", style="dim")
            shown_skips = {c: why for c, why in self.skipped.items()}
            if shown_skips:
                text.append("skipped: " + "; ".join(f"{c}: {why}" for c, why in
                                                    shown_skips.items()) + "\n", style="dim")
        if self.findings:
            n_err, n_warn = len(self.errors), len(self.warnings)
            first = (self.errors or self.findings)[0].code
            text.append(f"Found {len(self.findings)} problem{'s' * (len(self.findings) != 1)} "
                        f"({n_err} error{'s' * (n_err != 1)}, {n_warn} warning"
                        f"{'s' * (n_warn != 1)}) in the loss over {window}. "
                        f"`labellint rule {first}` explains.", style="bold")
        elif e.reported is not None:
            text.append(f"The reported loss {given(e.reported)} matches the reference "
                        f"{number(e.reference)} over {window}.", style="bold green")
        else:
            text.append(f"The reference loss is {number(e.reference)} over {window}.",
                        style="bold green")
        return text
