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
    if not edge.size:
        return out
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
    hidden: np.ndarray | None,
    pad_id: int | None,
    eos_id: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, how many tokens of padding lead it and how many trail it (Batch.is_pad's
    definition); `trail` never counts a token `lead` does, so the two add up to the padding.

    hidden: the flat indices where attention is off, sorted; None when there are none (then
    only a trailing run of the pad id can be padding).
    """
    starts, ends = offsets[:-1], offsets[1:]
    lengths = ends - starts
    lead = np.zeros(lengths.size, dtype=np.int64)
    trail = np.zeros(lengths.size, dtype=np.int64)
    if hidden is not None and hidden.size:
        ids = input_ids[hidden]
        if pad_id is None:
            # Attention off over several ids is hidden content, not padding: a run counts only
            # when it is one id throughout.
            lead, trail = index_runs(hidden, starts, ends)
            one_lead, one_trail = index_runs(hidden, starts, ends, cut=ids[1:] != ids[:-1])
            lead[one_lead != lead] = 0
            trail[one_trail != trail] = 0
        else:
            # A negative id cannot be content: input_ids padded with -100 is still padding.
            lead, trail = index_runs(hidden[(ids == pad_id) | (ids < 0)], starts, ends)
    if pad_id is not None:
        # Padding added by hand with attention_mask left at 1 is still padding to the loss; when
        # the pad id is also EOS, the run's first token is the real EOS. The pad id's run from
        # the end outgrows the attention run only where the token before that run is the pad id.
        rows = np.flatnonzero(lengths > trail)
        r = rows[input_ids[ends[rows] - 1 - trail[rows]] == pad_id]
        run = edge_run(lambda pos, _: input_ids[pos] == pad_id, ends[r] - 1, lengths[r], -1)
        trail[r] = np.maximum(trail[r], run - (pad_id == eos_id))
    np.minimum(trail, lengths - lead, out=trail)
    return lead, trail


def index_runs(index: np.ndarray, starts: np.ndarray, ends: np.ndarray,
               cut: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per row [start, end), how many tokens from its start, and how many up to its end, are
    in `index` (sorted flat indices) without a gap; `cut` (bools over index[1:]) marks further
    places where a run stops.

    Only each row's two edges are looked up, in the runs of `index`: the work is per row and
    per index, never per token.
    """
    lead = np.zeros(starts.size, dtype=np.int64)
    trail = np.zeros(starts.size, dtype=np.int64)
    if not index.size:
        return lead, trail
    breaks = index[1:] != index[:-1] + 1
    if cut is not None:
        breaks |= cut
    run_first = np.flatnonzero(np.r_[True, breaks])  # where each run starts, in `index`
    run_last = np.r_[run_first[1:] - 1, index.size - 1]
    rows = np.flatnonzero(ends > starts)
    for edge, out in ((starts[rows], lead), (ends[rows] - 1, trail)):
        at = np.minimum(np.searchsorted(index, edge), index.size - 1)
        hit = index[at] == edge
        r, run = rows[hit], np.searchsorted(run_first, at[hit], side="right") - 1
        if out is lead:
            out[r] = np.minimum(index[run_last[run]] + 1, ends[r]) - starts[r]
        else:
            out[r] = ends[r] - np.maximum(index[run_first[run]], starts[r])
    return lead, trail
