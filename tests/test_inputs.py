"""What labellint accepts, and the one clear sentence it gives for what it cannot read."""

import numpy as np
import pyarrow as pa
import pytest

import labellint
from labellint import LabelLintError

FACTS = dict(pad_id=0, bos_id=1, eos_id=2, vocab_size=50)
GOOD = {
    "input_ids":      [[1, 7, 8, 9, 2, 0], [1, 7, 9, 2, 0, 0]],
    "attention_mask": [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]],
    "labels":         [[-100, -100, 8, 9, 2, -100], [-100, -100, 9, 2, -100, -100]],
}
BAD = {  # labels left on padding in row 1
    "input_ids":      [[1, 7, 8, 9, 2, 0], [1, 7, 9, 2, 0, 0]],
    "attention_mask": [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]],
    "labels":         [[-100, -100, 8, 9, 2, -100], [-100, -100, 9, 2, 0, 0]],
}


def summary(report):
    return [(f.code, f.rows, f.positions, f.count_rows, f.count_tokens) for f in report.findings]


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint16])
def test_numpy_dtypes_give_the_same_findings_as_lists(dtype):
    as_numpy = {k: np.asarray(v) for k, v in BAD.items()}
    as_numpy["input_ids"] = as_numpy["input_ids"].astype(dtype)
    assert summary(labellint.check(as_numpy, **FACTS)) == summary(labellint.check(BAD, **FACTS))


def test_bool_and_float_attention_masks_read_as_zero_one():
    for mask_dtype in (bool, np.float32):
        batch = dict(BAD, attention_mask=np.asarray(BAD["attention_mask"], dtype=mask_dtype))
        assert summary(labellint.check(batch, **FACTS)) == summary(labellint.check(BAD, **FACTS))


def test_torch_tensors_and_batch_encoding_give_the_same_findings():
    torch = pytest.importorskip("torch")
    from transformers import BatchEncoding

    tensors = {k: torch.tensor(v) for k, v in BAD.items()}
    expected = summary(labellint.check(BAD, **FACTS))
    assert summary(labellint.check(tensors, **FACTS)) == expected
    assert summary(labellint.check(BatchEncoding(tensors), **FACTS)) == expected


def test_list_of_row_dicts_and_arrow_table_match_the_batch():
    rows = [{k: BAD[k][i] for k in BAD} for i in range(2)]
    table = pa.table({k: pa.array(v, type=pa.list_(pa.int32())) for k, v in BAD.items()})
    expected = summary(labellint.check(BAD, **FACTS))
    assert summary(labellint.check(rows, **FACTS)) == expected
    assert summary(labellint.check(table, **FACTS)) == expected


def test_a_single_unbatched_row_is_one_row():
    row = {k: v[1] for k, v in BAD.items()}
    report = labellint.check(row, **FACTS)
    assert [(f.code, f.rows) for f in report.findings] == [("LL103", (0,))]


def test_iterable_of_batches_numbers_rows_across_batches():
    report = labellint.check(iter([GOOD, BAD]), **FACTS)
    assert [(f.code, f.rows) for f in report.findings] == [("LL103", (3,))]
    assert report.to_dict()["summary"]["sources"]["batches"]["batches"] == 2


def test_dataset_is_read_through_arrow():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({k: v for k, v in BAD.items()})
    assert summary(labellint.check(ds, **FACTS)) == summary(labellint.check(BAD, **FACTS))
    shuffled = ds.select([1, 0])  # an indices mapping, as after shuffle()
    assert [f.rows for f in labellint.check(shuffled, **FACTS).findings] == [(0,)]


def test_dataset_dict_checks_each_split():
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict(train=datasets.Dataset.from_dict(BAD),
                              test=datasets.Dataset.from_dict(GOOD))
    report = labellint.check(dd, **FACTS)
    assert [f.source for f in report.findings] == ["dataset[train]"]
    assert set(report.facts) == {"dataset[train]", "dataset[test]"}


def test_columns_can_be_renamed():
    renamed = {"tokens": BAD["input_ids"], "mask": BAD["attention_mask"],
               "targets": BAD["labels"]}
    report = labellint.check(renamed, columns={"input_ids": "tokens", "attention_mask": "mask",
                                               "labels": "targets"}, **FACTS)
    assert summary(report) == summary(labellint.check(BAD, **FACTS))


def test_ragged_rows_are_checked_without_padding():
    ragged = {"input_ids": [[1, 7, 8, 2], [1, 9, 2]], "labels": [[-100, 7, 8, 2], [-100, 9, 2]]}
    assert labellint.check(ragged, **FACTS).findings == []


# -- edge cases -------------------------------------------------------------------------------


def test_empty_and_one_token_rows():
    batch = {"input_ids": [[], [1], [1, 7, 8, 2]], "labels": [[], [-100], [-100, 7, 8, 2]]}
    report = labellint.check(batch, **FACTS)
    masked = next(f for f in report.findings if f.code == "LL101")
    assert masked.rows == (0, 1)


def test_all_padding_row_is_fully_masked_and_nothing_else():
    batch = {"input_ids": [[0, 0, 0], [1, 5, 2]], "attention_mask": [[0, 0, 0], [1, 1, 1]],
             "labels": [[-100, -100, -100], [-100, 5, 2]]}
    report = labellint.check(batch, **FACTS)
    assert [(f.code, f.rows) for f in report.findings] == [("LL101", (0,))]


def test_without_labels_label_rules_are_skipped_with_the_reason():
    report = labellint.check({"input_ids": [[1, 5, 6, 2]]}, **FACTS)
    skipped = report.to_dict()["summary"]["sources"]["batch"]["skipped"]
    assert skipped["LL103"] == "no labels column"
    assert report.findings == []


def test_without_attention_mask_padding_is_the_trailing_pad_run():
    batch = {"input_ids": [[1, 5, 6, 2, 0, 0]], "labels": [[-100, 5, 6, 2, 0, 0]]}
    report = labellint.check(batch, **FACTS)
    assert [(f.code, f.positions) for f in report.findings] == [("LL103", ((4, 5),))]


def test_without_attention_mask_pad_equal_to_eos_keeps_the_real_eos():
    batch = {"input_ids": [[1, 5, 6, 2, 2, 2]], "labels": [[-100, 5, 6, 2, 2, 2]]}
    report = labellint.check(batch, **dict(FACTS, pad_id=2))
    assert [(f.code, f.positions) for f in report.findings] == [("LL103", ((4, 5),))]


def test_without_attention_mask_and_pad_id_padding_rules_are_skipped():
    report = labellint.check({"input_ids": [[1, 5, 2]], "labels": [[-100, 5, 2]]}, eos_id=2)
    skipped = report.to_dict()["summary"]["sources"]["batch"]["skipped"]
    assert "LL103" in skipped and "LL103" not in {f.code for f in report.findings}


# -- bad input: one sentence, a LabelLintError, never a numpy traceback -----------------------


@pytest.mark.parametrize("source, message", [
    ({}, "no 'input_ids' column"),
    ({"tokens": [[1, 2]]}, "no 'input_ids' column (found: 'tokens')"),
    ({"input_ids": []}, "no rows to check"),
    ([], "no rows to check"),
    ({"input_ids": [[1, 2]], "labels": [[0.5, 1.0]]}, "labels holds floating-point values"),
    ({"input_ids": [["a", "b"]]}, "input_ids holds string values"),
    ({"input_ids": "hello"}, "input_ids is a string"),
    ({"input_ids": [[1, 2], [3]], "labels": [[1, 2]]}, "labels has 1 rows but input_ids has 2"),
    ({"input_ids": [[1, None]]}, "input_ids has 1 null values inside its rows"),
    ({"input_ids": [[1, 2], [None]]}, "input_ids has 1 null values inside its rows"),
    ({"input_ids": [[1, 2], [0.5]]}, "input_ids holds floating-point values"),
    ({"input_ids": [[[1, 2]]]}, "input_ids has 3 dimensions"),
    ({"input_ids": [[1, 2]], "attention_mask": [[0.5, 1]]}, "attention_mask holds"),
    (42, "cannot check a int"),
    ([{"input_ids": [1, 2], "labels": [1, 2]}, {"input_ids": [3]}], "row 1 has no 'labels'"),
])
def test_bad_input_is_one_clear_sentence(source, message):
    with pytest.raises(LabelLintError) as e:
        labellint.check(source)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kwargs, message", [
    (dict(select=["LL8"]), "unknown rule selector 'LL8'"),
    (dict(select=["LL9"]), "judge a training loop's loss, not data"),
    (dict(ignore=["no-such-rule"]), "unknown rule selector 'no-such-rule'"),
    (dict(options={"LL105": {"min": 3}}), "LL105 has no option 'min'"),
    (dict(label_shift="left"), "label_shift must be one of"),
    (dict(pad=0), "unknown fact 'pad'"),
])
def test_bad_settings_are_one_clear_sentence(kwargs, message):
    with pytest.raises(LabelLintError, match=message):
        labellint.check(GOOD, **kwargs)


def test_pyarrow_column_of_strings_is_rejected():
    table = pa.table({"input_ids": [["a", "b"]]})
    with pytest.raises(LabelLintError, match="input_ids holds lists of string"):
        labellint.check(table)


def test_report_is_plain_text_off_a_terminal_and_carried_by_the_error():
    report = labellint.check(BAD, **FACTS)
    assert "\x1b[" not in str(report)
    assert "\nbatch[1]: LL103 (error) labels on padding in 1 row (2 tokens)" in str(report)
    assert not report.ok
    with pytest.raises(LabelLintError) as e:
        report.raise_for_errors()
    assert str(e.value) == str(report)
    labellint.check(GOOD, **FACTS).raise_for_errors()  # clean: nothing raised


def test_report_is_coloured_on_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert "\x1b[" in str(labellint.check(BAD, **FACTS))
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in str(labellint.check(BAD, **FACTS))


def test_a_rule_of_your_own_runs_like_the_built_in_ones():
    """The README's recipe: a predicate over Batch.from_dict, then selected in check()."""
    from labellint import catalog

    @labellint.rule("LL950", "answer-too-long", severity="warning", per="row",
                    requires=("labels",), message="over {max_targets} targets in {rows} rows",
                    fix="split long answers")
    def answer_too_long(b, *, max_targets=2048):
        """Rows whose answer is longer than the model will ever generate."""
        return b.targets_per_row > max_targets

    try:
        batch = labellint.Batch.from_dict({"input_ids": [[1, 5, 2]], "labels": [[-100, 5, 2]]})
        assert answer_too_long(batch, max_targets=1).tolist() == [True]
        report = labellint.check(GOOD, select=["LL950"], options={"LL950": {"max_targets": 1}},
                                 **FACTS)
        assert [(f.code, f.message, f.rows) for f in report.findings] == [
            ("LL950", "over 1 target in 2 rows", (0, 1))]
    finally:
        catalog.remove("LL950")


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32])
def test_negative_ids_in_narrow_dtypes_are_found_whatever_the_vocabulary(dtype):
    ids = np.array([[1, 5, -1, 2]], dtype=dtype)
    labels = np.array([[-100, 5, -1, 2]], dtype=dtype)
    for vocab_size in (100, 128_256):
        report = labellint.check({"input_ids": ids, "labels": labels}, bos_id=1, eos_id=2,
                                 vocab_size=vocab_size)
        found = {f.code: f.rows for f in report.findings}
        assert found.get("LL405") == (0,) and found.get("LL104") == (0,), (vocab_size, found)
