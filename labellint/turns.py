"""Turns: the chat turns in a Batch's rows, found from the role headers of `facts.chat`.

Turns are found in the flat token arrays with vectorised comparisons: candidate starts where a
header's first id occurs (one pass over the ids per distinct first id, shared by the roles),
narrowed by one comparison per header token at those few indices. Everything after that is work
on turn arrays (where each turn's header, core and extent end), never on every token: per-turn
counts of a token mask are one `np.add.reduceat` over the turns' edges, and the per-token views
(`turn`, `in_header`, ...) are built only when something asks for them.
"""

from __future__ import annotations

import numpy as np

from .batch import Batch, batch_view
from .chat_format import ASSISTANT, Ids
from .ragged import Runs, cached_property, union_sorted


class _Candidates:
    """Where a header's first id occurs, with the ids that follow it there (as far as the
    longest header opening with that id reaches), gathered once for all roles sharing it."""

    def __init__(self, b: Batch, first: int, width: int) -> None:
        self.at = b.where_id(first)
        self.row = b.rows_of(self.at)
        self.room = b.ends[self.row] - self.at
        last = b.n_tokens - 1
        # One row per step after the first id: comparisons along contiguous arrays.
        self.window = b.input_ids[np.minimum(self.at[None, :] + np.arange(width)[:, None], last)]

    def starts(self, seq: Ids) -> np.ndarray:
        """Which candidates start `seq` with all of it inside their row."""
        ok = self.room >= len(seq)
        for k, token in enumerate(seq):  # one comparison per header token, at the candidates
            ok &= self.window[k] == token
        return ok


def spans(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The flat indices of the spans [lo, hi), and the span each belongs to."""
    length = np.maximum(hi - lo, 0)
    owner = np.repeat(np.arange(lo.size), length)
    before = np.cumsum(length) - length
    index = np.arange(int(length.sum()), dtype=np.int64) + np.repeat(lo - before, length)
    return index, owner


class Turns:
    """The turns of a batch's chat rows, found from the role headers in `facts.chat`.

    A turn runs from its header to the next header or the row's end; tokens before a row's first
    header (BOS) belong to no turn. Per turn (flat indices): `start`, `core_end` (the header
    without trailing whitespace ends there), `header_end`, `end` (one past its last token),
    `row`, `role`, `assistant`, `stop` (its first turn-end token, -1 when it has none). Per
    token, on demand: `turn` (-1 outside), `in_header`, `in_core`, `content` (real tokens after
    the header).
    """

    def __init__(self, b: Batch) -> None:
        fmt = b.facts.chat
        self.b = b
        self.cache: dict = {}
        starts, rows, roles, full_len, core_len = [], [], [], [], []
        width: dict[int, int] = {}
        for role, full in fmt.headers:  # one pass over the ids per distinct first id
            first = fmt.core(role)[0]
            width[first] = max(width.get(first, 0), len(full), len(fmt.core(role)))
        candidates = {first: _Candidates(b, first, w) for first, w in width.items()}
        for r, role in enumerate(fmt.roles):
            full, core = dict(fmt.headers)[role], fmt.core(role)
            c = candidates[core[0]]
            found = c.starts(core)
            starts.append(c.at[found])
            rows.append(c.row[found])
            roles.append(np.full(starts[-1].size, r))
            full_len.append(np.where(c.starts(full)[found], len(full), len(core)))
            core_len.append(np.full(starts[-1].size, len(core)))
        start = np.concatenate(starts)
        order = np.argsort(start, kind="stable")
        start = start[order]
        keep = np.ones(start.size, dtype=bool)
        keep[1:] = start[1:] != start[:-1]  # two roles' headers at one place: keep the first
        order = order[keep]
        self.start = start[keep]
        self.role = np.concatenate(roles)[order]
        self.assistant = self.role == (fmt.roles.index(ASSISTANT) if ASSISTANT in fmt.roles else -1)
        self.n = int(self.start.size)
        self.row = np.concatenate(rows)[order]
        # A turn runs to the next turn's start or its row's end; its header is cut there too.
        end = b.ends[self.row]
        end[:-1] = np.minimum(end[:-1], self.start[1:])
        self.end = end
        self.header_end = np.minimum(self.start + np.concatenate(full_len)[order], end)
        self.core_end = np.minimum(self.start + np.concatenate(core_len)[order], end)
        self.stop = self._stops(b)

    def _stops(self, b: Batch) -> np.ndarray:
        """Per turn, its first real end-of-turn token after the header; -1 when none."""
        fmt = b.facts.chat
        # A turn end split into pieces (LL407) cannot be told apart from content: use EOS then.
        ends = fmt.turn_end if len(fmt.turn_end) == 1 else b.facts.stop_ids
        stop = np.full(self.n, -1, dtype=np.int64)
        if not ends or not self.n:
            return stop
        at = union_sorted(*[b.where_id(int(i)) for i in dict.fromkeys(ends)])
        owner = np.searchsorted(self.start, at, side="right") - 1
        ok = owner >= 0
        ok[ok] = (at[ok] >= self.header_end[owner[ok]]) & (at[ok] < self.end[owner[ok]])
        at, owner = at[ok], owner[ok]
        at, owner = at[b.real_at(at)], owner[b.real_at(at)]
        first = np.ones(at.size, dtype=bool)
        first[1:] = owner[1:] != owner[:-1]  # sorted, as turns run in token order
        stop[owner[first]] = at[first]
        return stop

    # -- per-turn counts, from the turns' edges ----------------------------------------------

    @cached_property
    def _edges(self) -> np.ndarray:
        """start, core_end, header_end, end of every turn, in flat order (never decreasing)."""
        return np.stack([self.start, self.core_end, self.header_end, self.end], axis=1).ravel()

    def sums(self, runs: Runs) -> np.ndarray:
        """Per turn, how many tokens the runs cover in its core, in the rest of its header and
        in its content: an (n, 3) array, from the runs' cumulative lengths at the turns' edges
        (a binary search per edge, never a pass over the tokens)."""
        if not self.n:
            return np.zeros((0, 3), dtype=np.int64)
        edges = self._edges
        covered = np.zeros(runs.start.size + 1, dtype=np.int64)
        np.cumsum(runs.lengths, out=covered[1:])
        k = np.searchsorted(runs.start, edges)  # runs starting before each edge
        before = covered[k]
        inside = k > 0
        # The last of those runs may reach past the edge: its tokens from the edge on are not
        # before it.
        before[inside] -= np.maximum(runs.stop[k[inside] - 1] - edges[inside], 0)
        return np.diff(before, append=before[-1]).reshape(self.n, 4)[:, :3]

    @cached_property
    def content_count(self) -> np.ndarray:
        """Per turn, its real tokens after the header (its end-of-turn token included)."""
        if not self.b.may_pad:
            return self.end - self.header_end
        return self.sums(self.b.real_runs)[:, 2]

    def span_mask(self, which: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                  keep=None) -> np.ndarray:
        """A token mask, True in [lo, hi) of the turns in `which` (where `keep(index, turn)`)."""
        out = np.zeros(self.b.n_tokens, dtype=bool)
        picked = np.flatnonzero(which)
        if picked.size:
            index, owner = spans(lo[picked], hi[picked])
            if keep is not None:
                index = index[keep(index, picked[owner])]
            out[index] = True
        return out

    def turn_at(self, index: np.ndarray) -> np.ndarray:
        """The turn holding each flat index of `index`; -1 outside every turn."""
        k = np.searchsorted(self.start, index, side="right") - 1
        ok = k >= 0
        ok[ok] = index[ok] < self.end[k[ok]]
        return np.where(ok, k, -1)

    # -- per-token views, for callers that want them whole -----------------------------------

    @cached_property
    def turn(self) -> np.ndarray:
        out = np.full(self.b.n_tokens, -1, dtype=np.int64)
        index, owner = spans(self.start, self.end)
        out[index] = owner
        return out

    @cached_property
    def in_header(self) -> np.ndarray:
        return self.span_mask(np.ones(self.n, dtype=bool), self.start, self.header_end)

    @cached_property
    def in_core(self) -> np.ndarray:
        return self.span_mask(np.ones(self.n, dtype=bool), self.start, self.core_end)

    @cached_property
    def content(self) -> np.ndarray:
        return (self.turn >= 0) & ~self.in_header & self.b.real

    def per_turn(self, mask: np.ndarray) -> np.ndarray:
        """Per turn, how many tokens of `mask` it holds."""
        return self.sums(self.b.runs(mask)).sum(axis=1)

    def spread(self, turn_mask: np.ndarray) -> np.ndarray:
        """Per token, whether its turn is in `turn_mask` (False outside every turn).

        A batch with no turn at all (pretraining text under a chat tokenizer) gives all False.
        """
        return self.span_mask(turn_mask, self.start, self.end)

    def per_row(self, turn_mask: np.ndarray, n_rows: int) -> np.ndarray:
        """Per row, how many turns of `turn_mask` it holds."""
        return np.bincount(self.row[turn_mask], minlength=n_rows)

    @cached_property
    def prompt(self) -> np.ndarray:
        return ~self.assistant


@batch_view
def turns_of(b: Batch) -> Turns | None:
    """The chat turns found from `facts.chat`'s role headers; None without them."""
    if b.facts.chat is None or not b.facts.chat.headers:
        return None
    return Turns(b)


def masking(b: Batch) -> tuple[Turns, dict[str, np.ndarray]]:
    """The turns, and per turn whether it has content, whether any of it is trained, and
    whether its header's markers are trained."""
    t = turns_of(b)
    if "masking" not in t.cache:  # shared by LL601-LL603 and the inference of the facts
        # A turn's content without its end-of-turn token (the stop is real and in the content).
        closed = t.stop >= 0
        trained = b.trained
        sums = t.sums(_trained_runs(b))
        stop_trained = np.zeros(t.n, dtype=bool)
        stop_trained[closed] = trained[t.stop[closed]]
        content = t.sums(b.runs(trained & b.real))[:, 2] if b.may_pad else sums[:, 2]
        t.cache["masking"] = {
            "has_content": t.content_count - closed > 0,
            "trained": content - stop_trained > 0,
            # A mask that runs past an answer's turn end trains the next turn's header and
            # nothing of its content (message-prefix renders under Qwen3's template).
            "header_trained": sums[:, 0] > 0,
        }
    return t, t.cache["masking"]


def _trained_runs(b: Batch) -> Runs:
    """The runs of `b.trained`: the targets' own (cached, shared with the label rules) under
    the model's shift, where the two are one mask."""
    return b.target_runs if b.facts.label_shift == "model" else b.runs(b.trained)


def prompt_rows(b: Batch) -> dict[str, np.ndarray]:
    """Per row: prompt turns with content, those of them whose content is trained, and whether
    some role has both a trained turn (header or content) and a wholly masked one in the row (a
    mask that stopped after the first turn, or ran into the next turn's header).

    A trained header alone does not count as a trained prompt turn here: such rows mask their
    prompts' contents, which is what the inference of assistant_only_loss reads.
    """
    t, info = masking(b)
    if "prompt_rows" in t.cache:
        return t.cache["prompt_rows"]
    prompt = t.prompt & info["has_content"]
    trained = prompt & info["trained"]
    touched = prompt & (info["trained"] | info["header_trained"])
    masked = prompt & ~touched
    n_roles = max(len(b.facts.chat.roles), 1)
    key = t.row * n_roles + t.role
    # Only rows with a touched turn can be mixed: they are few, so the set operation is small.
    near = np.zeros(b.n_rows, dtype=bool)
    near[t.row[touched]] = True
    masked &= near[t.row]
    mixed_rows = np.intersect1d(key[touched], key[masked]) // n_roles
    mixed = np.zeros(b.n_rows, dtype=bool)
    mixed[mixed_rows] = True
    t.cache["prompt_rows"] = {"prompts": t.per_row(prompt, b.n_rows),
                              "trained": t.per_row(trained, b.n_rows), "mixed": mixed}
    return t.cache["prompt_rows"]


def rows_with_turn_end(b: Batch) -> np.ndarray:
    """Rows holding an assistant turn closed by its end-of-turn token: LL603 judges their stop."""
    t = turns_of(b)
    return t.per_row(t.assistant & (t.stop >= 0), b.n_rows) > 0


def answer_unfinished(b: Batch) -> np.ndarray:
    """Per row with chat turns: its last real token lies in a prompt turn, in a header, or in
    an assistant turn with no content yet (the answer cut away before or as it began)."""
    t = turns_of(b)
    last = b.last_real_index
    ok = last >= 0
    turn = np.full(b.n_rows, -1, dtype=np.int64)
    turn[ok] = t.turn_at(last[ok])
    has = turn >= 0  # rows whose last token is before every header are not chat rows
    out = np.zeros(b.n_rows, dtype=bool)
    at = turn[has]
    content = t.content_count[at] > 0
    out[has] = ~t.assistant[at] | (last[has] < t.header_end[at]) | ~content
    return out
