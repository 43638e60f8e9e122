"""The mergeable result of checking one part of a source (engine.check_part), with its merge.

Parts of one source are checked apart (other processes, other machines) and their Partials
added up by `merge`: counts add, "every chunk hit" holds if it holds in each part, and the
first max_examples example rows, the first skip reason and the last skip's by-design flag are
chosen by the global key (part, row). So merge is pure and associative, and commutative too: its
answer does not depend on the order the parts come in, only on their keys.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

# (part, row): `part` orders the parts of a source (an int, or tuples such as (shard, piece)),
# `row` is a row's global index. Keys of one source must be comparable and distinct.
Key = tuple[Any, int]


@dataclass(frozen=True)
class Example:
    """One example row of a finding: where it is, its flagged positions, its token window."""

    part: Any
    row: int
    positions: tuple[int, ...]
    window: Any  # view.TokenWindow

    @property
    def key(self) -> Key:
        return (self.part, self.row)


@dataclass(frozen=True)
class RulePartial:
    """One rule's result over one part: counts, the first examples, why it was not judged."""

    rows: int = 0
    tokens: int = 0
    batches: int = 0
    applied_chunks: int = 0
    every_chunk_hit: bool = True  # a whole-batch rule on a dataset: hit in every chunk judged
    skip: tuple[Key, str] | None = None  # the first chunk skipped, and the reason
    by_design: tuple[Key, bool] | None = None  # the last chunk skipped, and whether by design
    examples: tuple[Example, ...] = ()  # ordered by key, at most max_examples


@dataclass(frozen=True)
class Partial:
    """Every rule's result over one part of a source, with the rows, tokens and chunks read."""

    source: str
    max_examples: int
    rules: Mapping[str, RulePartial]  # by rule code
    rows: int
    tokens: int
    chunks: int


def merge(*partials: Partial) -> Partial:
    """The Partial of the parts together, as if they had been checked in one part."""
    if not partials:
        raise ValueError("merge needs at least one Partial")
    first = partials[0]
    for p in partials[1:]:
        if (p.source, p.max_examples, set(p.rules)) != \
                (first.source, first.max_examples, set(first.rules)):
            raise ValueError("only parts of one source, checked under one Prepared, merge: "
                             f"{p.source!r} vs {first.source!r}")
    return Partial(
        source=first.source, max_examples=first.max_examples,
        rules={code: _merge_rule([p.rules[code] for p in partials], first.max_examples)
               for code in first.rules},
        rows=sum(p.rows for p in partials),
        tokens=sum(p.tokens for p in partials),
        chunks=sum(p.chunks for p in partials))


def _merge_rule(parts: list[RulePartial], max_examples: int) -> RulePartial:
    examples = sorted((e for p in parts for e in p.examples), key=lambda e: e.key)
    skips = [p.skip for p in parts if p.skip is not None]
    flags = [p.by_design for p in parts if p.by_design is not None]
    return RulePartial(
        rows=sum(p.rows for p in parts),
        tokens=sum(p.tokens for p in parts),
        batches=sum(p.batches for p in parts),
        applied_chunks=sum(p.applied_chunks for p in parts),
        every_chunk_hit=all(p.every_chunk_hit for p in parts),
        skip=min(skips, default=None),
        by_design=max(flags, default=None),
        examples=tuple(examples[:max_examples]))


def shifted(partial: Partial, rows: int) -> Partial:
    """`partial` of a part checked as if it started at row 0, renumbered to start at `rows`.

    A part read in a worker cannot know how many rows come before it when the files do not
    say (JSON Lines); the rows it names are moved once every earlier part has been counted.
    """
    if rows == 0:
        return partial

    def key(k: tuple[Key, Any] | None) -> tuple[Key, Any] | None:
        return None if k is None else ((k[0][0], k[0][1] + rows), k[1])

    def example(e: Example) -> Example:
        window = e.window if e.window is None else replace(e.window, row=e.window.row + rows)
        return replace(e, row=e.row + rows, window=window)

    return replace(partial, rules={
        code: replace(p, skip=key(p.skip), by_design=key(p.by_design),
                      examples=tuple(example(e) for e in p.examples))
        for code, p in partial.rules.items()})
