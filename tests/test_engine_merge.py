"""Parts of a source checked apart and merged give exactly the report of one pass."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labellint import engine
from labellint.hf_facts import known_facts
from labellint.partial import Example, Partial, RulePartial, merge
from labellint.catalog import resolve_options, select_rules
from labellint.text_report import Report
from labellint.sources import open_sources

V, PAD, BOS, EOS, IGNORE = 64, 0, 1, 2, -100
# No tokenizer: LL407 and the chat rules skip for want of it; no position_ids: the packing
# rules skip by design.
FACTS = dict(pad_id=PAD, bos_id=BOS, eos_id=EOS, vocab_size=V, add_bos=True)
CONTENT = st.integers(3, V - 1)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _mask_everything(r):
    r["labels"] = [IGNORE] * len(r["labels"])


def _invalid_label(r):
    r["labels"][r["prompt_end"]] = -1


def _hide_response(r):
    r["attention_mask"][r["prompt_end"]] = 0


def _mask_eos(r):
    r["labels"][-1] = IGNORE


def _out_of_vocab(r):
    r["input_ids"][1] = V + 3


def _drop_bos(r):
    for key in ("input_ids", "labels", "attention_mask"):
        del r[key][0]
    r["prompt_end"] -= 1


# Several may hit one row; _drop_bos goes last since it moves the prompt's end.
PLANTERS = [_mask_everything, _invalid_label, _hide_response, _mask_eos, _out_of_vocab,
            _drop_bos]


@st.composite
def datasets(draw, min_rows=1, max_rows=24):
    """Rows as a correct SFT pipeline builds them, some with one or more planted defects."""
    rows = []
    all_masked = draw(st.booleans()) and draw(st.booleans())  # LL102 on the whole dataset
    for _ in range(draw(st.integers(min_rows, max_rows))):
        prompt = draw(st.lists(CONTENT, min_size=1, max_size=6))
        response = draw(st.lists(CONTENT, min_size=2, max_size=6))
        ids = [BOS, *prompt, *response, EOS]
        r = {"input_ids": ids, "labels": [IGNORE] * (1 + len(prompt)) + [*response, EOS],
             "attention_mask": [1] * len(ids), "prompt_end": 1 + len(prompt)}
        planted = draw(st.sets(st.integers(0, len(PLANTERS) - 1), max_size=3))
        for k in sorted(planted):
            PLANTERS[k](r)
        if all_masked:
            _mask_everything(r)
        rows.append({k: r[k] for k in ("input_ids", "labels", "attention_mask")})
    return rows


def pad_right(rows):
    width = max(len(r["input_ids"]) for r in rows)
    return {k: [r[k] + [fill] * (width - len(r[k])) for r in rows]
            for k, fill in (("input_ids", PAD), ("labels", IGNORE), ("attention_mask", 0))}


def settings_for(max_examples):
    rules = select_rules(None, None)
    return dict(source="rows", facts=known_facts(FACTS, None, None), rules=rules,
                options=resolve_options(rules, None), max_examples=max_examples)


def chunks_of(items, chunk_rows):
    return iter(()) if not items else open_sources(items, chunk_rows=chunk_rows)[0].chunks


def outcome(result):
    """All a SourceResult says, the token windows (not in the JSON form) included."""
    return (Report([result]).to_dict(), result.skipped_by_design, result.batches,
            [f.windows for f in result.findings])


def grouped(partials, data):
    """The partials merged in an order and grouping drawn by hypothesis."""
    order = data.draw(st.permutations(partials))

    def tree(ps):
        if len(ps) == 1:
            return merge(ps[0]) if data.draw(st.booleans()) else ps[0]
        k = data.draw(st.integers(1, len(ps) - 1))
        return merge(tree(ps[:k]), tree(ps[k:]))

    return tree(order)


def cuts(data, n, max_parts=5):
    """Contiguous parts [a, b) covering range(n); some may be empty."""
    inner = data.draw(st.lists(st.integers(0, n), max_size=max_parts - 1))
    bounds = [0, *sorted(inner), n]
    return list(zip(bounds, bounds[1:]))


@SETTINGS
@given(datasets(), st.integers(1, 5), st.integers(0, 3), st.data())
def test_parts_merged_in_any_order_give_the_report_of_one_pass(rows, chunk_rows,
                                                               max_examples, data):
    kw = settings_for(max_examples)
    one = engine.run(chunks_of(rows, chunk_rows), **kw)
    prepared, _ = engine.prepare(chunks_of(rows, chunk_rows), **kw)
    parts = [engine.check_part(prepared, chunks_of(rows[a:b], chunk_rows), part=i, row_start=a)
             for i, (a, b) in enumerate(cuts(data, len(rows)))]
    assert outcome(engine.finish(prepared, grouped(parts, data))) == outcome(one)
    assert outcome(engine.finish(prepared, merge(*parts))) == outcome(one)


@SETTINGS
@given(datasets(min_rows=2), st.integers(1, 4), st.integers(0, 3), st.data())
def test_training_batches_split_into_parts_give_the_report_of_one_pass(rows, batch_rows,
                                                                       max_examples, data):
    batches = [pad_right(rows[i:i + batch_rows]) for i in range(0, len(rows), batch_rows)]
    kw = settings_for(max_examples) | {"source": "batches", "training_batches": True}
    one = engine.run(chunks_of(batches, 1), **kw)
    prepared, _ = engine.prepare(chunks_of(batches, 1), **kw)
    parts = []
    for i, (a, b) in enumerate(cuts(data, len(batches))):
        first_row = sum(len(x["input_ids"]) for x in batches[:a])
        parts.append(engine.check_part(prepared, chunks_of(batches[a:b], 1), part=i,
                                       row_start=first_row))
    assert outcome(engine.finish(prepared, grouped(parts, data))) == outcome(one)


# -- merge itself ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_parts():
    rows = _fixed_rows()
    prepared, _ = engine.prepare(chunks_of(rows, 2), **settings_for(2))
    bounds = [(0, 3), (3, 7), (7, len(rows))]
    return prepared, rows, [engine.check_part(prepared, chunks_of(rows[a:b], 2), part=i,
                                              row_start=a)
                            for i, (a, b) in enumerate(bounds)]


def _fixed_rows():
    rows = []
    for i in range(10):
        ids = [BOS, 5, 6, 7, 8, EOS]
        r = {"input_ids": ids, "labels": [IGNORE, IGNORE, 6, 7, 8, EOS],
             "attention_mask": [1] * 6, "prompt_end": 2}
        for k in (i % 3, (i + 1) % 4):  # every row hits two rules, most rules hit 3+ rows
            PLANTERS[k](r)
        rows.append({k: r[k] for k in ("input_ids", "labels", "attention_mask")})
    return rows


def test_the_fixed_parts_exercise_truncated_examples_and_skips(three_parts):
    prepared, rows, parts = three_parts
    whole = merge(*parts)
    fired = [p for p in whole.rules.values() if p.rows > whole.max_examples]
    assert len(fired) >= 2 and all(len(p.examples) == whole.max_examples for p in fired)
    result = engine.finish(prepared, whole)
    assert "LL407" in result.skipped and "LL407" not in result.skipped_by_design  # no tokenizer
    assert "LL304" in result.skipped_by_design  # no position_ids: unpacked rows


def test_merge_is_associative(three_parts):
    _, _, (a, b, c) = three_parts
    assert merge(merge(a, b), c) == merge(a, merge(b, c)) == merge(a, b, c)


def test_merge_is_commutative(three_parts):
    _, _, (a, b, c) = three_parts
    assert merge(a, b) == merge(b, a)
    assert merge(c, a, b) == merge(a, b, c)


def test_merge_of_one_partial_is_the_identity(three_parts):
    _, _, (a, b, c) = three_parts
    assert merge(a) == a
    assert merge(merge(a, b)) == merge(a, b)


def test_merge_of_parts_equals_checking_them_as_one_part(three_parts):
    prepared, rows, parts = three_parts
    # One part made of the same chunks: the chunks of each part, in order.
    chunks = [c for a, b in ((0, 3), (3, 7), (7, len(rows))) for c in chunks_of(rows[a:b], 2)]
    one = engine.check_part(prepared, iter(chunks))
    merged = merge(*parts)
    assert (merged.rows, merged.tokens, merged.chunks) == (one.rows, one.tokens, one.chunks)
    assert engine.finish(prepared, merged) == engine.finish(prepared, one)
    assert [e.row for e in merged.rules["LL104"].examples] == \
        [e.row for e in one.rules["LL104"].examples]


def test_merge_keeps_the_first_examples_by_key_whatever_the_order():
    def part(k, rows):
        examples = tuple(Example(k, r, (), None) for r in rows)
        return Partial("s", 2, {"LL100": RulePartial(rows=len(rows), examples=examples)},
                       rows=10, tokens=100, chunks=1)

    merged = merge(part(2, [20, 21]), part(0, [5, 9]), part(1, [12]))
    assert [e.key for e in merged.rules["LL100"].examples] == [(0, 5), (0, 9)]
    assert merged.rules["LL100"].rows == 5 and merged.rows == 30


def test_skip_reason_is_the_lowest_keys_and_by_design_the_last_skips():
    early = RulePartial(skip=((0, 0), "early"), by_design=((0, 4), False))
    late = RulePartial(skip=((1, 8), "late"), by_design=((1, 8), True))

    def wrap(p):
        return Partial("s", 1, {"LL100": p}, rows=1, tokens=1, chunks=1)

    for order in ((early, late), (late, early)):
        merged = merge(*map(wrap, order)).rules["LL100"]
        assert merged.skip == ((0, 0), "early")
        assert merged.by_design == ((1, 8), True)


def test_merge_refuses_parts_of_other_sources(three_parts):
    _, _, (a, b, _) = three_parts
    from dataclasses import replace

    with pytest.raises(ValueError, match="one source"):
        merge(a, replace(b, source="other"))
    with pytest.raises(ValueError):
        merge()


def test_a_whole_dataset_rule_judges_every_part():
    rows = _fixed_rows()
    for r in rows:
        r["labels"] = [IGNORE] * len(r["labels"])
    prepared, _ = engine.prepare(chunks_of(rows, 3), **settings_for(2))
    parts = [engine.check_part(prepared, chunks_of(rows[a:b], 3), part=i, row_start=a)
             for i, (a, b) in enumerate([(0, 4), (4, 10)])]
    assert "LL102" in {f.code for f in engine.finish(prepared, merge(*parts)).findings}
    rows[9]["labels"][-1] = EOS  # one supervised target, in the last part only
    parts[1] = engine.check_part(prepared, chunks_of(rows[4:10], 3), part=1, row_start=4)
    assert "LL102" not in {f.code for f in engine.finish(prepared, merge(*parts)).findings}


def test_a_part_checked_in_another_process_merges_after_pickling(three_parts):
    import pickle

    prepared, _, (a, b, c) = three_parts
    there = pickle.loads(pickle.dumps(prepared))
    sent = [pickle.loads(pickle.dumps(p)) for p in (a, b, c)]
    assert sent == [a, b, c]
    assert engine.finish(there, merge(*sent)) == engine.finish(prepared, merge(a, b, c))
