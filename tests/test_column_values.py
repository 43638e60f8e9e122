"""Column values that are not one list of token ids per row: one LabelLintError naming the column
and what was expected, never another exception; ids past int64 refused, not wrapped or rounded."""

import numpy as np
import pytest
import torch

import labellint
from labellint import LabelLintError
from labellint.testing import chatml_tokenizer, tiny_tokenizer

IDS = [[5, 6, 7, 2], [5, 8, 2, 0]]

NOT_COLUMNS = {
    "None": (None, "is None; it must be a list of rows of token ids"),
    "a str": ("5 6 7", "is a string"),
    "an int": (5, "is a single value (5)"),
    "a float": (1.5, "is a single value (1.5)"),
    "a dict": ({"a": [1, 2]}, "is a dict of 1 keys"),
    "a set": ({1, 2}, "is a set, which has no order"),
    "a generator": ((r for r in IDS), "is an iterator (generator)"),
    "an object": (object(), "is a object"),
    "rows of mixed types": ([[1, 2], ["a", "b"]], "holds string values"),
    "ragged rows of mixed types": ([[1, 2], ["a"]], "holds 'a' among its values"),
    "a row of strings": ([[1, 2], "ab"], "row 1 is a string"),
    "a row that is None": ([[1, 2], None], "row 1 is None"),
    "floats": ([[1.5, 2.0], [3.0, 4.0]], "holds floating-point values"),
    "bools": ([[True, False], [False, True]], "holds boolean values"),
    "nested depth 3": ([[[1, 2]], [[3, 4]]], "has 3 dimensions"),
    "ragged nested depth 3": ([[[1, 2]], [[3]]], "holds lists of list"),
    "a numpy object array of None": (np.array([None, None]), "row 0 is None"),
    "a numpy object array of strings": (np.array(["ab", 1], dtype=object), "row 0 is a string"),
    "a float tensor": (torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "holds floating-point values"),
    "a bfloat16 tensor": (torch.ones(2, 2, dtype=torch.bfloat16), "holds floating-point values"),
    "a 0-d array": (np.array(5), "has 0 dimensions"),
    "a 0-d tensor": (torch.tensor(5), "has 0 dimensions"),
    "a complex array": (np.ones((2, 2), dtype=complex), "holds complex values"),
    "rows of float and int tensors": ([torch.tensor([1, 2]), torch.tensor([1.5])],
                                      "mixes rows of"),
    "uint64 ids past int64": (np.array([[2**63, 1], [1, 1]], dtype=np.uint64),
                              "holds 9223372036854775808, past the int64 range"),
    "Python ints past int64": ([[2**63, 1], [1, 1]], "holds 9223372036854775808, past the int64"),
    "Python ints past uint64": ([[2**70, 1], [1, 1]], "holds 1180591620717411303424, past the"),
    "Python ints past int64, ragged": ([[2**64 + 5], [1, 1]], "past the int64 range"),
}


@pytest.mark.parametrize("column", ["input_ids", "labels"])
@pytest.mark.parametrize("case", NOT_COLUMNS, ids=str)
def test_a_column_that_is_not_token_rows_is_one_error_naming_it(case, column):
    value, expected = NOT_COLUMNS[case]
    batch = {"input_ids": IDS, column: value}
    with pytest.raises(LabelLintError) as error:
        labellint.check(batch)
    message = str(error.value)
    assert "\n" not in message and message.startswith(column) and expected in message


def test_a_row_dict_whose_input_ids_is_a_dict_is_refused_by_name():
    with pytest.raises(LabelLintError, match="input_ids is a dict"):
        labellint.check({"input_ids": {"a": 1}})


def test_uint64_ids_below_int64_are_read_exactly():
    # 2**53 + 1 has no float64: a uint64 column compared as float would lose it.
    ids = np.array([[5, 2**53 + 1, 2], [5, 6, 2]], dtype=np.uint64)
    report = labellint.check({"input_ids": ids}, vocab_size=2**53 + 1)
    (finding,) = [f for f in report.findings if f.code == "LL405"]
    assert finding.rows == (0,) and finding.count_tokens == 1


def test_uint64_labels_past_int64_are_refused_not_wrapped_to_negative():
    labels = np.array([[2**64 - 100, 6, 2], [5, 6, 2]], dtype=np.uint64)  # -100 if wrapped
    with pytest.raises(LabelLintError, match="labels holds 18446744073709551516"):
        labellint.check({"input_ids": [[5, 6, 2], [5, 6, 2]], "labels": labels})


def test_a_row_dict_of_ids_past_int64_is_refused():
    with pytest.raises(LabelLintError, match="past the int64 range"):
        labellint.check([{"input_ids": np.array([2**63], dtype=np.uint64)}])


@pytest.mark.parametrize("make", [tiny_tokenizer, chatml_tokenizer], ids=["plain", "chatml"])
@pytest.mark.parametrize("bad", [-7, 5000, 2**31, 2**40, 2**63 - 1])
def test_ids_outside_the_vocabulary_are_reported_not_crashed_on_when_decoding(make, bad):
    tok = make()
    ids = [[1, 5, bad, 2], [1, 6, 7, 2]]
    batch = {"input_ids": ids, "labels": ids}
    report = labellint.check(batch, tokenizer=tok)
    assert "LL405" in {f.code for f in report.findings}
    str(report)
    row = labellint.show(batch, row=0, tokenizer=tok)
    assert "LL405" in {f.code for f in row.findings}
    row.render()


def test_show_finds_positions_on_a_dataset_without_labels():
    # Without labels the engine judges the collator's labels; show's positions must come from
    # the same batch (it once ran the token rule on the label-less row and crashed).
    rows = [{"input_ids": [1, 5, 400, 2]}, {"input_ids": [1, 6, 7, 2]}]
    row = labellint.show(rows, row=0, vocab_size=400)
    assert {f.code for f in row.findings} >= {"LL405"}
