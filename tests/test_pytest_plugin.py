"""The `labellint` fixture, in real pytest runs of a small generated training repo.

Each test writes a repo (a pyproject with [tool.labellint], a collator module built on
transformers' collators, a conftest with a tokenizer from labellint.testing, tests that use the
fixture) and runs pytest in a subprocess, where the fixture comes from the installed `pytest11`
entry point and nothing else.
"""

import re
import textwrap

import pytest

# Every test here trains with a Trainer or runs pytest in a process that imports
# transformers: `-m "not slow"` leaves them to CI.
pytestmark = pytest.mark.slow

pytest_plugins = ["pytester"]
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

# A long question/answer row and two short ones: DataCollatorForSeq2Seq pads rows 1 and 2, so
# any label put on padding is in those rows and not in row 0.
COLLATE = '''
from transformers import DataCollatorForLanguageModeling, DataCollatorForSeq2Seq

PAIRS = [("what is the capital of france? tell me about it", "the capital of france is paris."),
         ("hello", "hi!"), ("good morning", "good morning to you.")]


def rows(tok):
    """Prompt masked with -100, answer and EOS trained."""
    out = []
    for question, answer in PAIRS:
        prompt = tok(f"question: {question} answer: ")["input_ids"]
        target = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        out.append({"input_ids": prompt + target, "attention_mask": [1] * len(prompt + target),
                    "labels": [-100] * len(prompt) + target})
    return out


def seq2seq_batch(tok, label_pad_token_id=-100):
    # label_pad_token_id=tok.pad_token_id is the mistake: padding gets a label.
    collator = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=label_pad_token_id)
    return collator(rows(tok))


def lm_batch(tok):
    """Causal-LM labels from DataCollatorForLanguageModeling: every pad id masked."""
    texts = [f"question: {q} answer: {a}" for q, a in PAIRS]
    features = [{"input_ids": tok(t)["input_ids"] + [tok.eos_token_id]} for t in texts]
    return DataCollatorForLanguageModeling(tok, mlm=False)(features)
'''

CONFTEST = '''
import pytest

from labellint.testing import tiny_tokenizer


@pytest.fixture(scope="session")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="session")
def eos_pad_tokenizer():
    """pad_token == eos_token, as many fine-tuning recipes set it."""
    return tiny_tokenizer(pad_is_eos=True)
'''

PYTEST_INI = '''
[tool.pytest.ini_options]
pythonpath = ["."]
'''


def make_repo(pytester, tests: str, labellint_table: str = "") -> None:
    table = f"[tool.labellint]\n{textwrap.dedent(labellint_table)}\n" if labellint_table else ""
    pytester.makefile(".toml", pyproject=table + PYTEST_INI)
    pytester.makepyfile(collate=COLLATE, conftest=CONFTEST,
                        test_data=textwrap.dedent(tests))


def run(pytester, *args):
    # A fresh process, with the fixture from the installed entry point alone. (pytester's
    # in-process runs drop the modules a run imported, and torch does not survive a re-import.)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


CLEAN_AND_BROKEN = '''
from collate import seq2seq_batch


def test_clean_batch_passes(labellint, tokenizer):
    report = labellint.assert_clean(seq2seq_batch(tokenizer), tokenizer=tokenizer)
    assert not report.findings


def test_labels_on_padding_fails(labellint, tokenizer):
    batch = seq2seq_batch(tokenizer, label_pad_token_id=tokenizer.pad_token_id)
    labellint.assert_clean(batch, tokenizer=tokenizer)


def test_report_can_be_inspected(labellint, tokenizer):
    batch = seq2seq_batch(tokenizer, label_pad_token_id=tokenizer.pad_token_id)
    report = labellint.check(batch, tokenizer=tokenizer)
    assert [(f.code, f.rows) for f in report.findings] == [("LL103", (1, 2))]
'''


@pytest.mark.parametrize("assertion", ["rewrite", "plain"])
def test_failure_message_is_the_report_with_and_without_rewriting(pytester, assertion):
    make_repo(pytester, CLEAN_AND_BROKEN)
    result = run(pytester, f"--assert={assertion}", "--color=no")
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    failure = out[out.index("test_labels_on_padding_fails"):]
    assert "DataCheckFailed" in failure
    # The first line (what -rf and CI summaries show) names the rule.
    assert re.search(r"DataCheckFailed: LL103 labels-on-padding \(labellint found 1 problem\)",
                     failure)
    # Which rule, which rows (1 and 2 are padded), the token strip, and the fix.
    assert "LL103 (error)" in failure and "[labels-on-padding]" in failure
    assert re.search(r"rows: 1 \(positions [\d-]+\), 2 \(positions [\d-]+\)\n", failure)
    assert "row 0" not in failure
    assert re.search(r"row 1: .*\{\[<pad>", failure)  # the strip: padding with a label
    assert "help: set labels to -100 wherever attention_mask == 0" in failure
    # labellint's own frames are hidden: the traceback ends in the test's line.
    assert "pytest_plugin.py" not in out and "api.py" not in out
    assert "\x1b[" not in out


def test_strip_is_coloured_only_when_pytest_has_colour(pytester):
    make_repo(pytester, CLEAN_AND_BROKEN)
    coloured = run(pytester, "--color=yes", "-k", "labels_on_padding").stdout.str()
    # In colour the states are colours, not brackets.
    assert "\x1b[" in coloured and "{[<pad>" not in coloured
    assert "LL103" in coloured and "help:" in coloured


def test_unknown_key_in_pyproject_is_one_clear_error(pytester):
    make_repo(pytester, CLEAN_AND_BROKEN, 'ignor = ["LL103"]')
    result = run(pytester, "--color=no")
    result.assert_outcomes(errors=3)  # at the fixture's set-up, before any check
    out = result.stdout.str()
    assert "LabelLintError" in out and "has no setting 'ignor'" in out
    assert "DataCheckFailed" not in out and "config.py" not in out


FAIL_ON = '''
import pytest

from collate import lm_batch

from labellint import LabelLintError


# DataCollatorForLanguageModeling with pad == eos masks every EOS: LL403 (an error, the model
# never learns to stop) and LL410 (a warning naming the cause).
def test_error_fails_with_fail_on_error(labellint, eos_pad_tokenizer):
    labellint.assert_clean(lm_batch(eos_pad_tokenizer), eos_pad_tokenizer, fail_on="error")


def test_warning_passes_with_fail_on_error(labellint, eos_pad_tokenizer):
    report = labellint.assert_clean(lm_batch(eos_pad_tokenizer), eos_pad_tokenizer,
                                    fail_on="error", ignore=["eos-never-supervised"])
    assert [f.code for f in report.findings] == ["LL410"]


def test_warning_fails_by_default(labellint, eos_pad_tokenizer):
    labellint.assert_clean(lm_batch(eos_pad_tokenizer), eos_pad_tokenizer, ignore=["LL403"])


def test_select_replaces_the_selection(labellint, eos_pad_tokenizer):
    report = labellint.assert_clean(lm_batch(eos_pad_tokenizer), eos_pad_tokenizer,
                                    select=["LL1"])
    assert not report.findings


@pytest.mark.parametrize("bad", [{"ignore": ["LL999"]}, {"fail_on": "fatal"},
                                 {"select": "LL403"}])
def test_bad_argument_is_an_error_not_a_finding(labellint, eos_pad_tokenizer, bad):
    with pytest.raises(LabelLintError) as e:
        labellint.assert_clean(lm_batch(eos_pad_tokenizer), eos_pad_tokenizer, **bad)
    assert "\\n" not in str(e.value) and "LL403" not in str(e.value).replace("'LL403'", "")


def test_bad_argument_reads_as_one_line(labellint, eos_pad_tokenizer):
    labellint.assert_clean(lm_batch(eos_pad_tokenizer), eos_pad_tokenizer, ignore=["LL999"])
'''


def test_fail_on_ignore_and_select_arguments(pytester, monkeypatch):
    make_repo(pytester, FAIL_ON)
    monkeypatch.setenv("COLUMNS", "250")  # summary lines in full
    result = run(pytester, "--color=no", "-rf")
    result.assert_outcomes(passed=5, failed=3)
    result.stdout.fnmatch_lines([  # the summary line names what was found
        "FAILED test_data.py::test_error_fails_with_fail_on_error - "
        "LL403 eos-never-supervised, LL410 pad-is-eos (labellint found 2 problems)",
        "FAILED test_data.py::test_warning_fails_by_default - "
        "LL410 pad-is-eos (labellint found 1 problem)",
        "FAILED test_data.py::test_bad_argument_reads_as_one_line - *LabelLintError: "
        "unknown rule selector 'LL999': not a code, code prefix or name",
    ])
    out = result.stdout.str()
    by_default = out[out.index("_ test_warning_fails_by_default _"):
                     out.index("_ test_bad_argument_reads_as_one_line _")]
    assert "LL410 (warning)" in by_default and "LL403 (error)" not in by_default


CONFIGURED = '''
from collate import lm_batch, seq2seq_batch


def test_ignore_in_pyproject_turns_the_failure_into_a_pass(labellint, tokenizer):
    batch = seq2seq_batch(tokenizer, label_pad_token_id=tokenizer.pad_token_id)
    labellint.assert_clean(batch, tokenizer)       # ignore = ["labels-on-padding"]


def test_ignore_argument_adds_to_the_table(labellint, tokenizer):
    batch = seq2seq_batch(tokenizer, label_pad_token_id=tokenizer.pad_token_id)
    report = labellint.check(batch, tokenizer, ignore=["LL4"])
    assert report.findings == []                   # LL103 stays ignored


def test_settings_come_from_pyproject(labellint, eos_pad_tokenizer):
    report = labellint.check(lm_batch(eos_pad_tokenizer))  # no tokenizer given: the table's
    facts = report.sources[0].facts.describe()
    assert facts["eos_id"] == {"value": eos_pad_tokenizer.eos_token_id, "from": "tokenizer"}
    assert facts["max_length"] == {"value": 64, "from": "given"}
    assert [f.code for f in report.findings] == ["LL403"]   # select = ["LL1", "LL403"]
    finding = report.findings[0]
    assert (finding.rows, finding.count_rows) == ((0,), 3)  # max-examples = 1


def test_call_arguments_override_the_table(labellint, eos_pad_tokenizer):
    report = labellint.check(lm_batch(eos_pad_tokenizer), max_length=128, select=["LL4"],
                             max_examples=2)
    assert report.sources[0].facts.max_length == 128
    assert {f.code for f in report.findings} == {"LL403", "LL410"}
    assert all(len(f.rows) == 2 for f in report.findings)
'''


def test_settings_from_the_repos_pyproject(pytester):
    from labellint.testing import tiny_tokenizer

    tiny_tokenizer(pad_is_eos=True).save_pretrained(pytester.path / "artifacts" / "tok")
    make_repo(pytester, CONFIGURED, '''
        select = ["LL1", "LL403"]
        ignore = ["labels-on-padding"]
        tokenizer = "artifacts/tok"
        max-length = 64
        max-examples = 1
    ''')
    run(pytester).assert_outcomes(passed=4)


def test_loading_the_plugin_imports_nothing_heavy():
    # pytest loads the plugin in every run of every repo that has labellint installed.
    import subprocess
    import sys

    code = ("import sys, labellint.integrations.pytest_plugin; "
            "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'tokenizers', "
            "'numpy', 'pyarrow', 'rich') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def fixture_for(tmp_path, table: str):
    """The fixture's object for a repo whose pyproject holds `table`, without a pytest run."""
    from labellint.config import load_config
    from labellint.integrations.pytest_plugin import LabelLint

    (tmp_path / "pyproject.toml").write_text(f"[tool.labellint]\n{textwrap.dedent(table)}")
    return LabelLint(load_config(start=tmp_path))


def test_call_arguments_are_laid_over_the_table(tmp_path):
    lint = fixture_for(tmp_path, '''
        select = ["LL1"]
        ignore = ["LL105"]
        eos-id = 2
        max-examples = 3
        [columns]
        input-ids = "tokens"
        labels = "targets"
        [options.LL105]
        min-tokens = 4
        [options.LL407]
        sample_rows = 8
    '''.replace("[columns]", "[tool.labellint.columns]")
       .replace("[options.", "[tool.labellint.options."))
    given = lint._arguments("batch", None, ["LL4"], ["LL404"], {
        "eos_id": 7, "columns": {"labels": "y"}, "options": {"LL105": {"min_tokens": 8}}})
    assert given["select"] == ["LL4"]                     # replaces
    assert given["ignore"] == ["LL105", "LL404"]          # adds
    assert given["eos_id"] == 7 and given["max_examples"] == 3
    assert given["columns"] == {"input_ids": "tokens", "labels": "y"}
    assert given["options"] == {"LL105": {"min_tokens": 8}, "LL407": {"sample_rows": 8}}
    kept = lint._arguments("batch", None, None, None, {})
    assert kept["select"] == ["LL1"] and kept["ignore"] == ["LL105"]


def test_per_path_ignores_apply_to_paths_only(tmp_path):
    import json

    lint = fixture_for(tmp_path, '''
        eos-id = 2
        [tool.labellint.per-path-ignores]
        "data/*" = ["fully-masked-row"]
    ''')
    rows = [{"input_ids": [1, 5, 6, 2], "labels": [-100, -100, -100, -100]},
            {"input_ids": [1, 5, 6, 2], "labels": [-100, -100, 6, 2]}]
    (tmp_path / "data").mkdir()
    path = tmp_path / "data" / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert "LL101" not in [f.code for f in lint.check(path).findings]
    assert "LL101" in [f.code for f in lint.check(rows).findings]


def test_each_project_of_a_monorepo_gets_its_own_table(pytester):
    # The root pyproject holds pytest's settings; the project below holds its labellint table.
    pytester.makefile(".toml", pyproject=PYTEST_INI)
    pytester.makepyfile(collate=COLLATE, conftest=CONFTEST)
    project = pytester.mkpydir("project")
    (project / "pyproject.toml").write_text('[tool.labellint]\nignore = ["labels-on-padding"]\n')
    (project / "test_project.py").write_text(textwrap.dedent('''
        from collate import seq2seq_batch

        def test_ignored_here(labellint, tokenizer):
            batch = seq2seq_batch(tokenizer, label_pad_token_id=tokenizer.pad_token_id)
            labellint.assert_clean(batch, tokenizer=tokenizer)
    '''))
    pytester.makepyfile(test_root=textwrap.dedent('''
        from collate import seq2seq_batch

        def test_not_ignored_here(labellint, tokenizer):
            batch = seq2seq_batch(tokenizer, label_pad_token_id=tokenizer.pad_token_id)
            labellint.assert_clean(batch, tokenizer=tokenizer)
    '''))

    result = run(pytester, "--color=no")

    result.assert_outcomes(passed=1, failed=1)
    assert "test_root.py::test_not_ignored_here" in result.stdout.str().split("short test")[-1]


MARKED = '''
import pytest

from collate import lm_batch, rows, seq2seq_batch
from transformers import DataCollatorForSeq2Seq


def no_eos_batch(tok):
    """Answers with no EOS: missing-eos, a warning, and nothing else."""
    features = [{k: v[:-1] for k, v in row.items()} for row in rows(tok)]
    return DataCollatorForSeq2Seq(tok, padding=True)(features)


def test_unmarked_fails_on_the_label_on_padding(labellint, tokenizer):
    labellint.assert_clean(seq2seq_batch(tokenizer, label_pad_token_id=tokenizer.pad_token_id),
                           tokenizer)


@pytest.mark.labellint(ignore=["labels-on-padding"])
def test_marker_ignore_adds_to_the_table(labellint, tokenizer):
    labellint.assert_clean(seq2seq_batch(tokenizer, label_pad_token_id=tokenizer.pad_token_id),
                           tokenizer)


def test_unmarked_fails_on_a_warning(labellint, tokenizer):
    labellint.assert_clean(no_eos_batch(tokenizer), tokenizer)


@pytest.mark.labellint(fail_on="error")
def test_marker_fail_on_error_lets_a_warning_pass(labellint, tokenizer):
    report = labellint.assert_clean(no_eos_batch(tokenizer), tokenizer)
    assert [f.code for f in report.findings] == ["LL404"]


@pytest.mark.labellint(select=["LL1"])
def test_marker_select_is_replaced_by_the_call(labellint, eos_pad_tokenizer):
    batch = lm_batch(eos_pad_tokenizer)
    assert labellint.check(batch, eos_pad_tokenizer).findings == []       # LL1 only
    found = labellint.check(batch, eos_pad_tokenizer, select=["LL403"]).findings
    assert [f.code for f in found] == ["LL403"]


def test_unmarked_has_no_max_length(labellint, tokenizer):
    report = labellint.check(no_eos_batch(tokenizer), tokenizer, select=["LL409"])
    assert report.findings == []                   # skipped: the truncation length is unknown


@pytest.mark.labellint(max_length=4)
def test_marker_facts_reach_the_check(labellint, tokenizer):
    report = labellint.check(no_eos_batch(tokenizer), tokenizer, select=["LL409"])
    assert [f.code for f in report.findings] == ["LL409"]


@pytest.mark.labellint(ignore="LL103")
def test_marker_with_a_string_ignore_is_one_line(labellint, tokenizer):
    labellint.check(seq2seq_batch(tokenizer), tokenizer)


@pytest.mark.labellint("LL103")
def test_marker_with_a_positional_argument_is_one_line(labellint):
    pass
'''


def test_a_marker_sets_one_tests_settings(pytester):
    make_repo(pytester, MARKED, 'ignore = ["LL105"]')
    result = run(pytester, "--strict-markers", "-rfE")
    result.assert_outcomes(passed=5, failed=3, errors=1)
    out = result.stdout.str()
    # At pytest's default width of 80 the summary line is cut, but after the code.
    assert re.search(r"FAILED test_data.py::test_unmarked_fails_on_the_label_on_padding - "
                     r"LL103", out)
    assert "FAILED test_data.py::test_unmarked_fails_on_a_warning" in out
    assert "the marker's ignore must be a list of rule codes or names, not the string 'LL103'" \
        in out
    assert "@pytest.mark.labellint takes settings by name" in out
    markers = run(pytester, "--markers").stdout.str()
    assert "@pytest.mark.labellint(**settings)" in markers
