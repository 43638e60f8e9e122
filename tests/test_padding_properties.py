"""The padding views measured from row edges equal their straightforward definitions.

`Batch.pad_edges` reads only row edges and the runs of the hidden tokens' flat indices; every
padding view is derived from it. Here each is checked against the definition written over
every token (masks, runs and per-token row broadcasts), on random batches: right and left
padded, unpadded, rows all padding, empty rows, with and without attention_mask and pad id,
pad == EOS, attention off inside rows (hidden content), negative pad ids.
"""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from labellint.batch import Batch
from labellint.facts import Facts
from labellint.padding import edge_run, hidden_run
from labellint.ragged import ranges_index
from labellint.rules.attention import attention_masked_target
from labellint.rules.labels import labels_on_padding
from labellint.sequences import sequences

PAD, EOS, IGNORE = 0, 2, -100
settings.register_profile("padding", max_examples=300, deadline=None)


# -- the definitions, written over every token ------------------------------------------------


def _trailing_run(b, mask, keep_first=False):
    last_other = b.last_index(b.runs(~mask))
    last_other = np.where(last_other >= 0, last_other, b.starts - 1)
    return mask & (b.token_index > b.at_rows(last_other) + keep_first)


def _one_id_run(b, run, edge):
    edge_ids = np.zeros(b.n_rows, dtype=b.input_ids.dtype)
    edge_ids[b.nonempty] = b.input_ids[edge[b.nonempty]]
    return b.row_sum(run & (b.input_ids != b.at_rows(edge_ids))) == 0


def reference_is_pad(b):
    """Batch.is_pad as it was written before pad_edges: masks and runs over every token."""
    n = b.n_tokens
    pad_id = b.facts.pad_id
    is_pad_id = None if pad_id is None else b.input_ids == pad_id
    keep_first = pad_id == b.facts.eos_id
    if b.attention_mask is None:
        return np.zeros(n, dtype=bool) if is_pad_id is None else \
            _trailing_run(b, is_pad_id, keep_first)
    padlike = b.attention_mask == 0
    if is_pad_id is not None:
        padlike &= is_pad_id | (b.input_ids < 0)
    out = np.zeros(n, dtype=bool)
    if padlike.any():
        trailing = _trailing_run(b, padlike)
        first = b.first_index(b.runs(~padlike))
        first = np.where(first >= 0, first, b.ends)
        leading = padlike & (b.token_index < b.at_rows(first))
        if pad_id is None:
            leading &= b.at_rows(_one_id_run(b, leading, b.starts))
            trailing &= b.at_rows(_one_id_run(b, trailing, b.ends - 1))
        out = leading | trailing
    if is_pad_id is not None and is_pad_id.any():
        out |= _trailing_run(b, is_pad_id, keep_first)
    return out


def reference_edges(b, real):
    """first/last real index and real length per row, from the token mask."""
    runs = b.runs(real)
    return b.first_index(runs), b.last_index(runs), b.count_per_row(runs)


# -- random batches ---------------------------------------------------------------------------


@st.composite
def batches(draw):
    """Rows of content, pad ids and EOS, padded on either side or both, some wholly or not at
    all, with attention off on padding (mostly) and on content (sometimes)."""
    n_rows = draw(st.integers(0, 7))
    pad = draw(st.sampled_from([PAD, EOS, -1]))  # EOS: pad == eos; -1: padded with a negative
    ids, mask, labels, offsets = [], [], [], [0]
    for _ in range(n_rows):
        body = draw(st.lists(st.sampled_from([pad, EOS, 3, 4, 5]), max_size=8))
        left = draw(st.integers(0, 4)) * draw(st.booleans())
        right = draw(st.integers(0, 4))
        row = [pad] * left + body + [pad] * right
        att = [0] * left + [1] * len(body) + [0] * right
        # Attention flipped here and there: hand padding left attended, hidden content.
        att = [a ^ draw(st.booleans()) if draw(st.integers(0, 5)) == 0 else a for a in att]
        ids += row
        mask += att
        labels += [draw(st.sampled_from([IGNORE, IGNORE, 3, pad, -1])) for _ in row]
        offsets.append(len(ids))
    known = PAD if pad < 0 else pad  # a pad id is a token id: -1 padding is not one
    facts = Facts(pad_id=draw(st.sampled_from([known, None, 7])),
                  eos_id=draw(st.sampled_from([EOS, known, None])))
    with_mask = draw(st.booleans())
    dtype = draw(st.sampled_from([np.int32, np.int64]))
    return Batch(np.array(ids, dtype=dtype), np.array(offsets, dtype=np.int64),
                 labels=np.array(labels, dtype=np.int64),
                 attention_mask=np.array(mask, dtype=np.int8) if with_mask else None,
                 facts=facts)


@settings(settings.get_profile("padding"))
@given(batches())
def test_padding_views_equal_their_definitions(b):
    want = reference_is_pad(b)
    assert b.is_pad.tolist() == want.tolist()
    assert b.pad_index.tolist() == np.flatnonzero(want).tolist()
    assert b.real.tolist() == (~want).tolist()
    first, last, lengths = reference_edges(b, ~want)
    assert b.first_real_index.tolist() == first.tolist()
    assert b.last_real_index.tolist() == last.tolist()
    assert b.real_lengths.tolist() == lengths.tolist()
    runs = b.runs(~want)
    assert (b.real_runs.start.tolist(), b.real_runs.stop.tolist(), b.real_runs.row.tolist()) \
        == (runs.start.tolist(), runs.stop.tolist(), runs.row.tolist())


@settings(settings.get_profile("padding"))
@given(batches(), st.data())
def test_lookups_by_row_equal_the_token_mask(b, data):
    want = ~reference_is_pad(b)
    fresh = b.with_facts(b.facts)  # real_at and ids_at before any token mask is built
    index = np.array(data.draw(st.lists(st.integers(0, max(b.n_tokens - 1, 0)), max_size=10)),
                     dtype=np.int64) if b.n_tokens else np.zeros(0, dtype=np.int64)
    assert fresh.real_at(index).tolist() == want[index].tolist()
    for step in (-1, 0, 1):
        for edge in (fresh.first_real_index, fresh.last_real_index):
            _, ok = fresh.ids_at(edge, step)
            pos = edge + step
            inside = (edge >= 0) & (pos >= b.starts) & (pos < b.ends)
            expect = inside.copy()
            expect[inside] &= want[pos[inside]]
            assert ok.tolist() == expect.tolist()
    hidden = np.flatnonzero(b.attention_mask == 0) if b.attention_mask is not None \
        else np.zeros(0, dtype=np.int64)
    assert fresh.hidden_content.tolist() == hidden[want[hidden]].tolist()


@settings(settings.get_profile("padding"))
@given(batches())
def test_padding_rules_equal_their_definitions(b):
    pad = reference_is_pad(b)
    supervised = b.labels != IGNORE
    assert labels_on_padding(b).tolist() == (pad & supervised & (b.labels >= 0)).tolist()
    if b.attention_mask is None:
        return
    hidden = (b.attention_mask == 0) & ~pad
    last_supervised = b.last_index(b.runs(supervised))
    want = hidden & (supervised | (b.token_index < b.at_rows(last_supervised)))
    assert attention_masked_target(b).tolist() == want.tolist()


@settings(settings.get_profile("padding"))
@given(batches(), st.data())
def test_regrouped_rows_keep_the_padding_of_their_tokens(b, data):
    """A row cut into sequences: each sequence's padding is what of the row's padding it
    holds, whether or not the parent's token mask was built first."""
    cuts = data.draw(st.lists(st.integers(0, max(b.n_tokens - 1, 0)), max_size=4))
    starts = np.unique(np.r_[b.starts[b.nonempty], np.array(cuts, dtype=np.int64)])
    starts = starts[starts < b.n_tokens]
    if data.draw(st.booleans()):
        assert b.is_pad.size == b.n_tokens  # the parent's token mask built first
    seq = b.regroup(np.append(starts, b.n_tokens))
    want = reference_is_pad(b)
    assert seq.is_pad.tolist() == want.tolist()
    first, last, lengths = reference_edges(seq, ~want)
    assert seq.first_real_index.tolist() == first.tolist()
    assert seq.last_real_index.tolist() == last.tolist()
    assert seq.real_lengths.tolist() == lengths.tolist()
    assert sequences(b) is b  # no position_ids: nothing packed


@given(st.lists(st.booleans(), max_size=300), st.data())
def test_edge_run_counts_the_run_from_an_edge(mask, data):
    mask = np.array(mask, dtype=bool)
    n = mask.size
    edges = np.array(data.draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=6)),
                     dtype=np.int64) if n else np.zeros(0, dtype=np.int64)
    step = data.draw(st.sampled_from([1, -1]))
    room = np.array([data.draw(st.integers(1, (n - e) if step == 1 else e + 1)) for e in edges],
                    dtype=np.int64)
    got = edge_run(lambda pos, _: mask[pos], edges, room, step)
    for e, r, g in zip(edges, room, got):
        k = 0
        while k < r and mask[e + step * k]:
            k += 1
        assert g == k


@given(st.lists(st.integers(0, 5), max_size=12), st.lists(st.booleans(), max_size=60))
def test_hidden_run_and_ranges_index(lengths, mask):
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    n = int(offsets[-1])
    mask = np.resize(np.array(mask or [False], dtype=bool), n)
    b = Batch(np.zeros(n, dtype=np.int64), offsets)
    attention = (~mask).astype(np.int8)  # one id throughout: every hidden run counts whole
    lead = hidden_run(b.input_ids, attention, b.starts, b.lengths, 1, None)
    trail = hidden_run(b.input_ids, attention, b.ends - 1, b.lengths, -1, None)
    runs = b.runs(~mask)
    first, last = b.first_index(runs), b.last_index(runs)
    assert lead.tolist() == np.where(first >= 0, first - b.starts, b.lengths).tolist()
    assert trail.tolist() == np.where(last >= 0, b.ends - 1 - last, b.lengths).tolist()
    lo, hi = b.starts, b.starts + lead
    assert ranges_index(lo, hi).tolist() == [i for s, e in zip(lo, hi) for i in range(s, e)]
