"""How each token looks to the loss, and token strips that show it at a glance.

One classification serves `labellint show` and the report's example strips, so both tell the
states apart the same way. A token is:

- trained: the loss uses its label (a target);
- masked: content whose label is ignore_index (a prompt, a system turn);
- padding: what `Batch.is_pad` calls padding;
- attention-off: attention_mask == 0 on content that is not padding (usually a mistake).

A padding or attention-off token may be trained too (the mistakes LL103 and LL201 find), so the
state comes with a separate `target` flag. Special tokens (BOS, EOS, pad, end of turn, the
tokenizer's own) are shown by name, packed-sequence starts (position_ids back at 0) get a
boundary, and a label is shown where it is not the token the convention expects there.

The engine keeps a `TokenWindow` of at most WINDOW tokens per example row it records (at most
max_examples rows per finding), so the report can draw the row without the data at hand.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np
from rich.cells import cell_len
from rich.text import Text

from .batch import Batch
from .columns import COLUMNS

if TYPE_CHECKING:
    from .report import SourceResult

TRAINED, MASKED, PADDING, HIDDEN = "trained", "masked", "padding", "attention-off"
STATES = (TRAINED, MASKED, PADDING, HIDDEN)
WINDOW = 24       # tokens kept per example row
EDGE = 8          # of which, for a row-level finding: the row's start, its first target, its end
CONTEXT = 3       # tokens decoded before each token, so it reads as it does in place
MAX_CHIP = 24     # characters of one token's text in a strip

# Plain text marks each state with brackets: visibility outside, training inside, e.g. `{[x]}`
# for a padding token with a label. The terminal shows the same with colours instead.
PLAIN_MARKS = {PADDING: ("{", "}"), HIDDEN: ("(", ")")}
STYLES = {
    TRAINED: "black on green3",
    MASKED: "grey70",
    PADDING: "grey42 on grey15",
    HIDDEN: "black on gold3",
}
TRAINED_BUT_HIDDEN = "bold white on red3"  # a target on padding or behind attention 0
SPECIAL_STYLE = "bold"
LABEL_STYLE = "bold red"
BOUNDARY = "‖"
GAP = "…"


# -- classification ---------------------------------------------------------------------------


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


# -- decoding ---------------------------------------------------------------------------------


def _special_ids(tok: Any) -> dict[int, str]:
    ids = set(getattr(tok, "all_special_ids", ()) or ())
    added = getattr(tok, "added_tokens_decoder", {}) or {}
    ids |= {i for i, t in added.items() if getattr(t, "special", False)}
    names = tok.convert_ids_to_tokens(sorted(ids))
    return dict(zip(sorted(ids), names))


def decode(tok: Any, rows: Sequence[Sequence[int]]) -> list[list[str | None]]:
    """Each token's text as it reads in place; None for an id outside the vocabulary.

    A token decoded alone loses SentencePiece's leading space and splits multi-byte characters,
    so each is decoded after up to CONTEXT tokens before it, less their text. Every row is
    decoded in two batch calls; the per-token Python here runs over one shown row or a few
    24-token windows, never a dataset.
    """
    size = len(tok)
    specials = _special_ids(tok)
    before, upto, where = [], [], []
    for r, ids in enumerate(rows):
        plain = [i for i in ids if 0 <= i < size and i not in specials]  # context only
        k = 0
        for j, i in enumerate(ids):
            if 0 <= i < size and i not in specials:
                ctx = plain[max(k - CONTEXT, 0) : k]
                before.append(ctx)
                upto.append(ctx + [i])
                where.append((r, j))
                k += 1
    out: list[list[str | None]] = [
        [specials.get(i) if i in specials else None for i in ids] for ids in rows]
    if where:
        kw = {"skip_special_tokens": False, "clean_up_tokenization_spaces": False}
        heads, fulls = tok.batch_decode(before, **kw), tok.batch_decode(upto, **kw)
        for (r, j), head, full in zip(where, heads, fulls):
            alone = full[len(head):] if full.startswith(head) else None
            out[r][j] = alone if alone is not None else tok.decode([rows[r][j]], **kw)
    return out


def with_texts(w: TokenWindow, texts: Sequence[str | None],
               label_texts: Sequence[str | None] | None, specials: dict[int, str]) -> TokenWindow:
    """The window with decoded texts; the tokenizer's special tokens named."""
    special = tuple(specials.get(i, s) for i, s in zip(w.ids, w.special))
    return replace(w, texts=tuple(texts), special=special,
                   label_texts=None if label_texts is None else tuple(label_texts))


def decode_window(tok: Any, w: TokenWindow) -> TokenWindow:
    return decode_windows(tok, [w])[0]


def decode_windows(tok: Any, windows: Sequence[TokenWindow]) -> list[TokenWindow]:
    """Decode many windows (and their shown labels) in one go."""
    if not windows:
        return []
    specials = _special_ids(tok)
    texts = decode(tok, [w.ids for w in windows])
    size = len(tok)
    labels = [[lab if shown and 0 <= lab < size else -1 for lab, shown in
               zip(w.labels, w.label_shown)] if w.labels is not None else [] for w in windows]
    # Labels stand alone: the label differs from the token there, so there is no context.
    flat = [lab for row in labels for lab in row if lab >= 0]
    kw = {"skip_special_tokens": False, "clean_up_tokenization_spaces": False}
    decoded = iter(specials.get(i) or t for i, t in
                   zip(flat, tok.batch_decode([[i] for i in flat], **kw) if flat else []))
    label_texts = [[next(decoded) if lab >= 0 else None for lab in row] if w.labels is not None
                   else None for row, w in zip(labels, windows)]
    return [with_texts(w, t, lt, specials) for w, t, lt in zip(windows, texts, label_texts)]


def decode_results(tok: Any, results: list[SourceResult]) -> list[SourceResult]:
    """Findings whose example windows carry decoded text (api.check, given a tokenizer)."""
    windows = [w for s in results for f in s.findings for w in f.windows]
    if not windows:
        return results
    decoded = iter(decode_windows(tok, windows))
    return [replace(s, findings=[replace(f, windows=tuple(next(decoded) for _ in f.windows))
                                 for f in s.findings]) for s in results]


# -- drawing ----------------------------------------------------------------------------------


def visible(text: str) -> str:
    """Whitespace and control characters made visible; long texts cut."""
    out = []
    for ch in text:
        if ch == " ":
            out.append("·")
        elif ch == "\n":
            out.append("↵")
        elif ch == "\t":
            out.append("⇥")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    s = "".join(out) or "∅"
    return s if len(s) <= MAX_CHIP else s[: MAX_CHIP - 1] + "…"


def token_text(w: TokenWindow, k: int) -> str:
    if w.special[k] is not None:
        return w.special[k]
    if w.texts is not None and w.texts[k] is not None:
        return visible(w.texts[k])
    return str(w.ids[k])


def label_text(w: TokenWindow, k: int) -> str | None:
    """The label, where it is not the token the convention expects there."""
    if w.label_shown is None or not w.label_shown[k]:
        return None
    if w.label_texts is not None and w.label_texts[k] is not None:
        return visible(w.label_texts[k])
    return str(w.labels[k])


@dataclass(frozen=True)
class Chip:
    text: Text
    index: int  # the row position of the token it shows, or of the token it precedes
    hit: bool = False
    newline_before: bool = False
    newline_after: bool = False


def chip(w: TokenWindow, k: int, *, color: bool, edges: tuple[str, str] = ("", "")) -> Text:
    """One token: text, its label where it differs, and its state as a colour.

    Plain text has no colour: `chips` passes the brackets that open and close the runs of
    tokens in one state (`edges`), and a lone chip gets its own.
    """
    state, trained = w.states[k], w.target[k]
    core = token_text(w, k)
    label = label_text(w, k)
    odd = f"@{w.position_ids[k]}" if w.position_odd is not None and w.position_odd[k] else ""
    if color:
        style = TRAINED_BUT_HIDDEN if trained and state in (PADDING, HIDDEN) else STYLES[state]
        if w.special[k] is not None:
            style += " " + SPECIAL_STYLE
        t = Text(core, style=style)
        if label is not None:
            t.append("→" + label, style=LABEL_STYLE)
        t.append(odd, style=LABEL_STYLE)
        return t
    return Text(edges[0] + core + ("→" + label if label is not None else "") + odd + edges[1])


def _plain_edges(w: TokenWindow) -> list[tuple[str, str]]:
    """Brackets for plain text: `{...}` padding, `(...)` attention off, `[...]` trained inside.

    A run is broken where the window skips tokens or a packed sequence starts.
    """
    n = len(w)
    joined = [k > 0 and w.index[k] == w.index[k - 1] + 1 and not w.boundary[k] for k in range(n)]
    out = []
    for k in range(n):  # one window: a row shown, or 24 tokens
        same_prev = joined[k] and w.states[k - 1] == w.states[k]
        same_next = k + 1 < n and joined[k + 1] and w.states[k + 1] == w.states[k]
        left, right = PLAIN_MARKS.get(w.states[k], ("", ""))
        inner_prev = same_prev and w.target[k - 1] == w.target[k]
        inner_next = same_next and w.target[k + 1] == w.target[k]
        open_ = ("" if same_prev else left) + ("[" if w.target[k] and not inner_prev else "")
        close = ("]" if w.target[k] and not inner_next else "") + ("" if same_next else right)
        out.append((open_, close))
    return out


def chips(w: TokenWindow, *, color: bool, newlines: bool = False) -> list[Chip]:
    """A window's tokens as chips, with `…` where it skips tokens and `‖` at sequence starts.

    newlines: start a new line at each sequence start and after each token that ends a line
    of text (show's full row; a strip stays on as few lines as it can).
    """
    out: list[Chip] = []
    hits = set(w.hits)
    gap = Text(GAP, style="dim" if color else "")
    edges = [("", "")] * len(w) if color else _plain_edges(w)
    if w.index and w.index[0] > 0:
        out.append(Chip(gap, w.index[0]))
    for k, i in enumerate(w.index):
        if k and i != w.index[k - 1] + 1:
            out.append(Chip(gap, i))
        if w.boundary[k]:
            out.append(Chip(Text(BOUNDARY, style="bold magenta" if color else ""), i,
                            newline_before=newlines))
        text = w.texts[k] if w.texts is not None else None
        out.append(Chip(chip(w, k, color=color, edges=edges[k]), i, hit=i in hits,
                        newline_after=newlines and text is not None and text.endswith("\n")))
    if w.index and w.index[-1] < w.length - 1:
        out.append(Chip(gap, w.index[-1]))
    return out


def fold(pieces: list[Chip], *, width: int, color: bool, first: str | None = None,
         rest: str | Callable[[int], str] = "") -> Text:
    """Chips laid out in lines of at most `width` cells, a caret line under flagged chips.

    `first` prefixes the first line; `rest` the others (all of them without `first`), or
    gives a line's prefix from the row position of its first chip (show's token index).
    """
    prefix_of = rest if callable(rest) else (lambda _: rest)
    lines: list[tuple[Text, Text]] = []
    line, carets, used = Text(), Text(), 0
    room = width

    def flush() -> None:
        nonlocal line, carets, used
        if used:
            lines.append((line, carets))
        line, carets, used = Text(), Text(), 0

    for piece in pieces:
        size = cell_len(piece.text.plain)
        if used and (piece.newline_before or used + 1 + size > room):
            flush()
        if not used:
            prefix = first if first is not None and not lines else prefix_of(piece.index)
            line.append(prefix, style="dim" if color else "")
            carets.append(" " * cell_len(prefix))
            room = max(width - cell_len(prefix), 20)
        else:
            line.append(" ")
            carets.append(" ")
            used += 1
        line.append_text(piece.text)
        carets.append(("^" if piece.hit else " ") * size)
        used += size
        if piece.newline_after:
            flush()
    flush()
    out = Text()
    for line, caret in lines:
        out.append_text(line)
        out.append("\n")
        if caret.plain.strip():
            out.append(caret.plain.rstrip() + "\n", style="bold red" if color else "")
    return out


def legend(windows: Sequence[TokenWindow], *, color: bool) -> Text:
    """What the marks mean (those that `windows` use): coloured samples or the brackets."""
    t = Text()
    t.append("tokens: ", style="dim" if color else "")
    for state in STATES:
        w = TokenWindow(row=0, length=1, index=(0,), ids=(0,), states=(state,),
                        target=(state == TRAINED,), special=(None,), boundary=(False,),
                        texts=(state,))
        edges = ("", "") if color else _plain_edges(w)[0]
        t.append_text(chip(w, 0, color=color, edges=edges))
        t.append(" ")
    t.append_text(Text("<special>", style=SPECIAL_STYLE if color else ""))
    marks = [
        (any(any(w.boundary) for w in windows), f"{BOUNDARY} sequence start"),
        (any(len(w) < w.length for w in windows), f"{GAP} not shown"),
        (any(w.label_shown and any(w.label_shown) for w in windows), "x→y label y on input x"),
        (any(w.position_odd and any(w.position_odd) for w in windows),
         "@n position id that does not count up"),
        (any(w.hits for w in windows), "^ flagged"),
    ]
    if not color and any(t and s in (PADDING, HIDDEN) for w in windows
                         for t, s in zip(w.target, w.states)):
        marks.append((True, "{[x]} padding with a label"))
    for used, mark in marks:
        if used:
            t.append("  " + mark, style="dim" if color else "")
    t.append("\n")
    return t
