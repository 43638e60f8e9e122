"""`[tool.labellint]` of the wrong shape: one line naming the file (and the key), exit code 2."""

import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import labellint
from labellint.config import load_config
from labellint.errors import LabelLintError

DEPENDS = '[project]\nname = "mine"\ndependencies = ["labellint"]\n'
NESTED = "[" * 3000 + "]" * 3000

SHAPES = [
    ("tool = 5\n" + DEPENDS, "[tool] must be a table, not 5"),
    ("[tool]\nlabellint = 5\n", "[tool.labellint] must be a table, not 5"),
    ("[tool]\nlabellint = [1, 2]\n", "[tool.labellint] must be a table, not [1, 2]"),
    (f"[tool.labellint]\nselect = {NESTED}\n", "nested too deeply"),
    ("[tool.labellint]\nx = " + "{a=" * 3000 + "1" + "}" * 3000 + "\n", "nested too deeply"),
    ("[tool.labellint\nselect = []\n", "not valid TOML"),
    (b'[tool.labellint]\nselect = ["\xff"]\n', "not UTF-8 text"),
    ('[tool.labellint]\nselect = "LL1"\n',
     "[tool.labellint] select must be a list of rule codes or names, not the string 'LL1'"),
    ('[tool.labellint]\nignore = "LL1"\n', "[tool.labellint] ignore must be a list"),
    ('[tool.labellint.per-path-ignores]\n"*" = "LL1"\n',
     "per-path-ignores '*' must be a list of rule codes or names, not the string 'LL1'"),
    ('[tool.labellint.options.LL105]\nmin-tokens = "x"\n',
     "[tool.labellint].options: LL105 option min_tokens must be like its default 2"),
    ("[tool.labellint.options.LL999]\nmin-tokens = 1\n", "[tool.labellint].options: no rule"),
    ("[tool.labellint]\npad-id = 100000000000000000000\n", "pad-id must be a whole number"),
    ("[tool.labellint]\npad-id = -1\n", "pad-id must be a whole number from 0"),
    ("[tool.labellint]\nvocab-size = 0\n", "vocab-size must be a whole number from 1"),
    ("[tool.labellint]\nmax-examples = -1\n", "max-examples must be a whole number from 0"),
    ('[tool.labellint]\ntokenizer = ""\n', "tokenizer must be a folder path, not an empty"),
    ('[tool.labellint.columns]\ninput-ids = ""\n', "input-ids must be a column name"),
]


def _write(folder, body):
    file = folder / "pyproject.toml"
    file.write_bytes(body if isinstance(body, bytes) else body.encode())
    return file


@pytest.mark.parametrize("body, message", SHAPES, ids=lambda v: repr(v)[:30])
def test_a_config_of_the_wrong_shape_is_one_error_naming_the_file(tmp_path, body, message):
    file = _write(tmp_path, body)
    with pytest.raises(LabelLintError) as error:
        load_config(start=tmp_path)
    text = str(error.value)
    assert "\n" not in text and text.startswith(str(file)) and message in text


@pytest.mark.parametrize("body, message", SHAPES[:8], ids=lambda v: repr(v)[:30])
def test_the_command_line_exits_2_with_one_line_on_a_config_of_the_wrong_shape(
        tmp_path, body, message):
    pq.write_table(pa.table({"input_ids": [[1, 2, 3]]}), tmp_path / "d.parquet")
    file = _write(tmp_path, body)
    result = subprocess.run([sys.executable, "-m", "labellint", "check", "d.parquet"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "internal error" not in result.stderr
    assert str(file) in result.stderr and message in result.stderr


def test_a_pyproject_whose_tool_is_not_a_table_and_not_ours_is_passed_over(tmp_path):
    _write(tmp_path, "tool = 5\n")
    assert load_config(start=tmp_path).path is None


def test_an_explicit_config_file_whose_tool_is_not_a_table_is_refused(tmp_path):
    (tmp_path / "settings.toml").write_text("tool = 5\n")
    with pytest.raises(LabelLintError, match=r"settings.toml: \[tool\] must be a table"):
        load_config(tmp_path / "settings.toml")


@pytest.mark.parametrize("kwargs, message", [
    (dict(select="LL1"), "select must be a list of rule codes or names, not the string"),
    (dict(ignore=5), "ignore must be a list of rule codes or names, not 5"),
    (dict(options={"LL105": 5}), "options['LL105'] must map option names to values"),
    (dict(options=[1]), "options must map rule codes or names"),
    (dict(columns=5), "columns must map labellint's column names to yours"),
])
def test_arguments_laid_over_the_table_are_checked_before_the_merge(tmp_path, kwargs, message):
    _write(tmp_path, '[tool.labellint]\nignore = ["LL105"]\n[tool.labellint.columns]\n'
                     'labels = "labels"\n[tool.labellint.options.LL105]\nmin-tokens = 3\n')
    with pytest.raises(LabelLintError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_config(start=tmp_path).check_kwargs(**kwargs)


def test_a_well_formed_table_still_gives_its_settings(tmp_path):
    _write(tmp_path, '[tool.labellint]\nselect = ["LL1"]\npad-id = 0\n'
                     '[tool.labellint.per-path-ignores]\n"*" = ["LL105"]\n')
    config = load_config(start=tmp_path)
    assert config.check_kwargs()["select"] == ["LL1"] and config.ignores_for("x") == ["LL105"]
    assert labellint.check({"input_ids": [[1, 2, 0]]}, **{
        k: v for k, v in config.check_kwargs().items() if k in ("select", "pad_id")}).sources
