"""The checker labellint replaces: the same rules written the usual way, row by row in Python.

This is what data-validation scripts in fine-tuning repos look like: iterate the rows as Python
lists and walk each row's tokens once, testing every rule at each token. It is the baseline the
benchmark compares with; rows are handed to it as Python lists already (Arrow's `to_pydict`, a
thousand rows at a time), which is faster than iterating a `datasets.Dataset` row by row.
"""

from __future__ import annotations

from collections import Counter

IGNORE = -100


def check_row(ids: list[int], labels: list[int], mask: list[int], *, bos: int, eos: int,
              vocab: int, hits: Counter) -> None:
    if len(labels) != len(ids) or len(mask) != len(ids):
        hits["LL001"] += 1
        return
    walk = _walk(ids, labels, mask, bos=bos, eos=eos, vocab=vocab)
    _count_token_rules(walk, hits)
    _count_row_rules(ids, mask, walk, bos=bos, eos=eos, hits=hits)


def _walk(ids: list[int], labels: list[int], mask: list[int], *, bos: int, eos: int,
          vocab: int) -> dict:
    """One pass over a row's tokens, testing every rule at each token. The state lives in
    locals, not in an object, so that the baseline is as fast as such a loop is written."""
    n = len(ids)
    targets = same = nxt = candidates = 0
    on_padding = hidden_target = invalid = out_of_vocab = eos_trained = False
    mismatch = stray_bos = packed = False
    for i in range(n):
        token, label = ids[i], labels[i]
        following = ids[i + 1] if i + 1 < n else None
        if token < 0 or token >= vocab:
            out_of_vocab = True
        if token == bos and i > 1 and ids[i - 1] != eos:
            stray_bos = True
        if token == eos and following == bos:
            packed = True
        if label == IGNORE:
            continue
        if label < 0 or label >= vocab:
            invalid = True
        if mask[i] == 0:
            on_padding = hidden_target = True
        if i > 0:
            targets += 1
            eos_trained |= label == eos
            stray_bos |= label == bos
        same += label == token
        if following is not None:
            candidates += 1
            nxt += label == following
        if 0 <= label < vocab and label != token and label != following:
            mismatch = True
    return dict(targets=targets, same=same, nxt=nxt, candidates=candidates,
                on_padding=on_padding, hidden_target=hidden_target, invalid=invalid,
                out_of_vocab=out_of_vocab, eos_trained=eos_trained, mismatch=mismatch,
                stray_bos=stray_bos, packed=packed)


def _count_token_rules(walk: dict, hits: Counter) -> None:
    """The rules the token walk decides on its own."""
    targets, nxt = walk["targets"], walk["nxt"]
    hits["LL101"] += targets == 0
    hits["LL105"] += 0 < targets < 2
    hits["LL103"] += walk["on_padding"]
    hits["LL201"] += walk["hidden_target"]
    hits["LL104"] += walk["invalid"]
    hits["LL405"] += walk["out_of_vocab"]
    hits["LL301"] += nxt >= 2 and nxt >= 0.8 * walk["candidates"] and nxt > walk["same"]
    hits["LL303"] += walk["mismatch"]
    hits["LL406"] += walk["stray_bos"]
    hits["LL501"] += walk["packed"]


def _count_row_rules(ids: list[int], mask: list[int], walk: dict, *, bos: int, eos: int,
                     hits: Counter) -> None:
    """The rules about the row's real (unmasked) tokens: its first and last."""
    real = [i for i in range(len(ids)) if mask[i]]
    if not real:
        return
    first, last = ids[real[0]], ids[real[-1]]
    hits["LL401"] += len(real) > 1 and first == bos and ids[real[1]] == bos
    hits["LL202"] += real[0] > 0
    hits["LL404"] += last != eos
    hits["LL403"] += eos in ids and walk["targets"] > 0 and not walk["eos_trained"]


def check_table(table, *, bos: int = 1, eos: int = 2, vocab: int = 32_000,
                batch_size: int = 1000) -> Counter:
    hits: Counter = Counter()
    for batch in table.to_batches(max_chunksize=batch_size):
        columns = batch.to_pydict()
        for ids, labels, mask in zip(columns["input_ids"], columns["labels"],
                                     columns["attention_mask"]):
            check_row(ids, labels, mask, bos=bos, eos=eos, vocab=vocab, hits=hits)
    return hits
