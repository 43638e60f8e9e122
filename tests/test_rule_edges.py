"""Every rule on degenerate batches and in every container: no crash, no stray finding.

The inputs are the rule pages' own examples (each rule's bad and good batches) plus batches at
the edges: empty rows, one-token rows, all padding, no attention_mask, no labels.
"""

import numpy as np
import pytest

import labellint
from labellint import pages

RULES = [r for r in labellint.all_rules() if r.per != "loss"]  # loss rules: test_loss.py
FACTS = dict(pad_id=0, bos_id=1, eos_id=2, vocab_size=50, add_bos=True)
EDGES = {
    "empty rows": {"input_ids": [[], [1, 5, 2], []], "labels": [[], [-100, 5, 2], []]},
    "one-token rows": {"input_ids": [[1], [2], [5]], "labels": [[-100], [2], [5]]},
    "all padding": {"input_ids": [[0, 0], [0, 0]], "attention_mask": [[0, 0], [0, 0]],
                    "labels": [[-100, -100], [-100, -100]]},
    "no attention_mask": {"input_ids": [[1, 5, 6, 2, 0]], "labels": [[-100, 5, 6, 2, -100]]},
    "no labels": {"input_ids": [[1, 5, 6, 2, 0]], "attention_mask": [[1, 1, 1, 1, 0]]},
    "one row, one token, no facts": {"input_ids": [[7]]},
}
PAGE_EXAMPLES = [
    pytest.param(e, id=f"{r.code}-{e.section}-{i}")
    for r in RULES for i, e in enumerate(pages.examples(pages.read_page(r)))
]


@pytest.mark.parametrize("edge", list(EDGES), ids=list(EDGES))
@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.code)
def test_rule_on_edge_batches_reports_only_rows_that_exist(rule, edge):
    batch = EDGES[edge]
    report = labellint.check(batch, select=[rule.code], **FACTS)
    n_rows = len(batch["input_ids"])
    for f in report.findings:
        assert f.code == rule.code
        assert 0 < f.count_rows <= n_rows and all(0 <= r < n_rows for r in f.rows)


def test_edge_batches_report_what_is_wrong_with_them():
    found = {edge: {f.code for f in labellint.check(b, **FACTS).findings}
             for edge, b in EDGES.items()}
    assert found["empty rows"] == {"LL101"}
    assert found["all padding"] == {"LL101", "LL102"}
    assert found["no attention_mask"] == set()
    assert found["no labels"] == set()
    # A label at position 0 is never a target (the model shifts), so no row has one; [BOS]
    # alone has no EOS, [EOS] alone no BOS, [5] alone neither.
    assert found["one-token rows"] == {"LL101", "LL102", "LL402", "LL404"}


def _namespace(example):
    namespace = {}
    exec(compile(example.code, "<rule page example>", "exec"), namespace)
    return namespace["batch"], namespace.get("facts", {})


def _summary(report):
    return [(f.code, f.rows, f.positions, f.count_rows, f.count_tokens) for f in report.findings]


def _rectangular(batch):
    lengths = {len(row) for column in batch.values() for row in column}
    return len(lengths) == 1


@pytest.mark.parametrize("example", PAGE_EXAMPLES)
def test_numpy_and_torch_give_the_findings_of_lists(example):
    torch = pytest.importorskip("torch")
    batch, facts = _namespace(example)
    if not _rectangular(batch):
        pytest.skip("a ragged example has no tensor form")
    expected = _summary(labellint.check(batch, **facts))
    for dtype in (np.int32, np.int64):
        as_numpy = {k: np.asarray(v, dtype=dtype) for k, v in batch.items()}
        assert _summary(labellint.check(as_numpy, **facts)) == expected
    as_torch = {k: torch.tensor(v) for k, v in batch.items()}
    if "attention_mask" in as_torch:
        as_torch["attention_mask"] = as_torch["attention_mask"].bool()
    assert _summary(labellint.check(as_torch, **facts)) == expected


@pytest.mark.parametrize("example", PAGE_EXAMPLES)
def test_a_batch_and_its_rows_one_by_one_give_the_same_row_findings(example):
    """A DataLoader of one-row batches numbers rows across batches: the same rows are found."""
    batch, facts = _namespace(example)
    whole = labellint.check(batch, **facts)
    n = len(batch["input_ids"])
    one_by_one = labellint.check(iter([{k: [v[i]] for k, v in batch.items()} for i in range(n)]),
                                 **facts)

    def row_findings(report):
        return {f.code: (f.rows, f.count_rows) for f in report.findings if f.code != "LL102"}

    assert row_findings(one_by_one) == row_findings(whole)
