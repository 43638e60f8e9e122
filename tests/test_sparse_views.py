"""Property tests for the sparse label views and the engine's reading of sparse token masks: on
random batches each answers exactly what its straightforward definition does."""

from contextlib import contextmanager
from unittest import mock

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from labellint import catalog, engine
from labellint.batch import Batch
from labellint.facts import Facts
from labellint.ragged import (IndexedMask, is_any, outside_vocab, outside_vocab_index,
                              where_ids)
from labellint.registry import Skip

IGNORE = -100
settings.register_profile("sparse-views", max_examples=150, deadline=None)


@st.composite
def batches(draw):
    """Rows of a few ids (BOS, EOS, an end-of-turn id, negatives, ids past a small vocabulary)
    whose labels are a masked copy of input_ids with some labels changed: sometimes few of them
    (the sparse paths), sometimes most (the fallback to a pass over every label)."""
    lengths = draw(st.lists(st.integers(0, 10), min_size=1, max_size=6))
    n = sum(lengths)
    # Two ids alone make repeats, where a label matches both its own input and the next.
    ids_of = draw(st.sampled_from([st.integers(-3, 9), st.integers(4, 5)]))
    ids = np.array(draw(st.lists(ids_of, min_size=n, max_size=n)), dtype=np.int32)
    labels = ids.astype(draw(st.sampled_from([np.int32, np.int64])))
    if draw(st.booleans()):  # else every label is kept
        labels[np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), bool)] = IGNORE
    changed = draw(st.lists(st.tuples(st.integers(0, max(n - 1, 0)), st.integers(-3, 9)),
                            max_size=n))
    for at, value in changed if n else ():
        labels[at] = value
    if draw(st.booleans()) and n > 1:  # labels shifted by hand: most differ from input_ids
        labels[:-1] = np.where(labels[:-1] == IGNORE, IGNORE, ids[1:])
    facts = Facts(pad_id=0, bos_id=1, eos_id=2, ignore_index=IGNORE,
                  vocab_size=draw(st.sampled_from([None, 7, 10**6])),
                  end_of_turn_ids=draw(st.sampled_from([(), (3,)])),
                  label_shift=draw(st.sampled_from(["model", "dataset"])))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Batch(ids, offsets, labels=labels, facts=facts)


@contextmanager
def sparse_always():
    """Take the sparse paths whatever the share of findings: tiny batches never reach them."""
    with mock.patch("labellint.batch.SPARSE", 0), mock.patch("labellint.rules.shift.SPARSE", 0), \
            mock.patch("labellint.engine.SPARSE", 0):
        yield


def fresh(b: Batch) -> Batch:
    return b.with_facts(b.facts)


def dense(b: Batch) -> Batch:
    """The same batch, its views to be computed with no sparse shortcut."""
    out = b.with_facts(b.facts)
    out.__dict__["label_differs_index"] = None
    return out


@settings(settings.get_profile("sparse-views"))
@given(batches(), st.sampled_from([(1,), (2,), (2, 3), (-100,), (5, -1)]))
def test_targets_labelled_is_targets_with_those_labels(b, ids):
    want = np.flatnonzero(b.targets & is_any(b.labels, ids))
    with sparse_always():
        assert np.array_equal(fresh(b).targets_labelled(ids), want)
    assert np.array_equal(dense(b).targets_labelled(ids), want)


@settings(settings.get_profile("sparse-views"))
@given(batches())
def test_label_views_match_their_definitions(b):
    with sparse_always():
        _label_views_match(fresh(b))
    _label_views_match(dense(b))


def _label_views_match(b):
    supervised = b.labels != IGNORE
    differ = supervised & (b.labels != b.input_ids)
    assert np.array_equal(b.label_is_input, supervised & (b.labels == b.input_ids))
    assert b.label_differs_index is None or np.array_equal(b.label_differs_index,
                                                           np.flatnonzero(differ))
    invalid = np.flatnonzero(supervised & outside_vocab(b.labels, b.facts.vocab_size))
    assert np.array_equal(b.invalid_label_index, invalid)
    stops = np.flatnonzero(b.targets & is_any(b.labels, b.facts.stop_ids))
    assert np.array_equal(b.stop_target_index, stops)


@settings(settings.get_profile("sparse-views"))
@given(batches())
def test_every_rule_answers_alike_with_and_without_sparse_label_views(b):
    for rule in catalog.all_rules():
        if rule.per not in ("token", "row") or any(engine._missing(b, r) for r in rule.requires):
            continue
        with sparse_always():
            got = rule.func(fresh(b), **rule.options)
        want = rule.func(dense(b), **rule.options)
        if isinstance(want, Skip):
            assert isinstance(got, Skip)
            continue
        assert np.array_equal(np.asarray(got, dtype=bool), np.asarray(want, dtype=bool)), \
            rule.code


def _tally(rule, b, result):
    t = engine._Tally(rule, {}, 0, False)
    t.add(b, result, max_examples=3)
    return t.rows, t.tokens, t.examples


@settings(settings.get_profile("sparse-views"))
@given(batches(), st.lists(st.integers(-40, 40), max_size=12))
def test_engine_reads_a_kept_index_as_it_reads_the_mask(b, picks):
    rule = next(r for r in catalog.all_rules() if r.per == "token")
    index = np.array([p for p in picks if -b.n_tokens <= p < b.n_tokens], dtype=np.int64)
    mask = b.token_mask(index)
    assert isinstance(mask, IndexedMask) and mask.index is not None
    plain = np.asarray(mask, dtype=bool).copy()
    with sparse_always():
        kept = _tally(rule, b, mask)
    assert kept == _tally(rule, b, plain)


def test_a_changed_mask_lets_go_of_its_index():
    b = Batch(np.arange(6, dtype=np.int32), np.array([0, 3, 6]))
    for change in (lambda m: m.__setitem__(0, True), lambda m: m.__ior__(np.ones(6, bool)),
                   lambda m: np.logical_or(m, True, out=m), lambda m: m[2:].fill(True)):
        mask = b.token_mask(np.array([4]))
        change(mask)
        assert mask.index is None
    derived = b.token_mask(np.array([4])) | b.token_mask(np.array([1]))
    assert type(derived) is np.ndarray and derived.tolist() == [0, 1, 0, 0, 1, 0]


@settings(settings.get_profile("sparse-views"))
@given(st.lists(st.integers(0, 6), min_size=1, max_size=8), st.lists(st.booleans(), max_size=50))
def test_runs_are_the_runs_of_each_row(lengths, bits):
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    n = int(offsets[-1])
    mask = np.resize(np.array(bits or [False], dtype=bool), n)
    b = Batch(np.zeros(n, dtype=np.int32), offsets)
    want = []
    for row, (lo, hi) in enumerate(zip(offsets[:-1], offsets[1:])):
        t = lo
        while t < hi:
            if mask[t]:
                end = t
                while end < hi and mask[end]:
                    end += 1
                want.append((t, end, row))
                t = end
            else:
                t += 1
    runs = b.runs(mask)
    assert list(zip(runs.start.tolist(), runs.stop.tolist(), runs.row.tolist())) == want


@settings(settings.get_profile("sparse-views"))
@given(st.lists(st.integers(-5, 40), max_size=60),
       st.lists(st.integers(-3, 300), min_size=1, max_size=4, unique=True),
       st.sampled_from([np.int16, np.int32, np.int64, np.uint16, np.uint32]),
       st.sampled_from([None, 0, 2]))
def test_where_ids_finds_each_id(values, ids, dtype, avoid):
    values = np.array(values, dtype=np.int64)
    if np.dtype(dtype).kind == "u":
        values = np.abs(values)
    values = values.astype(dtype)
    got = where_ids(values, tuple(ids), avoid)
    assert set(got) == set(ids)
    for i in ids:
        assert np.array_equal(got[i], np.flatnonzero(values == i)), i


@settings(settings.get_profile("sparse-views"))
@given(st.lists(st.integers(-2**31, 2**31 - 1), max_size=20),
       st.sampled_from([None, 0, 1, 7, 2**20, 2**40]), st.sampled_from([np.int32, np.int64]))
def test_outside_vocab_index_is_where_outside_vocab_holds(values, vocab, dtype):
    values = np.array(values, dtype=np.int64).astype(dtype)
    assert np.array_equal(outside_vocab_index(values, vocab),
                          np.flatnonzero(outside_vocab(values, vocab)))
