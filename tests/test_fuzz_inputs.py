"""Generated in-memory batches and keyword arguments: check and show either work or raise one
one-line LabelLintError; never another exception, never a change to the caller's data.

Seeded and bounded (derandomize=True, a fixed max_examples per test), so a run is the same run
every time and the module stays within about 30 s. FUZZED_INPUTS is how many inputs one run
tries in all.
"""

import copy
import json
import math

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
torch = pytest.importorskip("torch")

from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import labellint  # noqa: E402
from labellint import LabelLintError  # noqa: E402

EXAMPLES = {"batches": 500, "rows": 250, "arguments": 400, "show": 250, "reports": 150}
FUZZED_INPUTS = sum(EXAMPLES.values())
SETTINGS = dict(derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
COLUMNS = ("input_ids", "labels", "attention_mask", "position_ids")

# Ids a real pipeline writes, and the ones that break things: -100 and other ignore values,
# negatives, ids past any vocabulary, and the edges of int32/int64/uint64.
IDS = st.one_of(
    st.integers(0, 12),
    st.sampled_from([-100, -1, -200, 0, 1, 2, 399, 400, 2**31 - 1, 2**31, 2**53 + 1,
                     2**63 - 1, -2**63]),
)
ODD_IDS = st.one_of(IDS, st.sampled_from([2**63, 2**64 - 1, 2**70, -2**70]))
DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64", "bool", "complex64", "object", "U3"]
INT_DTYPES = ["int32", "int64", "uint16", "uint32", "uint64"]
TORCH_DTYPES = [torch.int64, torch.int32, torch.int16, torch.uint8, torch.bool, torch.float32,
                torch.bfloat16]


def _as_array(rows, dtype):
    with np.errstate(all="ignore"):
        try:
            return np.array(rows, dtype=dtype)
        except (OverflowError, ValueError, TypeError):
            return np.array(rows, dtype=object)


@st.composite
def columns(draw, n_rows, width, values=IDS):
    """One column's value in one of the forms a user hands over, right or wrong."""
    ragged = draw(st.booleans())
    lengths = [draw(st.integers(0, 6)) if ragged else width for _ in range(n_rows)]
    odd = draw(st.integers(0, 9)) == 0  # ids past int64 in one column in ten
    rows = [[draw(ODD_IDS if odd else values) for _ in range(k)] for k in lengths]
    # Mostly the forms collators and datasets produce; a quarter of the time something odd.
    form = draw(st.sampled_from(["list", "list", "tuple", "numpy", "numpy", "torch", "torch",
                                 "rows of tensors", "object array"]) if draw(st.integers(0, 3))
                else st.sampled_from(["nested", "scalar", "none", "string", "dict", "set",
                                      "0-d"]))
    if form == "list":
        return rows
    if form == "tuple":
        return tuple(tuple(r) for r in rows)
    if form == "numpy":
        return _as_array(rows, draw(st.sampled_from(DTYPES) if draw(st.integers(0, 2)) == 0
                                    else st.sampled_from(INT_DTYPES)))
    if form == "torch":
        dtype = draw(st.sampled_from(TORCH_DTYPES) if draw(st.integers(0, 2)) == 0
                     else st.just(torch.int64))
        try:
            return torch.tensor(rows, dtype=dtype)
        except (ValueError, TypeError, RuntimeError, OverflowError):
            return torch.zeros((n_rows, width), dtype=dtype)
    if form == "rows of tensors":
        return [torch.tensor([min(max(i, -2**63), 2**63 - 1) for i in r], dtype=torch.int64)
                for r in rows]
    if form == "nested":
        return [[r] for r in rows]
    if form == "object array":
        out = np.empty(n_rows, dtype=object)
        for i, r in enumerate(rows):
            out[i] = r
        return out
    return {"scalar": 5, "none": None, "string": "1 2 3", "dict": {"a": rows}, "set": {1, 2},
            "0-d": np.array(3)}[form]


@st.composite
def batches(draw):
    n_rows = draw(st.integers(1, 4) if draw(st.integers(0, 9)) else st.just(0))
    width = draw(st.integers(0, 6))
    present = draw(st.lists(st.sampled_from(COLUMNS), unique=True, max_size=4))
    if draw(st.integers(0, 5)):  # input_ids is there most of the time
        present = ["input_ids", *[c for c in present if c != "input_ids"]]
    mask = st.integers(0, 1) if draw(st.integers(0, 4)) else IDS  # a 0/1 mask, mostly
    batch = {c: draw(columns(n_rows if draw(st.integers(0, 7)) else n_rows + 1, width,
                             mask if c == "attention_mask" else IDS))
             for c in present}
    if draw(st.booleans()):
        batch[draw(st.sampled_from(["text", "extra", "seq_idx"]))] = draw(
            st.one_of(st.text(max_size=3), st.lists(st.integers(-3, 3), max_size=3)))
    return batch


# Facts of every type, mostly valid ones.
FACT_VALUES = {
    "pad_id": st.one_of(st.none(), st.integers(-5, 500), st.sampled_from(["0", 1.5, True, 2**70])),
    "bos_id": st.one_of(st.none(), st.integers(0, 20), st.just(-1)),
    "eos_id": st.one_of(st.none(), st.integers(0, 20), st.just(1.0)),
    "vocab_size": st.one_of(st.none(), st.integers(-1, 500), st.sampled_from([2**80, "x"])),
    "ignore_index": st.one_of(st.sampled_from([-100, -1, 0, 1.5, 2**70, None])),
    "label_shift": st.sampled_from(["model", "dataset", "x", 5, None]),
    "max_length": st.one_of(st.none(), st.integers(-1, 8), st.just(1.5)),
    "add_bos": st.sampled_from([None, True, False, "yes", 1]),
    "end_of_turn_ids": st.one_of(st.none(), st.lists(st.integers(-1, 20), max_size=2),
                                 st.sampled_from([5, "ab", [None]])),
    "assistant_only_loss": st.sampled_from([None, True, False, "x"]),
}
SELECTORS = st.one_of(st.none(), st.just("LL1"), st.integers(), st.lists(
    st.one_of(st.sampled_from(["LL1", "LL4", "ALL", "labels-on-padding", "LL105", "LL999",
                               "", " "]), st.none(), st.integers()), max_size=3))
OPTIONS = st.one_of(st.none(), st.integers(), st.lists(st.integers(), max_size=2),
                    st.dictionaries(st.sampled_from(["LL105", "few-supervised-tokens", "LL405",
                                                     "LL999", "LL904"]),
                                    st.one_of(st.integers(), st.dictionaries(
                                        st.sampled_from(["min_tokens", "placeholder_ids",
                                                         "max_deviation", "nope"]),
                                        st.one_of(st.integers(-3, 10), st.floats(),
                                                  st.text(max_size=2), st.lists(st.integers(
                                                      -300, 3), max_size=2)), max_size=2)),
                                    max_size=2))
COLUMN_MAPS = st.one_of(st.none(), st.integers(), st.lists(st.text(max_size=3), max_size=2),
                        st.dictionaries(st.sampled_from([*COLUMNS, "tokens"]),
                                        st.one_of(st.sampled_from(COLUMNS), st.integers(),
                                                  st.just("")), max_size=2))


@st.composite
def arguments(draw):
    kwargs = {k: draw(v) for k, v in FACT_VALUES.items() if draw(st.integers(0, 5)) == 0}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    for name, strategy in (("select", SELECTORS), ("ignore", SELECTORS), ("options", OPTIONS),
                           ("columns", COLUMN_MAPS)):
        if draw(st.integers(0, 4)) == 0:
            kwargs[name] = draw(strategy)
    if draw(st.integers(0, 5)) == 0:
        kwargs["name"] = draw(st.one_of(st.text(max_size=3), st.integers()))
    if draw(st.integers(0, 5)) == 0:
        kwargs["max_examples"] = draw(st.one_of(st.integers(-1, 3), st.just(True)))
    return kwargs


GOOD = {"input_ids": [[1, 5, 6, 2, 0], [1, 7, 2, 0, 0]],
        "labels": [[1, 5, 6, 2, -100], [1, 7, 2, -100, -100]],
        "attention_mask": [[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]]}


def _same(a, b) -> bool:
    """Deep equality over dicts, lists, arrays and tensors, dtype included."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and \
            (a.dtype == object and _same(a.tolist(), b.tolist()) or
             np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def _checked(call, source, **kwargs):
    """Run `call`; the outcome is a result or one LabelLintError, and nothing changed."""
    before = copy.deepcopy(source)
    before_kwargs = copy.deepcopy(kwargs)
    try:
        result = call(source, **kwargs)
    except LabelLintError as e:
        message = str(e)
        assert message and "\n" not in message and len(message) < 400, message
        result = None
    event("refused" if result is None else "checked")  # --hypothesis-show-statistics
    assert _same(source, before), "the input data changed"
    assert _same(kwargs, before_kwargs), "the keyword arguments changed"
    return result


@settings(max_examples=EXAMPLES["batches"], **SETTINGS)
@given(batches())
def test_a_generated_batch_checks_or_is_one_error_and_is_left_unchanged(batch):
    report = _checked(labellint.check, batch)
    if report is not None:
        assert isinstance(report, labellint.Report)
        str(report)


@settings(max_examples=EXAMPLES["rows"], **SETTINGS)
@given(st.lists(st.one_of(batches().map(lambda b: {k: (v[0] if isinstance(v, list) and v
                                                      and isinstance(v[0], list) else v)
                                                  for k, v in b.items()}),
                          st.none(), st.integers()), min_size=1, max_size=4))
def test_generated_row_dicts_check_or_are_one_error_and_are_left_unchanged(rows):
    _checked(labellint.check, rows)


@settings(max_examples=EXAMPLES["arguments"], **SETTINGS)
@given(arguments())
def test_generated_keyword_arguments_check_or_are_one_error_naming_the_problem(kwargs):
    report = _checked(labellint.check, GOOD, **kwargs)
    assert report is None or isinstance(report, labellint.Report)


@settings(max_examples=EXAMPLES["show"], **SETTINGS)
@given(st.one_of(batches(), st.just(GOOD)), arguments(),
       st.one_of(st.integers(-1, 4), st.sampled_from([1.5, True, None, "0"])))
def test_show_on_generated_input_shows_or_is_one_error_and_changes_nothing(batch, kwargs, row):
    kwargs.pop("max_examples", None)
    view = _checked(labellint.show, batch, row=row, **kwargs)
    if view is not None:
        view.render()


def _finite_counts(value) -> None:
    if isinstance(value, float):
        assert math.isfinite(value), value
    elif isinstance(value, dict):
        for v in value.values():
            _finite_counts(v)
    elif isinstance(value, list):
        for v in value:
            _finite_counts(v)


@settings(max_examples=EXAMPLES["reports"], **SETTINGS)
@given(batches())
def test_a_report_has_finite_counts_and_its_dict_is_json(batch):
    try:
        report = labellint.check(batch)
    except LabelLintError:
        return
    data = report.to_dict()
    _finite_counts(data)
    json.dumps(data, allow_nan=False)
    for f in report.findings:
        assert 0 <= f.count_rows <= f.total_rows and 0 <= f.count_tokens <= f.total_tokens
