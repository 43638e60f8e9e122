"""Run the selected rules over a stream of chunks and merge their findings, one per rule.

Facts are inferred from the first SAMPLE_ROWS rows of a source whatever its chunking, and every
count and example row is global, so reading a dataset in different chunks gives the same report.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from .batch import Batch
from .columns import COLUMNS, SHIFT_LABELS, SOURCE_COLUMNS
from .errors import LabelLintError
from .facts import Facts
from .inference import infer_facts
from .ragged import Ragged, concat_ragged, slice_ragged
from .registry import NOT_APPLICABLE, REQUIREMENTS, Rule, Skip
from .report import Finding, SourceResult, plural
from .view import capture

SAMPLE_ROWS = 2048
CHUNK_TOKENS = 1 << 20  # derived views cost ~50 bytes a token: ~50 MB, mostly in cache
MAX_POSITIONS = 16
MISSING_LABELS = ("padding", "pad-id", "skip")
# Facts a tokenizer can answer with "none". No BOS is the model's design; no pad token only
# means the collator's pad id must come from elsewhere.
ABSENT = {"bos_id": "BOS token",
          "pad_id": "pad token: give pad_id / --pad-id (the id your collator pads with)"}
ABSENT_BY_DESIGN = frozenset({"bos_id"})
DERIVED_LABELS = {
    "padding": "no labels column: checked with labels = input_ids, padding masked, as TRL's "
               "collator builds them (--missing-labels pad-id: as DataCollatorForLanguageModeling "
               "does, masking every pad id)",
    "pad-id": "no labels column: checked with labels = input_ids, every pad id masked, as "
              "transformers' DataCollatorForLanguageModeling builds them",
}
NO_PAD_ID_TO_MASK = ("no labels column: checked with labels = input_ids, but no pad id is known, "
                     "so no id was masked as DataCollatorForLanguageModeling would mask it "
                     "(give pad_id / --pad-id)")
Chunk = Mapping[str, Ragged]


def _n_rows(chunk: Chunk) -> int:
    return len(chunk["input_ids"][1]) - 1


def _sample(chunks: Iterator[Chunk]) -> tuple[list[Chunk], dict[str, Ragged]]:
    """Read chunks until SAMPLE_ROWS rows are in hand; return them and exactly those rows."""
    buffered: list[Chunk] = []
    rows = 0
    for chunk in chunks:
        buffered.append(chunk)
        rows += _n_rows(chunk)
        if rows >= SAMPLE_ROWS:
            break
    if not buffered:
        raise LabelLintError("no rows to check: the source is empty")
    names = [n for n in SOURCE_COLUMNS if all(n in c for c in buffered)]
    sample = {n: concat_ragged([c[n] for c in buffered]) for n in names}
    n = min(rows, SAMPLE_ROWS)
    return buffered, {k: slice_ragged(v, 0, n) for k, v in sample.items()}


def _shift_labels_as_labels(chunk: Chunk) -> Chunk:
    """A chunk whose shift_labels stand as its labels.

    transformers' ForCausalLMLoss scores logits[t] against shift_labels[t] as they are, with no
    shift, and leaves labels unread; the Trainer counts num_items_in_batch on them too. So
    shift_labels are what is trained, in the dataset convention (labels[t] is the target of t):
    a copy of labels that was never shifted is unshifted-labels'.
    """
    if SHIFT_LABELS not in chunk:
        return chunk
    out = {k: v for k, v in chunk.items() if k != SHIFT_LABELS}
    out["labels"] = chunk[SHIFT_LABELS]
    return out


def _bounded(chunks: Iterable[Chunk], budget: int) -> Iterator[Chunk]:
    """Split chunks into runs of whole rows of at most `budget` tokens (a longer row alone)."""
    for chunk in chunks:
        offsets = chunk["input_ids"][1]
        if int(offsets[-1]) <= budget:
            yield chunk
            continue
        n = len(offsets) - 1
        start = 0
        while start < n:
            limit = int(offsets[start]) + budget
            stop = max(int(np.searchsorted(offsets, limit, side="right")) - 1, start + 1)
            stop = min(stop, n)
            yield {k: slice_ragged(v, start, stop) for k, v in chunk.items()}
            start = stop


def _missing(b: Batch, requirement: str) -> bool:
    if requirement in COLUMNS:
        return getattr(b, requirement) is None
    if requirement == "padding":
        return not b.knows_padding
    return getattr(b.facts, requirement) is None


def _view_for(rule: Rule, b: Batch) -> Batch:
    """What a rule judges: a whole-batch rule sees only rows whose columns line up.

    Token and row rules see every row and have mismatched rows masked out of their results, so
    that their row numbers stay those of the batch. A whole-batch rule has no rows to mask: it
    must not judge the neutral labels that stand in for a mismatched row's.
    """
    if rule.per != "batch" or not b.length_mismatch.any():
        return b
    return b.take_rows(~b.length_mismatch)


@dataclass
class _Tally:
    """One rule's findings so far in one source."""

    rule: Rule
    options: Mapping[str, Any]
    training_batches: bool
    rows: int = 0
    tokens: int = 0
    batches: int = 0
    examples: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)
    applied_chunks: int = 0
    every_chunk_hit: bool = True
    skip_reason: str | None = None
    skipped_by_design: bool = False
    windows: list = field(default_factory=list)  # view.TokenWindow per example, for the report

    def add(self, b: Batch, result: Any, max_examples: int) -> None:
        self.applied_chunks += 1
        if self.rule.per == "batch":
            self._add_batch(b, bool(result), max_examples)
            return
        mask = np.asarray(result, dtype=bool)
        expected = b.n_tokens if self.rule.per == "token" else b.n_rows
        if mask.shape != (expected,):
            raise RuntimeError(f"{self.rule.code} returned shape {mask.shape}, not ({expected},)")
        excluded = b.length_mismatch.any() and not self.rule.misaligned_rows
        if self.rule.per == "token":
            # Findings are few: work from the flat indices where the mask holds.
            index = np.flatnonzero(mask)
            rows = b.rows_of(index)
            if excluded:
                keep = ~b.length_mismatch[rows]
                index, rows = index[keep], rows[keep]
            self.tokens += index.size
            hit = np.r_[True, rows[1:] != rows[:-1]] if rows.size else rows.astype(bool)
            rows_hit, first = rows[hit], np.flatnonzero(hit)
            self.rows += rows_hit.size
            room = max(max_examples - len(self.examples), 0)
            for r, lo in zip(rows_hit[:room], first[:room]):
                at = index[lo : lo + MAX_POSITIONS]
                at = at[rows[lo : lo + MAX_POSITIONS] == r] - b.offsets[r]
                self.examples.append((b.row_start + int(r), tuple(int(p) for p in at)))
            return
        rows_hit = mask & ~b.length_mismatch if excluded else mask
        self.rows += int(np.count_nonzero(rows_hit))
        self.tokens += int(b.lengths[rows_hit].sum())
        room = max(max_examples - len(self.examples), 0)
        for r in np.flatnonzero(rows_hit)[:room]:
            self.examples.append((b.row_start + int(r), ()))

    def _add_batch(self, b: Batch, hit: bool, max_examples: int) -> None:
        if self.training_batches:
            if hit:
                self.batches += 1
                self.rows += b.n_rows
                self.tokens += b.n_tokens
                room = max_examples - len(self.examples)
                self.examples += [(b.row_start + r, ()) for r in range(min(room, b.n_rows))]
        else:
            # A dataset has no batches yet: the rule judges the source as a whole.
            self.every_chunk_hit &= hit
            room = max_examples - len(self.examples)
            self.examples += [(b.row_start + r, ()) for r in range(min(room, b.n_rows))]

    def finding(self, source: str, totals: Mapping[str, Any], facts: Facts) -> Finding | None:
        rows, tokens, batches = self.rows, self.tokens, self.batches
        if self.rule.per == "batch" and not self.training_batches:
            if not (self.applied_chunks and self.every_chunk_hit):
                return None
            rows, tokens, batches = totals["total_rows"], totals["total_tokens"], 1
        if rows == 0:
            return None
        values = {k: v["value"] for k, v in facts.describe().items()}
        values |= dict(self.options) | dict(totals)
        values |= {"rows": f"{rows:,}", "tokens": f"{tokens:,}", "batches": f"{batches:,}",
                   "pct": f"{100 * rows / max(totals['total_rows'], 1):.1f}"}
        message = self.rule.message
        text = plural(message(values) if callable(message) else message.format(**values))
        return Finding(
            code=self.rule.code,
            name=self.rule.name,
            severity=self.rule.severity,
            message=text,
            source=source,
            rows=tuple(r for r, _ in self.examples),
            positions=tuple(p for _, p in self.examples),
            count_rows=rows,
            count_tokens=tokens,
            total_rows=totals["total_rows"],
            total_tokens=totals["total_tokens"],
            fix=self.rule.fix.format(**values),
            doc=f"rules/{self.rule.page}",
            windows=tuple(self.windows),
        )


def run(
    chunks: Iterable[Chunk],
    *,
    source: str,
    facts: Facts,
    rules: list[Rule],
    options: Mapping[str, Mapping[str, Any]],
    training_batches: bool = False,
    max_examples: int = 5,
    missing_labels: str = "padding",
    progress: Callable[[int, int], None] | None = None,
    infer: bool = True,
) -> SourceResult:
    """Check one source: infer the missing facts, run every rule on every chunk, merge.

    missing_labels: for a dataset without labels, the labels its collator will build:
    "padding" (input_ids with padding masked: TRL's collator), "pad-id" (input_ids with every pad
    id masked: transformers' DataCollatorForLanguageModeling), or "skip" the rules needing them.
    progress: called with the rows and tokens of each chunk once it is checked.
    infer=False takes `facts` as final (`show` checks one row under the whole source's facts).
    """
    if missing_labels not in MISSING_LABELS:
        raise LabelLintError(f"missing_labels must be one of {', '.join(MISSING_LABELS)}, "
                             f"not {missing_labels!r}")
    stream = iter(chunks)
    buffered, sample = _sample(stream)
    if SHIFT_LABELS in sample:
        facts = replace(facts, label_shift="dataset",
                        origin={**facts.origin, "label_shift": "shift_labels column"})
        sample = _shift_labels_as_labels(sample)
    if infer:
        facts = infer_facts(Batch.from_columns(sample, facts))
    tallies = [_Tally(r, options.get(r.code, r.options), training_batches) for r in rules]
    row_start = tokens = n_chunks = 0

    def all_chunks() -> Iterator[Chunk]:
        yield from buffered
        buffered.clear()
        yield from stream

    # A dataset's chunks are cut to a token budget so memory does not grow with row length; a
    # training batch stays whole, since whole-batch rules judge it as the model receives it.
    chunks_in = all_chunks() if training_batches else _bounded(all_chunks(), CHUNK_TOKENS)
    # A training batch is what the model receives: without labels it has none to check.
    derived = missing_labels != "skip" and not training_batches and "labels" not in sample
    for chunk in chunks_in:
        b = Batch.from_columns(_shift_labels_as_labels(chunk), facts, row_start=row_start)
        if derived:
            b = b.with_collator_labels(mask_pad_id=missing_labels == "pad-id")
        for tally in tallies:
            missing = [req for req in tally.rule.requires if _missing(b, req)]
            if missing:
                known_absent = getattr(b.facts, missing[0], 0) is None and \
                    missing[0] in b.facts.origin
                tally.skip_reason = tally.skip_reason or (
                    f"the {b.facts.origin[missing[0]]} has no {ABSENT[missing[0]]}"
                    if known_absent else REQUIREMENTS[missing[0]])
                tally.skipped_by_design = missing[0] in NOT_APPLICABLE or (
                    known_absent and missing[0] in ABSENT_BY_DESIGN)
                continue
            view = _view_for(tally.rule, b)
            if view.n_rows == 0:
                tally.skip_reason = tally.skip_reason or "no row's columns line up (LL001)"
                continue
            result = tally.rule.func(view, **tally.options)
            if isinstance(result, Skip):
                tally.skip_reason = tally.skip_reason or result.reason
                tally.skipped_by_design = result.by_design
                continue
            seen = len(tally.examples)
            tally.add(b, result, max_examples)
            # The tokens around each new example row, while the chunk is at hand (few rows).
            tally.windows += [capture(b, row - b.row_start, positions)
                              for row, positions in tally.examples[seen:]]
        row_start += b.n_rows
        tokens += b.n_tokens
        n_chunks += 1
        if progress is not None:
            progress(b.n_rows, b.n_tokens)

    if row_start == 0:
        raise LabelLintError(f"no rows to check: {source} is empty")
    totals = {"total_rows": row_start, "total_tokens": tokens, "total_batches": n_chunks,
              "training_batches": training_batches}
    findings = [f for t in tallies if (f := t.finding(source, totals, facts)) is not None]
    never_applied = [t for t in tallies if t.applied_chunks == 0 and t.skip_reason]
    skipped = {t.rule.code: t.skip_reason for t in never_applied}
    by_design = tuple(t.rule.code for t in never_applied if t.skipped_by_design)
    notes = (DERIVED_LABELS[missing_labels],) if derived else ()
    if derived and missing_labels == "pad-id" and facts.pad_id is None:
        notes = (NO_PAD_ID_TO_MASK,)
    return SourceResult(source=source, facts=facts, findings=findings, skipped=skipped,
                        skipped_by_design=by_design, notes=notes,
                        rows=row_start, tokens=tokens,
                        batches=n_chunks if training_batches else None)
