"""Plan: the settings every surface resolves once (rules, options, facts, tokenizer, columns)."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import labellint
from labellint import LabelLintError
from labellint import hf_facts, plan as plan_module, tokenizer_files
from labellint.cli import main
from labellint.config import load_config
from labellint.plan import Plan

BAD = {
    "input_ids":      [[1, 7, 8, 9, 2, 0], [1, 7, 9, 2, 0, 0]],
    "attention_mask": [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]],
    "labels":         [[-100, -100, 8, 9, 2, -100], [-100, -100, 9, 2, 0, 0]],
}
FACTS = dict(pad_id=0, bos_id=1, eos_id=2, vocab_size=50)


def write_parquet(path, columns=BAD):
    pq.write_table(pa.table({k: pa.array(v, pa.list_(pa.int32())) for k, v in columns.items()}),
                   path)
    return str(path)


def counted(monkeypatch, module, name):
    """Replace module.name by a wrapper that counts its calls; the list of calls comes back."""
    calls = []
    real = getattr(module, name)

    def wrapper(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


@pytest.fixture
def tokenizer_folder(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from labellint.testing import tiny_tokenizer

    tiny_tokenizer().save_pretrained(tmp_path / "tok")
    return str(tmp_path / "tok")


def test_the_command_line_loads_a_tokenizer_folder_once_for_every_path(
        tmp_path, tokenizer_folder, monkeypatch, capsys):
    paths = [write_parquet(tmp_path / f"{i}.parquet") for i in range(3)]
    # Every folder is loaded here, with the tokenizers library or with transformers.
    loads = counted(monkeypatch, tokenizer_files, "load_folder")
    # The tokenizer's facts (its probe encodings) are read once too, not once per path.
    probes = counted(monkeypatch, hf_facts, "tokenizer_facts")

    code = main(["check", *paths, "--isolated", "--tokenizer", tokenizer_folder,
                 "--format", "json"])

    data = json.loads(capsys.readouterr().out)
    assert code == 1 and sorted(data["facts"]) == sorted(paths)
    assert len(loads) == 1
    assert len([c for c in probes if c[0] is not None]) == 1


def test_the_command_line_checks_the_selection_once_for_every_path(tmp_path, monkeypatch,
                                                                      capsys):
    paths = [write_parquet(tmp_path / f"{i}.parquet") for i in range(3)]
    selections = counted(monkeypatch, plan_module, "select_rules")

    code = main(["check", *paths, "--isolated", "--select", "LL1", "--ignore", "LL105",
                 "--pad-id", "0", "--format", "json"])

    data = json.loads(capsys.readouterr().out)
    assert code == 1 and {f["code"] for f in data["findings"]} == {"LL103"}
    assert len(selections) == 1


def test_show_on_the_command_line_checks_the_selection_once(tmp_path, monkeypatch, capsys):
    path = write_parquet(tmp_path / "d.parquet")
    selections = counted(monkeypatch, plan_module, "select_rules")

    assert main(["show", path, "--row", "1", "--isolated", "--pad-id", "0"]) == 0
    assert "LL103" in capsys.readouterr().out
    assert len(selections) == 1


def test_per_path_ignores_leave_the_selection_checked_once(tmp_path, monkeypatch, capsys):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.labellint]\npad-id = 0\n[tool.labellint.per-path-ignores]\n'
        '"quiet.parquet" = ["labels-on-padding"]\n"off.parquet" = ["ALL"]\n')
    monkeypatch.chdir(tmp_path)
    loud, quiet, off = (write_parquet(tmp_path / f"{n}.parquet") for n in ("loud", "quiet",
                                                                         "off"))
    selections = counted(monkeypatch, plan_module, "select_rules")

    main(["check", "loud.parquet", "quiet.parquet", "off.parquet", "--format", "json"])

    out = capsys.readouterr()
    data = json.loads(out.out)
    assert [(f["code"], f["source"]) for f in data["findings"]] == [("LL103", "loud.parquet")]
    assert "off.parquet: every selected rule is ignored for it" in out.err
    assert len(selections) == 1


def test_check_is_a_plan_run():
    kwargs = dict(select=["LL1", "LL4"], options={"LL105": {"min_tokens": 3}}, max_examples=1,
                  **FACTS)
    assert labellint.check(BAD, name="b", **kwargs).to_json() == \
        Plan(**kwargs).run(BAD, name="b").to_json()


def test_check_with_a_tokenizer_is_a_plan_run(tok):
    assert labellint.check(BAD, tok, name="b").to_json() == \
        Plan(tok).run(BAD, name="b").to_json()


def test_a_plan_runs_over_many_sources_as_check_runs_each():
    p = Plan(**FACTS)
    other = dict(BAD, labels=[[-100, -100, 8, 9, 2, -100], [-100, -100, 9, 2, -100, -100]])
    assert [p.run(s).to_json() for s in (BAD, other, BAD)] == \
        [labellint.check(s, **FACTS).to_json() for s in (BAD, other, BAD)]


def test_the_settings_are_resolved_when_the_plan_is_built():
    p = Plan(select=iter(["LL1"]), ignore=iter(["few-supervised-tokens"]),
             options={"few-supervised-tokens": {"min_tokens": 3}, "LL103": {}}, pad_id=0)
    assert p.rules and all(r.code.startswith("LL1") and r.code != "LL105" for r in p.rules)
    assert set(p.options) == {r.code for r in p.rules}
    assert p.select == ["LL1"] and p.ignore == ["few-supervised-tokens"]  # read again later
    assert p.facts.pad_id == 0 and p.facts.origin["pad_id"] == "given"
    assert p.tokenizer is None and p.config.path is None


@pytest.mark.parametrize("bad, message", [
    (dict(select=["LL999"]), "unknown rule selector 'LL999'"),
    (dict(options={"LL105": {"nope": 1}}), "LL105 has no option 'nope'"),
    (dict(columns={"input_ids": ""}), "columns['input_ids'] must be the name"),
    (dict(max_examples=-1), "max_examples must be a whole number"),
    (dict(pad_id=-5), "pad_id must be a token id"),
    (dict(tokenizer="/no/such/folder"), "no such tokenizer folder"),
])
def test_a_bad_setting_fails_when_the_plan_is_built(bad, message):
    with pytest.raises(LabelLintError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Plan(**bad)


def test_ignoring_drops_rules_without_checking_the_selection_again(monkeypatch):
    p = Plan(pad_id=0)
    selections = counted(monkeypatch, plan_module, "select_rules")
    quiet = p.ignoring(["labels-on-padding", "LL4"])
    assert "LL103" not in {r.code for r in quiet.rules}
    assert not any(r.code.startswith("LL4") for r in quiet.rules)
    assert set(quiet.options) == {r.code for r in quiet.rules}
    assert "LL103" in {f.code for f in p.run(BAD).findings}  # the first plan is untouched
    assert "LL103" not in {f.code for f in quiet.run(BAD).findings}
    assert p.ignoring(["ALL"]).rules == ()
    assert selections == []


def test_for_path_applies_the_tables_per_path_ignores(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.labellint.per-path-ignores]\n"data/raw/*" = ["LL103"]\n')
    p = Plan(config=load_config(tmp_path / "pyproject.toml"), pad_id=0)
    assert "LL103" not in {r.code for r in p.for_path(tmp_path / "data/raw/a.parquet").rules}
    assert "LL103" in {r.code for r in p.for_path(tmp_path / "data/clean.parquet").rules}
    assert p.for_path(BAD) is p  # an in-memory source has no path to match


def test_with_objects_reads_the_facts_again_under_the_same_rules(tok):
    p = Plan(select=["LL1"], max_length=4)
    live = p.with_objects(tokenizer=tok, max_length=None)
    assert live.rules == p.rules and live.options == p.options
    assert live.tokenizer is tok and live.facts.eos_id == 2
    assert live.facts.origin["eos_id"] == "tokenizer" and live.facts.max_length == 4
    assert p.tokenizer is None and p.facts.eos_id is None  # the first plan is untouched


def test_from_config_lays_the_callers_settings_over_the_table(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.labellint]\nselect = ["LL1"]\nignore = ["LL105"]\npad-id = 3\n'
        'max-examples = 2\n')
    config = load_config(tmp_path / "pyproject.toml")
    p = Plan.from_config(config, ignore=["LL103"], pad_id=0)
    codes = {r.code for r in p.rules}
    assert codes and not {"LL103", "LL105"} & codes and all(c.startswith("LL1") for c in codes)
    assert p.facts.pad_id == 0 and p.max_examples == 2 and p.config is config
