"""Token windows: how each token looks to the loss, in the rows the engine keeps as examples.

One classification serves `labellint show` and the report's example strips, so both tell the
states apart the same way. A token is:

- trained: the loss uses its label (a target);
- masked: content whose label is ignore_index (a prompt, a system turn);
- padding: what `Batch.is_pad` calls padding;
- attention-off: attention_mask == 0 on content that is not padding (usually a mistake).

A padding or attention-off token may be trained too (the mistakes LL103 and LL201 find), so the
state comes with a separate `target` flag. Special tokens (BOS, EOS, pad, end of turn) are named
from the facts, packed-sequence starts (position_ids back at 0) get a boundary, and a label is
kept where it is not the token the convention expects there.

The engine keeps a `TokenWindow` of at most WINDOW tokens per example row it records (at most
max_examples rows per finding), so the report can draw the row without the data at hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .batch import Batch
from .columns import COLUMNS

TRAINED, MASKED, PADDING, HIDDEN = "trained", "masked", "padding", "attention-off"
STATES = (TRAINED, MASKED, PADDING, HIDDEN)
WINDOW = 24       # tokens kept per example row
EDGE = 8          # of which, for a row-level finding: the row's start, its first target, its end


@dataclass(frozen=True)
class TokenWindow:
    """Tokens of one row as the view shows them; every tuple has one entry per token.

    index: each token's position in the row (a window may skip parts: `…` is drawn there).
    hits: positions in the row that a finding flagged (drawn with carets).
    texts, label_texts: decoded text, when a tokenizer was at hand; ids are shown otherwise.
    """

    row: int
    length: int
    index: tuple[int, ...]
    ids: tuple[int, ...]
    states: tuple[str, ...]
    target: tuple[bool, ...]
    special: tuple[str | None, ...]
    boundary: tuple[bool, ...]
    labels: tuple[int, ...] | None = None
    label_shown: tuple[bool, ...] | None = None
    position_ids: tuple[int, ...] | None = None
    position_odd: tuple[bool, ...] | None = None
    hits: tuple[int, ...] = ()
    texts: tuple[str, ...] | None = None
    label_texts: tuple[str | None, ...] | None = None

    def __len__(self) -> int:
        return len(self.index)

    def counts(self) -> dict[str, int]:
        """How many tokens are in each state, and how many are trained."""
        out = {s: self.states.count(s) for s in STATES}
        out["target"] = sum(self.target)
        return out


def classify(b: Batch) -> dict[str, np.ndarray]:
    """Per token of `b`: its state (an index into STATES), target flag, boundary, odd labels.

    Vectorised over the batch; only the batch's own views are used, so a one-row batch
    classifies its row exactly as the whole batch would.
    """
    state = np.full(b.n_tokens, STATES.index(MASKED), dtype=np.int8)
    target = np.zeros(b.n_tokens, dtype=bool) if b.labels is None else b.targets
    state[target] = STATES.index(TRAINED)
    state[~b.attended] = STATES.index(HIDDEN)
    state[b.is_pad] = STATES.index(PADDING)
    out = {"state": state, "target": target}
    if b.labels is not None:
        # The label the convention expects: the token itself (the model shifts), or the next.
        if b.facts.label_shift == "model":
            expected = b.label_is_input
        else:
            expected = b.label_is_next
        out["label_shown"] = b.supervised & ~expected
    boundary = np.zeros(b.n_tokens, dtype=bool)
    if b.position_ids is not None:
        pos = b.position_ids
        after_padding = b.position_in_row > b.at_rows(b.first_real_index)
        boundary = (pos == 0) & after_padding
        prev = np.empty_like(pos)
        prev[1:] = pos[:-1]
        first = b.position_in_row == 0
        # A position that neither counts up by one nor starts a sequence; padding is free.
        odd = np.where(first, pos != 0, (pos != prev + 1) & (pos != 0)) & b.real
        out["position_odd"] = odd
    out["boundary"] = boundary
    return out


def special_names(facts) -> dict[int, str]:
    """Names for the special ids the facts know, for rows shown without a tokenizer."""
    names = {i: "<eot>" for i in facts.end_of_turn_ids}
    for name in ("pad", "bos", "eos"):  # EOS wins when pad == eos: the state says padding
        value = getattr(facts, f"{name}_id")
        if value is not None:
            names[int(value)] = f"<{name}>"
    return names


def row_batch(b: Batch, r: int) -> Batch:
    """Row `r` of `b` as a Batch of its own, sharing memory (no copy)."""
    lo, hi = int(b.offsets[r]), int(b.offsets[r + 1])
    columns = {n: getattr(b, n)[lo:hi] for n in COLUMNS[1:] if getattr(b, n) is not None}
    return Batch(b.input_ids[lo:hi], np.array([0, hi - lo], dtype=np.int64), facts=b.facts,
                 row_start=b.row_start + r, length_mismatch=b.length_mismatch[r : r + 1],
                 **columns)


def tokens_of(one: Batch, index: np.ndarray | None = None, *,
              hits: Iterable[int] = ()) -> TokenWindow:
    """The tokens of a one-row Batch at `index` (all of them by default)."""
    index = np.arange(one.n_tokens) if index is None else np.asarray(index, dtype=np.int64)
    return _window(one, classify(one), 0, one.n_tokens, index, hits, one.row_start)


def _window(b: Batch, c: dict[str, np.ndarray], lo: int, hi: int, index: np.ndarray,
            hits: Iterable[int], row: int) -> TokenWindow:
    """The tokens at row positions `index` of the row at flat [lo, hi) of `b`, classified `c`."""
    flat = lo + index
    names = special_names(b.facts)

    def pick(values: np.ndarray | None) -> tuple | None:
        return None if values is None else tuple(values[flat].tolist())

    ids = pick(b.input_ids)
    return TokenWindow(
        row=row,
        length=hi - lo,
        index=tuple(index.tolist()),
        ids=ids,
        states=tuple(STATES[s] for s in c["state"][flat]),
        target=pick(c["target"]),
        special=tuple(names.get(i) for i in ids),
        boundary=pick(c["boundary"]),
        labels=pick(b.labels),
        label_shown=pick(c.get("label_shown")),
        position_ids=pick(b.position_ids),
        position_odd=pick(c.get("position_odd")),
        hits=tuple(int(h) for h in hits),
    )


def window_index(length: int, first_target: int | None, positions: Sequence[int],
                 width: int = WINDOW) -> np.ndarray:
    """Which of a row's tokens an example shows: at most `width`.

    Around the first flagged position for a token-level finding; for a row-level one, where
    row mistakes show: the row's start (BOS, padding), its first target (masking, shift) and
    its end (EOS, truncation).
    """
    n = length
    if n <= width:
        return np.arange(n)
    if positions:
        start = min(max(positions[0] - EDGE, 0), n - width)
        return np.arange(start, start + width)
    edge = EDGE if first_target is not None else width // 2
    keep = np.zeros(n, dtype=bool)
    keep[:edge] = True
    keep[n - edge :] = True
    if first_target is not None:
        keep[max(first_target - 3, 0) : first_target + EDGE - 3] = True
    return np.flatnonzero(keep)  # parts that overlap show fewer tokens, never more


SMALL_CHUNK = 1 << 16  # tokens: classify such a chunk whole, once, rather than row by row


def capture(b: Batch, r: int, positions: Sequence[int]) -> TokenWindow:
    """The window kept for example row `r` of `b` (the engine calls this per recorded example).

    A small chunk (a training batch) is classified once and kept on the Batch, reusing the
    views its rules computed; a large one row by row, since only a few rows are examples.
    """
    if b.n_tokens <= SMALL_CHUNK:
        c = b.__dict__.get("_view_classes")
        if c is None:
            c = b.__dict__["_view_classes"] = classify(b)
        lo, hi = int(b.offsets[r]), int(b.offsets[r + 1])
        source = b
    else:
        source = row_batch(b, r)
        c, lo, hi = classify(source), 0, source.n_tokens
    targets = np.flatnonzero(c["target"][lo:hi])
    first = int(targets[0]) if targets.size else None
    index = window_index(hi - lo, first, positions)
    return _window(source, c, lo, hi, index, positions, b.row_start + r)
