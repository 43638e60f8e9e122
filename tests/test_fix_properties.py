"""Properties of `fix`: on correct data it changes nothing; on planted defects it changes exactly
the planted rows, and gives back the correct data."""

import json
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import labellint

FACTS = dict(pad_id=0, bos_id=1, eos_id=2, vocab_size=64, jobs=1)
DEFECTS = ("labels_on_padding", "minus_one", "double_bos")


@st.composite
def datasets(draw):
    """Right-padded SFT rows: BOS, a masked prompt, a trained answer ending with EOS."""
    n = draw(st.integers(1, 12))
    rows = []
    for i in range(n):
        content = draw(st.lists(st.integers(3, 63), min_size=1, max_size=10))
        k = draw(st.integers(0, len(content) - 1))
        ids = [1, *content, 2]
        rows.append({"input_ids": ids, "labels": [-100] * (1 + k) + content[k:] + [2],
                     "attention_mask": [1] * len(ids), "note": f"row {i}"})
    width = max(len(r["input_ids"]) for r in rows) + draw(st.integers(0, 3))
    for r in rows:
        pad = width - len(r["input_ids"])
        r["input_ids"] += [0] * pad
        r["labels"] += [-100] * pad
        r["attention_mask"] += [0] * pad
    return rows


def plant(row, defect):
    """The row with one defect planted, or None when the row cannot hold it."""
    row = {k: list(v) if isinstance(v, list) else v for k, v in row.items()}
    if defect == "labels_on_padding":
        pads = [j for j, m in enumerate(row["attention_mask"]) if m == 0]
        if not pads:
            return None
        for j in pads:
            row["labels"][j] = 0
    elif defect == "minus_one":
        row["labels"] = [-1 if v == -100 and m == 1 else v
                         for v, m in zip(row["labels"], row["attention_mask"])]
    else:
        for name, value in (("input_ids", 1), ("labels", -100), ("attention_mask", 1)):
            row[name].insert(1, value)
    return row


def run_fix(rows):
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "train.parquet"
        pq.write_table(pa.Table.from_pylist(rows), src)
        before = src.read_bytes()
        result = labellint.fix(src, out=Path(tmp) / "fixed.parquet", **FACTS)
        assert src.read_bytes() == before
        fixed = pq.read_table(Path(tmp) / "fixed.parquet").to_pylist()
        changes = json.loads(result.journal.read_text())["changes"]
        return fixed, {c["row"] for c in changes}, result


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets())
def test_fix_changes_nothing_on_correct_data(rows):
    fixed, changed, result = run_fix(rows)

    assert fixed == rows
    assert changed == set()
    assert not any(r.rows for r in result.rules)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets(), st.data())
def test_fix_changes_exactly_the_planted_rows_back_to_correct(rows, data):
    planted, broken = set(), []
    for i, row in enumerate(rows):
        defect = data.draw(st.sampled_from((None, *DEFECTS)))
        bad = plant(row, defect) if defect else None
        if bad is not None:
            planted.add(i)
        broken.append(bad or row)

    fixed, changed, result = run_fix(broken)

    assert changed == planted
    assert fixed == rows
    assert result.exit_code == 0 or {c for c, *_ in result.remaining} <= {"LL105"}
