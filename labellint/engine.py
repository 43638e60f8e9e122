"""The one engine: rules run over a source's chunks in mergeable parts, or over loss evidence.

A source is checked in three steps. `prepare` reads its first SAMPLE_ROWS rows, whatever its
chunking, and resolves the facts every part is checked under. `check_part` runs the rules over a
contiguous run of its chunks and returns a Partial: counts, skips and the first example rows,
each keyed by (part, row). `merge` adds Partials up, exactly, in any order or grouping, and
`finish` turns the sum into the SourceResult of one pass. `run` does all three on one stream.
Every Finding, of a data rule or a loss rule, is built by `build_finding`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .batch import Batch
from .columns import COLUMNS, SHIFT_LABELS, SOURCE_COLUMNS
from .errors import LabelLintError
from .facts import Facts
from .inference import infer_facts
from .partial import Example, Key, Partial, RulePartial, merge
from .ragged import SPARSE, IndexedMask, Ragged, concat_ragged, slice_ragged
from .registry import NOT_APPLICABLE, REQUIREMENTS, Rule, Skip
from .formats import plural
from .report import Finding, SourceResult
from .window import capture

__all__ = ["Chunk", "Example", "Key", "Partial", "Prepared", "RulePartial", "build_finding",
           "check_part", "finish", "merge", "prepare", "read_sample", "run", "run_loss"]

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


def read_sample(chunks: Iterator[Chunk]) -> tuple[list[Chunk], dict[str, Ragged]]:
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
    """Split chunks into runs of whole rows of at most `budget` tokens (a longer row alone).

    Each chunk is cut on its own, from its first row: a part made of whole chunks of a source
    is cut exactly as one pass over the source cuts them.
    """
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


# -- preparing a source -----------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """What every part of one source is checked under: its facts, rules and settings."""

    source: str
    facts: Facts
    rules: tuple[Rule, ...]
    options: Mapping[str, Mapping[str, Any]]  # every rule's, by code
    training_batches: bool
    max_examples: int
    missing_labels: str
    derived: bool  # no labels column: the rules judge the labels its collator will build

    @property
    def notes(self) -> tuple[str, ...]:
        if not self.derived:
            return ()
        if self.missing_labels == "pad-id" and self.facts.pad_id is None:
            return (NO_PAD_ID_TO_MASK,)
        return (DERIVED_LABELS[self.missing_labels],)


def prepare(
    chunks: Iterable[Chunk],
    *,
    source: str,
    facts: Facts,
    rules: Sequence[Rule],
    options: Mapping[str, Mapping[str, Any]],
    training_batches: bool = False,
    max_examples: int = 5,
    missing_labels: str = "padding",
    infer: bool = True,
) -> tuple[Prepared, Iterator[Chunk]]:
    """Resolve what a source is checked under from its first rows, once for all its parts.

    Returns the Prepared settings and the stream of every chunk, those of the sample first, so
    that one pass reads each chunk once; a caller that checks the parts elsewhere drops it.
    missing_labels: for a dataset without labels, the labels its collator will build:
    "padding" (input_ids with padding masked: TRL's collator), "pad-id" (input_ids with every pad
    id masked: transformers' DataCollatorForLanguageModeling), or "skip" the rules needing them.
    infer=False takes `facts` as final (`show` checks one row under the whole source's facts).
    """
    if missing_labels not in MISSING_LABELS:
        raise LabelLintError(f"missing_labels must be one of {', '.join(MISSING_LABELS)}, "
                             f"not {missing_labels!r}")
    stream = iter(chunks)
    buffered, sample = read_sample(stream)
    if SHIFT_LABELS in sample:
        facts = replace(facts, label_shift="dataset",
                        origin={**facts.origin, "label_shift": "shift_labels column"})
        sample = _shift_labels_as_labels(sample)
    if infer:
        facts = infer_facts(Batch.from_columns(sample, facts))
    # A training batch is what the model receives: without labels it has none to check.
    derived = missing_labels != "skip" and not training_batches and "labels" not in sample

    def every_chunk() -> Iterator[Chunk]:
        while buffered:  # each sample chunk is let go once handed on
            yield buffered.pop(0)
        yield from stream

    prepared = Prepared(
        source=source, facts=facts, rules=tuple(rules),
        options={r.code: options.get(r.code, r.options) for r in rules},
        training_batches=training_batches, max_examples=max_examples,
        missing_labels=missing_labels, derived=derived)
    return prepared, every_chunk()


# -- checking a part --------------------------------------------------------------------------


class _Tally:
    """One rule's counts, skips and examples so far in one part (a RulePartial in the making)."""

    def __init__(self, rule: Rule, options: Mapping[str, Any], part: Any,
                 training_batches: bool) -> None:
        self.rule, self.options, self.part = rule, options, part
        self.training_batches = training_batches
        self.rows = self.tokens = self.batches = self.applied_chunks = 0
        self.every_chunk_hit = True
        self.skip: tuple[Key, str] | None = None
        self.by_design: tuple[Key, bool] | None = None
        self.examples: list[tuple[int, tuple[int, ...]]] = []
        self.windows: list = []  # window.TokenWindow per example, captured with its chunk

    def skipped(self, b: Batch, reason: str, by_design: bool | None) -> None:
        """A chunk the rule did not judge: its first reason is kept, its last by-design flag."""
        key = (self.part, b.row_start)
        if reason and self.skip is None:
            self.skip = (key, reason)
        if by_design is not None:
            self.by_design = (key, by_design)

    def add(self, b: Batch, result: Any, max_examples: int) -> None:
        self.applied_chunks += 1
        seen = len(self.examples)
        if self.rule.per == "batch":
            self._add_batch(b, bool(result), max_examples)
        else:
            self._add_mask(b, result, max_examples)
        # The tokens around each new example row, while the chunk is at hand (few rows).
        self.windows += [capture(b, row - b.row_start, positions)
                         for row, positions in self.examples[seen:]]

    def _add_mask(self, b: Batch, result: Any, max_examples: int) -> None:
        known = getattr(result, "index", None) if isinstance(result, IndexedMask) else None
        mask = np.asarray(result, dtype=bool)
        expected = b.n_tokens if self.rule.per == "token" else b.n_rows
        if mask.shape != (expected,):
            raise RuntimeError(f"{self.rule.code} returned shape {mask.shape}, not ({expected},)")
        excluded = b.length_mismatch.any() and not self.rule.misaligned_rows
        if self.rule.per == "token":
            # Findings are few: work from the flat indices where the mask holds, those it was
            # made from when it kept them (sorted here: they may repeat, in any order).
            if known is not None and known.size * SPARSE < mask.size:
                index = np.unique(known)
            elif known is None and not mask.any():
                return
            else:
                index = np.flatnonzero(mask)
            if not index.size:
                return
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
        room = max(max_examples - len(self.examples), 0)
        first_rows = [(b.row_start + r, ()) for r in range(min(room, b.n_rows))]
        if self.training_batches:
            if hit:
                self.batches += 1
                self.rows += b.n_rows
                self.tokens += b.n_tokens
                self.examples += first_rows
        else:
            # A dataset has no batches yet: the rule judges the source as a whole, so the
            # finding holds only if every chunk is hit. That answer does not depend on where
            # chunks are cut as long as the rule holds of a chunk when it holds of each of its
            # rows (LL102: no target anywhere) or reads only facts (LL408).
            self.every_chunk_hit &= hit
            self.examples += first_rows

    def partial(self) -> RulePartial:
        return RulePartial(
            rows=self.rows, tokens=self.tokens, batches=self.batches,
            applied_chunks=self.applied_chunks, every_chunk_hit=self.every_chunk_hit,
            skip=self.skip, by_design=self.by_design,
            examples=tuple(Example(self.part, row, positions, window) for (row, positions), window
                           in zip(self.examples, self.windows)))


def check_part(
    prepared: Prepared,
    chunks: Iterable[Chunk],
    *,
    part: Any = 0,
    row_start: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Partial:
    """Run every rule on every chunk of one contiguous part of a source.

    row_start: the global index of the part's first row (the rows its findings name).
    part: where the part sits among the source's parts; with its rows, (part, row) orders
    examples and skips across parts, so parts of one source have keys that sort as they do.
    The parts must be cut on the source's chunk boundaries (a training batch is one chunk).
    progress: called with the rows and tokens of each chunk once it is checked.
    """
    tallies = [_Tally(r, prepared.options[r.code], part, prepared.training_batches)
               for r in prepared.rules]
    facts, rows, tokens, n_chunks = prepared.facts, row_start, 0, 0
    # A dataset's chunks are cut to a token budget so memory does not grow with row length; a
    # training batch stays whole, since whole-batch rules judge it as the model receives it.
    chunks_in = chunks if prepared.training_batches else _bounded(chunks, CHUNK_TOKENS)
    for chunk in chunks_in:
        b = Batch.from_columns(_shift_labels_as_labels(chunk), facts, row_start=rows)
        if prepared.derived:
            b = b.with_collator_labels(mask_pad_id=prepared.missing_labels == "pad-id")
        for tally in tallies:
            _judge(tally, b, prepared.max_examples)
        rows += b.n_rows
        tokens += b.n_tokens
        n_chunks += 1
        if progress is not None:
            progress(b.n_rows, b.n_tokens)
    return Partial(source=prepared.source, max_examples=prepared.max_examples,
                   rules={t.rule.code: t.partial() for t in tallies},
                   rows=rows - row_start, tokens=tokens, chunks=n_chunks)


def _judge(tally: _Tally, b: Batch, max_examples: int) -> None:
    """One rule on one chunk: its result added to the tally, or why it was not judged."""
    rule = tally.rule
    missing = [req for req in rule.requires if _missing(b, req)]
    if missing:
        known_absent = getattr(b.facts, missing[0], 0) is None and missing[0] in b.facts.origin
        tally.skipped(b, f"the {b.facts.origin[missing[0]]} has no {ABSENT[missing[0]]}"
                      if known_absent else REQUIREMENTS[missing[0]],
                      missing[0] in NOT_APPLICABLE or (known_absent
                                                       and missing[0] in ABSENT_BY_DESIGN))
        return
    view = _view_for(rule, b)
    if view.n_rows == 0:
        tally.skipped(b, "no row's columns line up (LL001)", None)
        return
    result = rule.func(view, **tally.options)
    if isinstance(result, Skip):
        tally.skipped(b, result.reason, result.by_design)
        return
    tally.add(b, result, max_examples)


# -- the result of a source -------------------------------------------------------------------


def finish(prepared: Prepared, partial: Partial) -> SourceResult:
    """The SourceResult of a source whose parts, merged, are `partial`: one finding per rule."""
    if partial.rows == 0:
        raise LabelLintError(f"no rows to check: {prepared.source} is empty")
    totals = {"total_rows": partial.rows, "total_tokens": partial.tokens,
              "total_batches": partial.chunks, "training_batches": prepared.training_batches}
    facts_values = {k: v["value"] for k, v in prepared.facts.describe().items()}
    findings, skipped, by_design = [], {}, []
    for r in prepared.rules:
        p = partial.rules[r.code]
        if p.applied_chunks == 0 and p.skip is not None:
            skipped[r.code] = p.skip[1]
            if p.by_design is not None and p.by_design[1]:
                by_design.append(r.code)
        rows, tokens, batches = p.rows, p.tokens, p.batches
        if r.per == "batch" and not prepared.training_batches:
            if not (p.applied_chunks and p.every_chunk_hit):
                continue
            rows, tokens, batches = partial.rows, partial.tokens, 1
        if rows == 0:
            continue
        values = facts_values | dict(prepared.options[r.code]) | totals
        values |= {"rows": f"{rows:,}", "tokens": f"{tokens:,}", "batches": f"{batches:,}",
                   "pct": f"{100 * rows / max(partial.rows, 1):.1f}"}
        findings.append(build_finding(r, values, source=prepared.source, count_rows=rows,
                                      count_tokens=tokens, total_rows=partial.rows,
                                      total_tokens=partial.tokens, examples=p.examples))
    return SourceResult(source=prepared.source, facts=prepared.facts, findings=findings,
                        skipped=skipped, skipped_by_design=tuple(by_design),
                        notes=prepared.notes, rows=partial.rows, tokens=partial.tokens,
                        batches=partial.chunks if prepared.training_batches else None)


def build_finding(rule: Rule, values: Mapping[str, Any], *, source: str, count_rows: int,
                  count_tokens: int, total_rows: int, total_tokens: int,
                  examples: Sequence[Example] = ()) -> Finding:
    """The Finding of a rule that fired, its message and fix filled in from `values`."""
    message = rule.message(values) if callable(rule.message) else rule.message.format(**values)
    if rule.per != "loss":
        # A data rule's message is written for counts ("{rows} rows"), and a count can be one;
        # a loss rule words its own numbers.
        message = plural(message)
    return Finding(
        code=rule.code,
        name=rule.name,
        severity=rule.severity,
        message=message,
        source=source,
        rows=tuple(e.row for e in examples),
        positions=tuple(e.positions for e in examples),
        count_rows=count_rows,
        count_tokens=count_tokens,
        total_rows=total_rows,
        total_tokens=total_tokens,
        fix=rule.fix.format(**values),
        doc=f"rules/{rule.page}",
        windows=tuple(e.window for e in examples),
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
    """Check one source in one pass: prepare it, check all its chunks as one part, finish.

    The arguments are prepare's, with progress check_part's.
    """
    prepared, stream = prepare(chunks, source=source, facts=facts, rules=rules,
                               options=options, training_batches=training_batches,
                               max_examples=max_examples, missing_labels=missing_labels,
                               infer=infer)
    return finish(prepared, check_part(prepared, stream, progress=progress))


# -- loss evidence ----------------------------------------------------------------------------


def run_loss(evidence: Any, *, rules: Sequence[Rule],
             options: Mapping[str, Mapping[str, Any]],
             source: str = "loss") -> tuple[list[Finding], dict[str, str]]:
    """Run loss rules on one window's LossEvidence: findings, and rules skipped with reasons.

    A skip by design (no reported loss to compare) is not listed: nothing was left unjudged.
    """
    findings, skipped = [], {}
    for r in rules:
        result = r.func(evidence, **options.get(r.code, r.options))
        if isinstance(result, Skip):
            if not result.by_design:
                skipped[r.code] = result.reason
            continue
        if not result:
            continue
        findings.append(build_finding(
            r, dict(result), source=source, count_rows=evidence.rows,
            count_tokens=evidence.supervised, total_rows=evidence.rows,
            total_tokens=evidence.tokens))
    return findings, skipped
