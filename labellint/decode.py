"""Decoding token windows with a tokenizer, so that strips show text instead of ids."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Sequence

from .window import TokenWindow

if TYPE_CHECKING:
    from .report import SourceResult

CONTEXT = 3       # tokens decoded before each token, so it reads as it does in place


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
