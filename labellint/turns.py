"""Turns: the chat turns in a Batch's rows, found from the role headers of `facts.chat`.

Turns are found in the flat token arrays with vectorised comparisons: candidate starts
where a header's first id occurs, narrowed by one comparison per header token (a loop over the
header's few ids, never over the row's tokens), and per-turn sums with `np.bincount`.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from .batch import Batch, batch_view
from .chat_format import ASSISTANT, Ids

def _find(b: Batch, seq: Ids) -> np.ndarray:
    """Flat indices where `seq` starts with all of it inside one row."""
    at = b.where_id(seq[0])
    at = at[_room(b, at) >= len(seq)]
    for k, token in enumerate(seq[1:], 1):  # one comparison per header token
        at = at[b.input_ids[at + k] == token]
    return at


def _matches(b: Batch, seq: Ids, at: np.ndarray) -> np.ndarray:
    """Whether `seq` starts at each index of `at`."""
    ok = _room(b, at) >= len(seq)
    for k, token in enumerate(seq):
        ok[ok] &= b.input_ids[at[ok] + k] == token
    return ok


def _room(b: Batch, at: np.ndarray) -> np.ndarray:
    """Tokens left in the row from each flat index of `at` (itself included)."""
    return b.ends[b.rows_of(at)] - at


class Turns:
    """The turns of a batch's chat rows, found from the role headers in `facts.chat`.

    A turn runs from its header to the next header or the row's end; tokens before a row's first
    header (BOS) belong to no turn. Per token: `turn` (-1 outside), `in_header`, `in_core`
    (the header without trailing whitespace), `content` (real tokens after the header). Per
    turn: `start`, `row`, `role`, `assistant`, `stop` (flat index of its first turn-end token,
    -1 when it has none).
    """

    def __init__(self, b: Batch) -> None:
        fmt = b.facts.chat
        ids = b.input_ids
        self.cache: dict = {}
        starts, roles, full_len, core_len = [], [], [], []
        for r, role in enumerate(fmt.roles):
            full, core = dict(fmt.headers)[role], fmt.core(role)
            at = _find(b, core)
            starts.append(at)
            roles.append(np.full(at.size, r))
            full_len.append(np.where(_matches(b, full, at), len(full), len(core)))
            core_len.append(np.full(at.size, len(core)))
        order = np.argsort(np.concatenate(starts), kind="stable")
        start = np.concatenate(starts)[order]
        keep = np.ones(start.size, dtype=bool)
        keep[1:] = start[1:] != start[:-1]  # two roles' headers at one place: keep the first
        order = order[keep]
        self.start = start[keep]
        self.role = np.concatenate(roles)[order]
        header_len = np.concatenate(full_len)[order]
        core = np.concatenate(core_len)[order]
        self.assistant = self.role == (fmt.roles.index(ASSISTANT) if ASSISTANT in fmt.roles else -1)
        self.n = int(self.start.size)
        self.row = b.rows_of(self.start)

        # A turn runs to the next turn's start or its row's end: the flat indices of its tokens
        # come from its extent, without a row index per token.
        stop = b.ends[self.row]
        stop[:-1] = np.minimum(stop[:-1], self.start[1:])
        length = stop - self.start
        before = np.cumsum(length) - length
        owner = np.repeat(np.arange(self.n), length)
        offset = np.arange(int(length.sum())) - np.repeat(before, length)
        index = self.start[owner] + offset
        self.turn = np.full(b.n_tokens, -1, dtype=np.int64)
        self.turn[index] = owner
        self.in_header = np.zeros(b.n_tokens, dtype=bool)
        self.in_header[index] = offset < header_len[owner]
        self.in_core = np.zeros(b.n_tokens, dtype=bool)
        self.in_core[index] = offset < core[owner]
        self.content = (self.turn >= 0) & ~self.in_header & b.real

        self.stop = np.full(self.n, -1, dtype=np.int64)
        # A turn end split into pieces (LL407) cannot be told apart from content: use EOS then.
        ends = np.asarray(fmt.turn_end if len(fmt.turn_end) == 1 else b.facts.stop_ids,
                          dtype=ids.dtype)
        is_end = self.content & np.isin(ids, ends)
        at = np.flatnonzero(is_end)
        owner = self.turn[at]  # sorted, as turns run in token order
        first = np.ones(at.size, dtype=bool)
        first[1:] = owner[1:] != owner[:-1]
        self.stop[owner[first]] = at[first]

    def per_turn(self, mask: np.ndarray) -> np.ndarray:
        """Per turn, how many tokens of `mask` it holds."""
        return np.bincount(self.turn[mask & (self.turn >= 0)], minlength=self.n)

    def spread(self, turn_mask: np.ndarray) -> np.ndarray:
        """Per token, whether its turn is in `turn_mask` (False outside every turn).

        A batch with no turn at all (pretraining text under a chat tokenizer) gives all False.
        """
        out = np.zeros(self.turn.size, dtype=bool)
        inside = self.turn >= 0
        out[inside] = turn_mask[self.turn[inside]]
        return out

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
        body = t.content & ~_stop_token(b, t)
        t.cache["masking"] = {
            "has_content": t.per_turn(body) > 0,
            "trained": t.per_turn(body & b.trained) > 0,
            # A mask that runs past an answer's turn end trains the next turn's header and
            # nothing of its content (message-prefix renders under Qwen3's template).
            "header_trained": t.per_turn(t.in_core & b.trained) > 0,
        }
    return t, t.cache["masking"]


def _stop_token(b: Batch, t: Turns) -> np.ndarray:
    out = np.zeros(b.n_tokens, dtype=bool)
    out[t.stop[t.stop >= 0]] = True
    return out


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
    turn[ok] = t.turn[last[ok]]
    has = turn >= 0  # rows whose last token is before every header are not chat rows
    out = np.zeros(b.n_rows, dtype=bool)
    at = turn[has]
    content = t.per_turn(t.content)[at] > 0
    out[has] = ~t.assistant[at] | t.in_header[last[has]] | ~content
    return out
