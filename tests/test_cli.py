"""The command line through a real subprocess, on real files written by the tests."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).parent.parent
BAD = {
    "input_ids":      [[1, 7, 8, 9, 2, 0], [1, 7, 9, 2, 0, 0]],
    "attention_mask": [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]],
    "labels":         [[-100, -100, 8, 9, 2, -100], [-100, -100, 9, 2, 0, 0]],
}
GOOD = dict(BAD, labels=[[-100, -100, 8, 9, 2, -100], [-100, -100, 9, 2, -100, -100]])
FACT_FLAGS = ["--pad-id", "0", "--bos-id", "1", "--eos-id", "2", "--vocab-size", "50"]


def labellint(*args, env=None):
    return subprocess.run([sys.executable, "-m", "labellint", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=ROOT)


def write_parquet(path, columns):
    pq.write_table(pa.table({k: pa.array(v, pa.list_(pa.int32())) for k, v in columns.items()}),
                   path)
    return path


def write_jsonl(path, columns):
    rows = [{k: v[i] for k, v in columns.items()} for i in range(len(columns["input_ids"]))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_clean_data_exits_0(tmp_path):
    result = labellint("check", write_parquet(tmp_path / "good.parquet", GOOD), *FACT_FLAGS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All checks passed on 2 rows" in result.stdout


def test_findings_exit_1_with_the_finding_and_its_fix(tmp_path):
    path = write_parquet(tmp_path / "bad.parquet", BAD)
    result = labellint("check", path, *FACT_FLAGS)
    assert result.returncode == 1
    assert f"{path}[1]: LL103 (error) labels on padding in 1 row (2 tokens)" in result.stdout
    assert "help: set labels to -100" in result.stdout


def test_exit_zero_and_fail_on(tmp_path):
    path = write_parquet(tmp_path / "bad.parquet", BAD)
    assert labellint("check", path, *FACT_FLAGS, "--exit-zero").returncode == 0
    no_eos = write_parquet(tmp_path / "warning.parquet", {  # LL404, a warning, and nothing else
        "input_ids": [[1, 7, 8, 9]], "labels": [[-100, -100, 8, 9]]})
    assert labellint("check", no_eos, *FACT_FLAGS).returncode == 1
    assert labellint("check", no_eos, *FACT_FLAGS, "--fail-on", "error").returncode == 0
    assert labellint("check", path, *FACT_FLAGS, "--fail-on", "error").returncode == 1


def test_select_and_ignore(tmp_path):
    path = write_parquet(tmp_path / "bad.parquet", BAD)
    assert labellint("check", path, *FACT_FLAGS, "--ignore", "labels-on-padding").returncode == 0
    assert labellint("check", path, *FACT_FLAGS, "--select", "LL1").returncode == 1
    assert labellint("check", path, *FACT_FLAGS, "--select", "LL2,LL4").returncode == 0


def test_json_format(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", BAD)
    result = labellint("check", path, *FACT_FLAGS, "--format", "json")
    data = json.loads(result.stdout)
    assert data["version"] == 1
    (finding,) = data["findings"]
    assert set(finding) == {"code", "name", "severity", "message", "source", "rows",
                            "positions", "count_rows", "count_tokens", "total_rows",
                            "total_tokens", "fix", "doc"}
    assert (finding["code"], finding["rows"], finding["positions"]) == ("LL103", [1], [[4, 5]])
    assert data["facts"][str(path)]["pad_id"] == {"value": 0, "from": "given"}


def test_github_format(tmp_path):
    path = write_parquet(tmp_path / "bad.parquet", BAD)
    result = labellint("check", path, *FACT_FLAGS, "--format", "github")
    (line,) = result.stdout.splitlines()
    head, body = line.split("::")[1:]
    assert head == f"error file={path},title=LL103 labels-on-padding"
    assert body.startswith("labels on padding in 1 row (2 tokens). Rows: 1. Fix: set labels")


@pytest.mark.slow
def test_save_to_disk_folder_and_tokenizer_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    from labellint.testing import tiny_tokenizer

    tiny_tokenizer().save_pretrained(tmp_path / "tok")
    datasets.Dataset.from_dict(BAD).save_to_disk(str(tmp_path / "ds"))
    result = labellint("check", tmp_path / "ds", "--tokenizer", tmp_path / "tok",
                       "--format", "json")
    data = json.loads(result.stdout)
    assert [(f["code"], f["rows"]) for f in data["findings"]] == [("LL103", [1])]
    assert data["facts"][str(tmp_path / "ds")]["eos_id"] == {"value": 2, "from": "tokenizer"}


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing.parquet", "no such file or folder"),
    (lambda p: (p / "broken.parquet").write_bytes(b"not parquet") and p / "broken.parquet",
     "cannot read it"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "no dataset here"),
    (lambda p: (p / "data.csv").write_text("a,b\n") and p / "data.csv", "unknown format .csv"),
])
def test_unreadable_input_is_one_line_and_exit_2(tmp_path, make, message):
    path = make(tmp_path)
    result = labellint("check", path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert str(path) in result.stderr and "Traceback" not in result.stderr


def test_strings_column_is_exit_2(tmp_path):
    path = tmp_path / "text.parquet"
    pq.write_table(pa.table({"input_ids": [["a", "b"]]}), path)
    result = labellint("check", path)
    assert result.returncode == 2 and "input_ids holds lists of string" in result.stderr


def test_usage_errors_exit_2_with_one_line():
    for args in (["check"], ["frobnicate"], ["check", "x.parquet", "--format", "xml"]):
        result = labellint(*args)
        assert result.returncode == 2
        assert result.stderr.startswith("labellint: error:") and result.stderr.count("\n") == 1
    unknown = labellint("check", "x.parquet", "--select", "LL8")
    assert unknown.returncode == 2 and "unknown rule selector" in unknown.stderr
    loss_rules = labellint("check", "x.parquet", "--select", "LL9")
    assert loss_rules.returncode == 2 and "run `labellint loss`" in loss_rules.stderr


def test_rules_lists_every_rule():
    import labellint as ll

    result = labellint("rules")
    assert [line.split()[0] for line in result.stdout.splitlines()] == [
        r.code for r in ll.all_rules()]


def test_rule_prints_the_page_by_code_or_name():
    by_code = labellint("rule", "LL103")
    assert by_code.stdout.startswith("# LL103 labels-on-padding")
    assert labellint("rule", "labels-on-padding").stdout == by_code.stdout
    missing = labellint("rule", "LL999")
    assert missing.returncode == 2 and "no rule 'LL999'" in missing.stderr


@pytest.mark.slow
def test_the_wheel_carries_the_rule_pages(tmp_path):
    """`labellint rule` works from an installed wheel, not only from a checkout."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("labellint-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        z.extractall(tmp_path / "site")
    assert "labellint/pages/LL103-labels-on-padding.md" in names
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    result = subprocess.run([sys.executable, "-c",
                             "import labellint.pages as p, sys; print(p.pages_dir()); "
                             "sys.argv=['labellint','rule','LL103']; "
                             "from labellint.cli import main; main()"],
                            capture_output=True, text=True, env=env, cwd=tmp_path)
    assert str(tmp_path / "site") in result.stdout.splitlines()[0]
    assert "# LL103 labels-on-padding" in result.stdout


def test_a_folder_of_shards_is_one_source_numbered_across_shards(tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    write_parquet(folder / "part-0.parquet", GOOD)
    write_parquet(folder / "part-1.parquet", BAD)
    data = json.loads(labellint("check", folder, *FACT_FLAGS, "--format", "json").stdout)
    assert [(f["source"], f["rows"]) for f in data["findings"]] == [(str(folder), [3])]
    assert data["summary"]["rows"] == 4


def test_version():
    import labellint as ll

    assert labellint("--version").stdout.strip() == f"labellint {ll.__version__}"


def test_add_bos_flag_turns_on_missing_bos(tmp_path):
    path = write_parquet(tmp_path / "nobos.parquet", {"input_ids": [[7, 8, 9, 2]],
                                                      "labels": [[-100, 8, 9, 2]]})
    assert labellint("check", path, *FACT_FLAGS).returncode == 0
    result = labellint("check", path, *FACT_FLAGS, "--add-bos")
    assert result.returncode == 1 and "LL402 (warning)" in result.stdout


def test_a_json_array_file_is_asked_to_be_json_lines(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps([{"input_ids": [1, 2]}]))
    result = labellint("check", path)
    assert result.returncode == 2 and "JSON Lines" in result.stderr
