"""Token strips: a window's tokens drawn as chips, folded into lines, with their legend.

Each chip shows a token's text (special tokens by name), its label where it is not the token
the convention expects, and its state: as a colour on a terminal, as brackets in plain text.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Callable, Sequence

from rich.cells import cell_len
from rich.text import Text

from .window import HIDDEN, MASKED, PADDING, STATES, TRAINED, TokenWindow

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
