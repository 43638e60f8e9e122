"""Keyword arguments of check and show of the wrong type: one LabelLintError naming the argument."""

import numpy as np
import pytest

import labellint
from labellint import LabelLintError

BATCH = {"input_ids": [[5, 6, 7, 2], [5, 8, 2, 0]], "labels": [[5, 6, 7, 2], [5, 8, 2, -100]]}

WRONG = [
    (dict(ignore=5), "ignore must be a list of rule codes or names, not 5"),
    (dict(ignore=[None]), "ignore must hold rule codes or names (strings), not None"),
    (dict(select="LL1"), "select must be a list of rule codes or names, not the string 'LL1'"),
    (dict(select=[5]), "select must hold rule codes or names (strings), not 5"),
    (dict(select={"LL1": True}), "select must be a list of rule codes or names"),
    (dict(select=[]), "select is empty"),
    (dict(options=5), "options must map rule codes or names to their options"),
    (dict(options={"LL105": 5}), "options['LL105'] must map option names to values"),
    (dict(options={5: {}}), "options must be keyed by rule codes or names, not 5"),
    (dict(options={"LL105": {"min_tokens": "x"}}),
     "LL105 option min_tokens must be like its default 2, not 'x'"),
    (dict(options={"LL105": {"min_tokens": 10**400}}), "LL105 option min_tokens"),
    (dict(options={"LL105": {"min_tokens": -3}}), "LL105 option min_tokens"),
    (dict(options={"LL904": {"max_deviation": float("nan")}}), "LL904 option max_deviation"),
    (dict(options={"LL405": {"placeholder_ids": ["x"]}}), "LL405 option placeholder_ids"),
    (dict(options={"LL105": {"nope": 1}}), "LL105 has no option 'nope'"),
    (dict(columns=5), "columns must map labellint's column names to yours"),
    (dict(columns=["labels"]), "columns must map labellint's column names to yours"),
    (dict(columns={"input_ids": 5}), "columns['input_ids'] must be the name of one of your"),
    (dict(columns={"input_ids": ""}), "columns['input_ids'] must be the name of one of your"),
    (dict(end_of_turn_ids=5), "end_of_turn_ids must be a list of token ids, not 5"),
    (dict(end_of_turn_ids="<|im_end|>"), "end_of_turn_ids must be a list of token ids"),
    (dict(end_of_turn_ids=[None]), "end_of_turn_ids entry must be a token id"),
    (dict(end_of_turn_ids=[-1]), "end_of_turn_ids entry must be a token id"),
    (dict(model_eos_ids=5), "model_eos_ids must be a list of token ids"),
    (dict(pad_id="0"), "pad_id must be a token id"),
    (dict(pad_id=-5), "pad_id must be a token id"),
    (dict(pad_id=True), "pad_id must be a token id"),
    (dict(pad_id=2**70), "pad_id must be a token id"),
    (dict(pad_id=np.uint64(2**63)), "pad_id must be a token id"),
    (dict(vocab_size=0), "vocab_size must be a positive whole number"),
    (dict(vocab_size=2**80), "vocab_size must be a positive whole number"),
    (dict(ignore_index=1.5), "ignore_index must be a whole number"),
    (dict(ignore_index=2**70), "ignore_index must be a whole number"),
    (dict(label_shift="x"), "label_shift must be one of model, dataset"),
    (dict(label_shift=np.array(["model"])), "label_shift must be one of model, dataset"),
    (dict(max_length=-1), "max_length must be a positive whole number"),
    (dict(add_bos="yes"), "add_bos must be True, False or None"),
    (dict(add_bos=1), "add_bos must be True, False or None"),
    (dict(add_bos=np.array([1, 2])), "add_bos must be True, False or None"),
    (dict(tokenizer_size="x"), "tokenizer_size must be a positive whole number"),
    (dict(model_vocab_size=-1), "model_vocab_size must be a positive whole number"),
    (dict(model_pad_id="x"), "model_pad_id must be a token id"),
    (dict(bos_every_turn="x"), "bos_every_turn must be True, False or None"),
    (dict(chunk_rows=0), "chunk_rows must be a whole number of 1 or more"),
    (dict(chunk_rows="x"), "chunk_rows must be a whole number of 1 or more"),
    (dict(name=5), "name must be a string naming the source, not 5"),
    (dict(progress=5), "progress must be a function or None, not 5"),
]


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("kwargs, message", WRONG, ids=lambda v: repr(v)[:40])
def test_a_wrong_keyword_argument_is_one_error_naming_it(kwargs, message):
    with pytest.raises(LabelLintError) as error:
        labellint.check(BATCH, **kwargs)
    assert message in _one_line(error)


SHOW_ONLY = [
    (dict(row=-1), "row must be a row index"),
    (dict(row=1.5), "row must be a row index"),
    (dict(row=True), "row must be a row index"),
    (dict(row=None), "row must be a row index"),
]
# Every argument show shares with check is checked as check checks it.
SHARED = [(dict(row=0, **k), m) for k, m in WRONG
          if not {"chunk_rows", "progress"} & set(k)]


@pytest.mark.parametrize("kwargs, message", SHOW_ONLY + SHARED, ids=lambda v: repr(v)[:40])
def test_show_checks_its_keyword_arguments_the_same_way(kwargs, message):
    with pytest.raises(LabelLintError) as error:
        labellint.show(BATCH, **kwargs)
    assert message in _one_line(error)


def test_show_refuses_a_bad_option_before_reading_the_data():
    def rows():
        raise AssertionError("the data was read before the options were checked")
        yield

    with pytest.raises(LabelLintError, match="options"):
        labellint.show(rows(), row=0, options={"LL105": 5})


def test_good_arguments_of_every_accepted_kind_still_check():
    report = labellint.check(BATCH, select=("LL1", "LL4"), ignore=iter(["LL105"]),
                             options={"few-supervised-tokens": {"min_tokens": 3}},
                             columns={"labels": "labels"}, end_of_turn_ids=np.array([3]),
                             pad_id=np.int64(0), name="mine")
    assert report.sources[0].source == "mine"
    assert labellint.show(BATCH, row=np.int64(1), pad_id=0).row == 1
