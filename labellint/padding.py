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
    attention_mask: np.ndarray | None,
    pad_id: int | None,
    eos_id: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, how many tokens of padding lead it and how many trail it (Batch.is_pad's
    definition); `trail` never counts a token `lead` does, so the two add up to the padding.

    attention_mask: None when attention is on everywhere (then only a trailing run of the pad
    id can be padding).
    """
    starts, ends = offsets[:-1], offsets[1:]
    lengths = ends - starts
    lead = np.zeros(lengths.size, dtype=np.int64)
    trail = np.zeros(lengths.size, dtype=np.int64)
    if attention_mask is not None:
        lead = hidden_run(input_ids, attention_mask, starts, lengths, 1, pad_id)
        trail = hidden_run(input_ids, attention_mask, ends - 1, lengths, -1, pad_id)
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


def hidden_run(input_ids: np.ndarray, attention_mask: np.ndarray, edge: np.ndarray,
               lengths: np.ndarray, step: int, pad_id: int | None) -> np.ndarray:
    """Per row, the run of tokens from its `edge` (first or last token; `step` inward) with
    attention off that can be padding: the pad id or a negative id throughout (input_ids padded
    with -100 is still padding); without a pad id, one id throughout, else none of it (attention
    off over several ids is hidden content, not padding).

    Only rows whose edge token is hidden are read, and only as far as their run goes.
    """
    out = np.zeros(lengths.size, dtype=np.int64)
    rows = np.flatnonzero(lengths > 0)
    at = edge[rows]
    hidden = attention_mask[at] == 0
    if pad_id is not None:
        hidden &= (input_ids[at] == pad_id) | (input_ids[at] < 0)
    r = rows[hidden]
    if not r.size:
        return out
    edge, room = edge[r], lengths[r]
    if pad_id is not None:
        def padding(pos: np.ndarray, _) -> np.ndarray:
            ids = input_ids[pos]
            return (attention_mask[pos] == 0) & ((ids == pad_id) | (ids < 0))

        out[r] = edge_run(padding, edge, room, step)
        return out
    first = input_ids[edge]
    run = edge_run(lambda pos, _: attention_mask[pos] == 0, edge, room, step)
    same = edge_run(lambda pos, which: (attention_mask[pos] == 0)
                    & (input_ids[pos] == first[which, None]), edge, room, step)
    out[r] = np.where(same == run, run, 0)
    return out
