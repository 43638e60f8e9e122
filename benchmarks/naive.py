"""The checker labellint replaces: the same rules written the usual way, row by row in Python.

This is what data-validation scripts in fine-tuning repos look like: iterate the rows, turn
each into Python lists, loop over the tokens. It is the baseline the benchmark compares with.
"""

from __future__ import annotations

from collections import Counter

IGNORE = -100


def check_row(ids: list[int], labels: list[int], mask: list[int], *, pad: int, bos: int,
              eos: int, vocab: int, hits: Counter) -> None:
    if not (len(ids) == len(labels) == len(mask)):
        hits["LL001"] += 1
        return
    supervised = [i for i, label in enumerate(labels) if label != IGNORE and i > 0]
    if not supervised:
        hits["LL101"] += 1
    elif len(supervised) < 2:
        hits["LL105"] += 1
    if any(m == 0 and label != IGNORE for m, label in zip(mask, labels)):
        # padding carries a label, or attention is off over a target
        hits["LL103"] += 1
    if any(label != IGNORE and (label < 0 or label >= vocab) for label in labels):
        hits["LL104"] += 1
    if any(t < 0 or t >= vocab for t in ids):
        hits["LL405"] += 1
    real = [t for t, m in zip(ids, mask) if m]
    if len(real) >= 2 and real[0] == bos and real[1] == bos:
        hits["LL401"] += 1
    if real and real[0] != bos:
        hits["LL402"] += 1
    if eos in real and not any(labels[i] == eos for i in supervised):
        hits["LL403"] += 1
    if real and real[-1] != eos:
        hits["LL404"] += 1
    same = sum(1 for i in supervised if labels[i] == ids[i])
    nxt = sum(1 for i in supervised if i + 1 < len(ids) and labels[i] == ids[i + 1])
    if supervised and nxt > same:
        hits["LL301"] += 1


def check_table(table, *, pad: int = 0, bos: int = 1, eos: int = 2, vocab: int = 32_000,
                batch_size: int = 1000) -> Counter:
    hits: Counter = Counter()
    for batch in table.to_batches(max_chunksize=batch_size):
        columns = batch.to_pydict()
        for ids, labels, mask in zip(columns["input_ids"], columns["labels"],
                                     columns["attention_mask"]):
            check_row(ids, labels, mask, pad=pad, bos=bos, eos=eos, vocab=vocab, hits=hits)
    return hits
