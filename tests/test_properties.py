"""Property tests for the engine: correct batches are clean, each planted defect is found at
exactly its row, and how a dataset is chunked never changes the report."""

from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import labellint
from labellint import engine

V, PAD, BOS, EOS, IGNORE = 64, 0, 1, 2, -100
FACTS = dict(pad_id=PAD, bos_id=BOS, eos_id=EOS, vocab_size=V, add_bos=True, max_length=10**6)
CONTENT = st.integers(3, V - 1)
settings.register_profile("labellint", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("labellint")


@st.composite
def examples(draw, min_rows=1, max_rows=6):
    """Rows as a correct SFT pipeline builds them: BOS + prompt (masked) + response + EOS."""
    n = draw(st.integers(min_rows, max_rows))
    rows = []
    for _ in range(n):
        prompt = draw(st.lists(CONTENT, min_size=1, max_size=8))
        response = draw(st.lists(CONTENT, min_size=2, max_size=8))
        ids = [BOS, *prompt, *response, EOS]
        labels = [IGNORE] * (1 + len(prompt)) + [*response, EOS]
        rows.append({"input_ids": ids, "labels": labels, "attention_mask": [1] * len(ids),
                     "prompt_end": 1 + len(prompt)})
    return rows


def pad_right(rows):
    """A collator's batch: right padding with the pad id, labels -100, attention 0."""
    width = max(len(r["input_ids"]) for r in rows)
    batch = {"input_ids": [], "labels": [], "attention_mask": []}
    for r in rows:
        extra = width - len(r["input_ids"])
        batch["input_ids"].append(r["input_ids"] + [PAD] * extra)
        batch["labels"].append(r["labels"] + [IGNORE] * extra)
        batch["attention_mask"].append(r["attention_mask"] + [0] * extra)
    return batch


def codes(report):
    return {f.code for f in report.findings}


@given(examples())
def test_correct_batch_is_clean(rows):
    report = labellint.check(pad_right(rows), **FACTS)
    assert report.findings == [], str(report)


@given(examples(), st.sampled_from(["list", "numpy", "torch"]))
def test_correct_batch_is_clean_in_every_container(rows, container):
    batch = pad_right(rows)
    if container == "numpy":
        batch = {k: np.asarray(v, dtype=np.int32) for k, v in batch.items()}
    elif container == "torch":
        torch = pytest.importorskip("torch")
        batch = {k: torch.tensor(v) for k, v in batch.items()}
    assert labellint.check(batch, **FACTS).findings == []


# Each planter breaks one row the way a real pipeline does; the row is still unpadded.
def _mask_everything(r):
    r["labels"] = [IGNORE] * len(r["labels"])


def _invalid_label(r):
    r["labels"][r["prompt_end"]] = -1


def _hide_response(r):
    r["attention_mask"][r["prompt_end"]] = 0


def _shift_by_hand(r):
    end = len(r["input_ids"]) - 1
    for t in range(r["prompt_end"] - 1, end):
        r["labels"][t] = r["input_ids"][t + 1]
    r["labels"][end] = IGNORE


def _label_from_elsewhere(r):
    t = r["prompt_end"]
    ids = r["input_ids"]
    r["labels"][t] = next(x for x in range(3, V) if x not in (ids[t], ids[t + 1]))


def _double_bos(r):
    for key, value in (("input_ids", BOS), ("labels", IGNORE), ("attention_mask", 1)):
        r[key].insert(0, value)
    r["prompt_end"] += 1


def _drop_bos(r):
    for key in ("input_ids", "labels", "attention_mask"):
        del r[key][0]
    r["prompt_end"] -= 1


def _mask_eos(r):
    r["labels"][-1] = IGNORE


def _drop_eos(r):
    for key in ("input_ids", "labels", "attention_mask"):
        del r[key][-1]


def _out_of_vocab(r):
    r["input_ids"][1] = V + 3


def _few_targets(r):
    r["labels"][:-1] = [IGNORE] * (len(r["labels"]) - 1)


PLANTERS = {
    "LL101": _mask_everything,
    "LL104": _invalid_label,
    "LL105": _few_targets,
    "LL201": _hide_response,
    "LL301": _shift_by_hand,
    "LL303": _label_from_elsewhere,
    "LL401": _double_bos,
    "LL402": _drop_bos,
    "LL403": _mask_eos,
    "LL404": _drop_eos,
    "LL405": _out_of_vocab,
}


@given(examples(min_rows=2), st.data())
@pytest.mark.parametrize("code", sorted(PLANTERS))
def test_planted_defect_is_found_at_exactly_its_row(code, rows, data):
    i = data.draw(st.integers(0, len(rows) - 1), label="row")
    PLANTERS[code](rows[i])
    report = labellint.check(pad_right(rows), **FACTS)
    assert codes(report) == {code}, str(report)
    (finding,) = report.findings
    assert finding.rows == (i,) and finding.count_rows == 1


def padded_row(batch, data):
    """A row of the batch that has padding, drawn by hypothesis; None if no row has any."""
    padded = [i for i, m in enumerate(batch["attention_mask"]) if 0 in m]
    return data.draw(st.sampled_from(padded), label="row") if padded else None


@given(examples(min_rows=2), st.data())
def test_labels_left_on_padding_are_found_at_exactly_their_row(rows, data):
    batch = pad_right(rows)
    assume((i := padded_row(batch, data)) is not None)
    batch["labels"][i] = [PAD if m == 0 else x
                          for x, m in zip(batch["labels"][i], batch["attention_mask"][i])]
    report = labellint.check(batch, **FACTS)
    assert codes(report) == {"LL103"}, str(report)
    assert report.findings[0].rows == (i,)


@given(examples(min_rows=2), st.data())
def test_left_padding_is_found_at_exactly_its_row(rows, data):
    batch = pad_right(rows)
    assume((i := padded_row(batch, data)) is not None)
    extra = batch["attention_mask"][i].count(0)
    for key in batch:
        batch[key][i] = batch[key][i][-extra:] + batch[key][i][:-extra]
    report = labellint.check(batch, **FACTS)
    assert codes(report) == {"LL202"}, str(report)
    assert report.findings[0].rows == (i,)


@given(examples(min_rows=2), st.data())
def test_length_mismatch_is_found_at_exactly_its_row(rows, data):
    i = data.draw(st.integers(0, len(rows) - 1), label="row")
    rows[i]["labels"] = rows[i]["labels"][:-1]
    report = labellint.check([{k: r[k] for k in ("input_ids", "labels")} for r in rows], **FACTS)
    assert codes(report) == {"LL001"}, str(report)
    assert report.findings[0].rows == (i,)


@given(examples(min_rows=1, max_rows=30), st.lists(st.integers(0, len(PLANTERS) - 1),
       max_size=6), st.integers(1, 7))
def test_chunking_never_changes_the_report(rows, broken, chunk_rows):
    planters = list(PLANTERS.values())
    for k, p in enumerate(broken):
        planters[p](rows[k % len(rows)])
    dataset = [{k: r[k] for k in ("input_ids", "labels", "attention_mask")} for r in rows]
    whole = labellint.check(dataset, **FACTS).to_dict()
    chunked = labellint.check(dataset, chunk_rows=chunk_rows, **FACTS).to_dict()
    assert chunked == whole


@given(examples(min_rows=1, max_rows=30), st.integers(1, 7), st.integers(2, 12))
def test_chunking_never_changes_inferred_facts(rows, chunk_rows, sample_rows):
    """Facts are inferred from the same first rows however the source is chunked."""
    dataset = [{k: r[k] for k in ("input_ids", "labels", "attention_mask")} for r in rows]
    with mock.patch.object(engine, "SAMPLE_ROWS", sample_rows):
        whole = labellint.check(dataset).to_dict()
        assert labellint.check(dataset, chunk_rows=chunk_rows).to_dict() == whole


@given(examples())
def test_correct_batch_with_pad_equal_to_eos_is_clean(rows):
    """pad_token = eos_token, padding masked by attention_mask: the real EOS keeps its label."""
    batch = pad_right(rows)
    batch["input_ids"] = [[EOS if m == 0 else x for x, m in zip(ids, mask)]
                          for ids, mask in zip(batch["input_ids"], batch["attention_mask"])]
    report = labellint.check(batch, **dict(FACTS, pad_id=EOS))
    assert report.findings == [], str(report)


def shift_for_the_dataset(row):
    """torchtune's convention: labels[t] is the target of position t, i.e. input_ids[t+1]."""
    row["labels"] = row["labels"][1:] + [IGNORE]


@given(examples())
def test_correct_pre_shifted_batch_is_clean_under_label_shift_dataset(rows):
    for r in rows:
        shift_for_the_dataset(r)
    report = labellint.check(pad_right(rows), **FACTS, label_shift="dataset")
    assert report.findings == [], str(report)


@given(examples(min_rows=2), st.data())
def test_unshifted_row_under_label_shift_dataset_is_found_at_exactly_its_row(rows, data):
    i = data.draw(st.integers(0, len(rows) - 1), label="row")
    for k, r in enumerate(rows):
        if k != i:
            shift_for_the_dataset(r)
    report = labellint.check(pad_right(rows), **FACTS, label_shift="dataset")
    assert codes(report) == {"LL302"}, str(report)
    assert report.findings[0].rows == (i,)


@given(examples(min_rows=4, max_rows=12))
def test_correct_batch_is_clean_with_every_fact_inferred(rows):
    """No tokenizer, no facts: what the data shows must not turn into a false finding."""
    report = labellint.check(pad_right(rows))
    assert report.findings == [], str(report)
    (facts,) = report.facts.values()
    assert (facts.bos_id, facts.eos_id) == (BOS, EOS)
