"""Padding found from the edges of rows: per row, how many leading or trailing tokens are padding.

Padding is a run at a row's start (left padding) or end (right padding), so it is measured from
the edge tokens inward: only rows whose edge token can be padding are read, and only as far as
their run goes. A padded row's padding is short next to its content, so this reads a small share
of the tokens that masks, runs and per-token row broadcasts over the whole batch would.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

FIRST_WINDOW = 16  # tokens read per edge at first; each further read covers four times as many

Holds = Callable[[np.ndarray, np.ndarray], np.ndarray]


def edge_run(holds: Holds, edge: np.ndarray, room: np.ndarray, step: int) -> np.ndarray:
    """Per edge index, for how many tokens from it on, stepping by `step` (1 from a row's start,
    -1 from its end), `holds` is True, within `room` tokens.

    holds(pos, which) gets a 2-d array of flat indices, one line per edge `which` (indices into
    `edge`), and returns bools of its shape. Windows grow fourfold, so a run of n tokens costs
    O(n) reads, and no window reaches past the longest room still open.
    """
    out = np.zeros(edge.size, dtype=np.int64)
    todo = np.arange(edge.size)
    done, width = 0, FIRST_WINDOW
    while todo.size:
        width = min(width, int(room[todo].max()) + 1)  # one past the room: where runs stop
        k = np.arange(done, width)
        open_room = room[todo, None]
        pos = edge[todo, None] + step * np.minimum(k, open_room - 1)  # never past the row
        stop = ~(holds(pos, todo) & (k < open_room))
        stopped = stop.any(axis=1)
        out[todo] = done + np.where(stopped, stop.argmax(axis=1), k.size)
        todo = todo[~stopped]
        done, width = width, 4 * width
    return out


def pad_edges(
    input_ids: np.ndarray,
    offsets: np.ndarray,
    *,
    attention_mask: np.ndarray | None,
    pad_id: int | None,
    eos_id: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, how many tokens of padding lead it and how many trail it (Batch.is_pad's
    definition); `trail` never counts a token `lead` does, so the two add up to the padding.

    attention_mask: None when no token has attention off (then only a trailing run of the pad
    id can be padding).
    """
    starts, lengths = offsets[:-1], np.diff(offsets)
    lead = np.zeros(lengths.size, dtype=np.int64)
    trail = np.zeros(lengths.size, dtype=np.int64)
    rows = np.flatnonzero(lengths > 0)
    first = starts[rows]
    last = first + lengths[rows] - 1
    if attention_mask is not None:
        def padlike(pos: np.ndarray, which: np.ndarray | None = None) -> np.ndarray:
            out = attention_mask[pos] == 0
            if pad_id is not None:
                # A negative id cannot be content: input_ids padded with -100 is still padding.
                ids = input_ids[pos]
                out &= (ids == pad_id) | (ids < 0)
            return out

        for edge, step, out in ((first, 1, lead), (last, -1, trail)):
            hit = padlike(edge)
            r, e = rows[hit], edge[hit]
            out[r] = _padlike_run(padlike, input_ids, e, lengths[r], step, pad_id is None)
    if pad_id is not None:
        # Padding added by hand with attention_mask left at 1 is still padding to the loss; when
        # the pad id is also EOS, the run's first token is the real EOS.
        hit = input_ids[last] == pad_id
        r = rows[hit]
        run = edge_run(lambda pos, _: input_ids[pos] == pad_id, last[hit], lengths[r], -1)
        trail[r] = np.maximum(trail[r], run - (pad_id == eos_id))
    np.minimum(trail, lengths - lead, out=trail)
    return lead, trail


def _padlike_run(padlike: Holds, input_ids: np.ndarray, edge: np.ndarray, room: np.ndarray,
                 step: int, one_id: bool) -> np.ndarray:
    """The run of padding-like tokens at each edge; with `one_id` (the pad id unknown), only a
    run of one id counts: attention off over several ids is hidden content, not padding."""
    run = edge_run(padlike, edge, room, step)
    if one_id and run.size:
        edge_ids = input_ids[edge]
        same = edge_run(lambda pos, w: padlike(pos) & (input_ids[pos] == edge_ids[w, None]),
                        edge, room, step)
        run[same != run] = 0
    return run
