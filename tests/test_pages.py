"""The rule pages are the rules' spec: one per rule, a fixed skeleton, examples that run."""

from pathlib import Path

import pytest

import labellint
from labellint import pages

RULES = labellint.all_rules()
ROOT = Path(__file__).parent.parent


def test_one_page_per_rule_and_back():
    on_disk = {p.name for p in (ROOT / "rules").glob("LL*.md")}
    assert on_disk == {r.page for r in RULES}


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.code)
def test_page_follows_the_skeleton(rule):
    text = pages.read_page(rule)
    assert text.splitlines()[0] == f"# {rule.code} {rule.name}"
    assert tuple(pages.sections(text)) == pages.HEADINGS


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.code)
def test_page_says_how_labellint_fix_treats_the_rule(rule):
    """One `Fix:` line in *What it does*: safe, unsafe or none, as the rule's repair is."""
    what = pages.sections(pages.read_page(rule))["What it does"]
    (line,) = [x for x in what.splitlines() if x.startswith("Fix: ")]
    kind = "none" if rule.repair is None else "safe" if rule.repair.safe else "unsafe"
    assert line.split()[1].strip(".") == kind
    if rule.repair is not None:
        assert rule.repair.does in line


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.code)
def test_page_has_a_bad_and_a_good_example(rule):
    found = pages.examples(pages.read_page(rule))
    bad = [e for e in found if e.section == "Example"]
    good = [e for e in found if e.section == "Use instead"]
    assert bad and good
    assert all(rule.code in e.expect for e in bad), "every bad example must expect its rule"


EXAMPLES = [(r, e) for r in RULES if pages.page_path(r).exists()
            for e in pages.examples(pages.read_page(r))]


@pytest.mark.parametrize("rule, example", EXAMPLES,
                         ids=[f"{r.code}-{e.section}-{i}" for i, (r, e) in enumerate(EXAMPLES)])
def test_page_example_produces_exactly_its_codes(rule, example):
    report = pages.run_example(example)
    assert {f.code for f in report.findings} == set(example.expect), str(report)


def test_index_is_current():
    assert (ROOT / "rules" / "README.md").read_text() == pages.index()


def test_options_section_names_every_option():
    for rule in RULES:
        body = pages.sections(pages.read_page(rule))["Options"]
        for option in rule.options:
            assert f"`{option}`" in body, f"{rule.code} page does not document {option}"
