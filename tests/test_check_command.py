"""`labellint check` on saved datasets: every format, the JSON schema, configuration, bad input.

Each test writes real files and runs the command in a real subprocess, from a folder of its own
so that only the configuration the test writes applies.
"""

import gzip
import json
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import labellint
from labellint import engine

# Row 1 puts labels on padding (LL103, an error); row 2 has no EOS (LL404, a warning).
ROWS = {
    "input_ids":      [[1, 7, 8, 9, 2, 0], [1, 7, 9, 2, 0, 0], [1, 7, 8, 9, 9, 9]],
    "attention_mask": [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]],
    "labels":         [[-100, -100, 8, 9, 2, -100], [-100, -100, 9, 2, 0, 0],
                       [-100, -100, 8, 9, 9, 9]],
}
FACTS = ["--pad-id", "0", "--bos-id", "1", "--eos-id", "2", "--vocab-size", "50"]
EXPECTED = [("LL103", [1]), ("LL404", [2])]
FINDING_KEYS = {"code", "name", "severity", "message", "source", "rows", "positions",
                "count_rows", "count_tokens", "total_rows", "total_tokens", "fix", "doc"}


def run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "labellint", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)


def check_json(*args, cwd):
    result = run("check", *args, "--format", "json", cwd=cwd)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def found(data):
    return [(f["code"], f["rows"]) for f in data["findings"]]


def table(columns=ROWS):
    return pa.table({k: pa.array(v, pa.list_(pa.int32())) for k, v in columns.items()})


def rows_of(columns=ROWS):
    n = len(next(iter(columns.values())))
    return [{k: v[i] for k, v in columns.items()} for i in range(n)]


def write_jsonl(path, columns=ROWS, opener=open, extra=None):
    with opener(path, "wt") as f:
        for row in rows_of(columns):
            f.write(json.dumps(row | (extra or {})) + "\n")
    return path


def write_arrow_stream(path, t):
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, t.schema) as writer:
        writer.write_table(t)
    return path


def save_to_disk(path, columns=ROWS):
    from datasets import Dataset

    Dataset.from_dict(columns).save_to_disk(str(path))
    return path


WRITERS = {
    "parquet": lambda p: pq.write_table(table(), p / "d.parquet") or p / "d.parquet",
    "feather": lambda p: feather.write_feather(table(), p / "d.feather") or p / "d.feather",
    "arrow stream": lambda p: write_arrow_stream(p / "d.arrow", table()),
    "jsonl": lambda p: write_jsonl(p / "d.jsonl"),
    "jsonl.gz": lambda p: write_jsonl(p / "d.jsonl.gz", opener=gzip.open),
    "save_to_disk": lambda p: save_to_disk(p / "ds"),
}


@pytest.mark.parametrize("form", list(WRITERS))
def test_every_format_gives_the_same_findings(tmp_path, form):
    path = WRITERS[form](tmp_path)
    data = check_json(path, *FACTS, cwd=tmp_path)
    assert found(data) == EXPECTED
    assert {f["source"] for f in data["findings"]} == {str(path)}


def test_json_schema_is_stable(tmp_path):
    path = WRITERS["parquet"](tmp_path)
    data = check_json(path, *FACTS, cwd=tmp_path)
    assert set(data) == {"version", "findings", "facts", "summary"} and data["version"] == 1
    for f in data["findings"]:
        assert set(f) == FINDING_KEYS
        assert f["total_rows"] == 3 and f["total_tokens"] == 18
        assert f["doc"] == f"rules/{f['code']}-{f['name']}.md"
    labels_on_padding = data["findings"][0]
    assert labels_on_padding["positions"] == [[4, 5]] and labels_on_padding["count_tokens"] == 2
    assert data["facts"][str(path)]["eos_id"] == {"value": 2, "from": "given"}
    assert data["summary"]["errors"] == 1 and data["summary"]["warnings"] == 1


def test_exit_codes_follow_fail_on_and_exit_zero(tmp_path):
    path = WRITERS["parquet"](tmp_path)
    assert run("check", path, *FACTS, cwd=tmp_path).returncode == 1
    assert run("check", path, *FACTS, "--exit-zero", cwd=tmp_path).returncode == 0
    warning_only = pq.write_table(table({k: v[2:] for k, v in ROWS.items()}),
                                  tmp_path / "w.parquet") or tmp_path / "w.parquet"
    assert run("check", warning_only, *FACTS, cwd=tmp_path).returncode == 1
    assert run("check", warning_only, *FACTS, "--fail-on", "error", cwd=tmp_path).returncode == 0


def test_dataset_dict_names_every_split(tmp_path):
    from datasets import Dataset, DatasetDict

    good = {k: [v[0]] for k, v in ROWS.items()}
    DatasetDict({"train": Dataset.from_dict(ROWS), "test": Dataset.from_dict(good)}) \
        .save_to_disk(str(tmp_path / "dd"))
    data = check_json(tmp_path / "dd", *FACTS, cwd=tmp_path)
    assert set(data["summary"]["sources"]) == {str(tmp_path / "dd" / s) for s in ("train", "test")}
    assert {f["source"] for f in data["findings"]} == {str(tmp_path / "dd" / "train")}


def test_several_paths_each_finding_names_its_source_and_row(tmp_path):
    a = WRITERS["parquet"](tmp_path)
    b = WRITERS["jsonl"](tmp_path)
    data = check_json(a, b, *FACTS, cwd=tmp_path)
    assert [(f["source"], f["code"], f["rows"]) for f in data["findings"]] == \
        [(str(p), code, rows) for p in (a, b) for code, rows in EXPECTED]


def test_glob_and_folder_of_shards_are_one_source_numbered_across_files(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    for i in range(3):
        pq.write_table(table(), shards / f"part-{i}.parquet")
    glob = check_json(shards / "*.parquet", *FACTS, cwd=tmp_path)
    folder = check_json(shards, *FACTS, cwd=tmp_path)
    assert found(glob) == found(folder) == [("LL103", [1, 4, 7]), ("LL404", [2, 5, 8])]
    assert glob["summary"]["rows"] == 9


def test_a_repository_of_split_folders_gives_a_source_per_folder(tmp_path):
    for split in ("train", "test"):
        (tmp_path / "repo" / "data" / split).mkdir(parents=True)
        pq.write_table(table(), tmp_path / "repo" / "data" / split / "0.parquet")
    data = check_json(tmp_path / "repo", *FACTS, cwd=tmp_path)
    assert set(data["summary"]["sources"]) == \
        {str(tmp_path / "repo" / "data" / s) for s in ("test", "train")}


def test_without_labels_and_with_pad_equal_to_eos_which_collator_decides(tmp_path):
    """TRL's collator masks padding by attention and keeps EOS (TRL makes pad = EOS when unset);
    DataCollatorForLanguageModeling masks every pad id: with pad == EOS no row keeps its EOS
    label, and the model never learns to stop."""
    padded = {"input_ids": [[1, 7, 8, 2, 2, 2], [1, 7, 8, 9, 2, 2]],
              "attention_mask": [[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0]]}
    path = pq.write_table(table(padded), tmp_path / "p.parquet") or tmp_path / "p.parquet"
    facts = ["--pad-id", "2", "--bos-id", "1", "--eos-id", "2"]
    assert found(check_json(path, *facts, cwd=tmp_path)) == []
    by_id = check_json(path, *facts, "--missing-labels", "pad-id", cwd=tmp_path)
    assert {"LL403", "LL410"} <= {code for code, _ in found(by_id)}
    assert "DataCollatorForLanguageModeling" in \
        by_id["summary"]["sources"][str(path)]["notes"][0]


def test_a_column_named_on_the_command_line_must_exist(tmp_path):
    path = WRITERS["parquet"](tmp_path)
    result = run("check", path, *FACTS, "--labels-column", "targets", cwd=tmp_path)
    assert result.returncode == 2
    assert "has no 'targets' column" in result.stderr and str(path) in result.stderr


def test_metadata_json_beside_shards_is_not_read_as_rows(tmp_path):
    """A Hugging Face snapshot: dataset_infos.json at the top, parquet shards under data/."""
    (tmp_path / "hub" / "data").mkdir(parents=True)
    (tmp_path / "hub" / "dataset_infos.json").write_text(json.dumps({"default": {}}))
    pq.write_table(table(), tmp_path / "hub" / "data" / "train-0.parquet")
    (tmp_path / "hub" / "data" / "meta.json").write_text(json.dumps({"n": 3}))
    data = check_json(tmp_path / "hub", *FACTS, cwd=tmp_path)
    assert set(data["summary"]["sources"]) == {str(tmp_path / "hub" / "data")}
    assert found(data) == EXPECTED


def test_reading_ahead_stops_when_the_reader_stops(tmp_path):
    import threading

    path = tmp_path / "s.parquet"
    pq.write_table(synthetic(400), path, row_group_size=20)
    for _ in range(3):
        labellint.show(path, row=0, eos_id=2)  # reads one chunk, then stops
    alive = [t for t in threading.enumerate() if t.name == "labellint-read-ahead"]
    for t in alive:
        t.join(timeout=2)
    assert not any(t.is_alive() for t in alive)


def test_jsonl_rows_may_carry_other_fields_and_are_streamed(tmp_path, monkeypatch):
    path = tmp_path / "d.jsonl"
    with open(path, "w") as f:
        for i in range(3000):
            row = rows_of()[i % 3] | ({"messages": [{"role": "user"}]} if i > 2000 else {})
            f.write(json.dumps(row) + "\n")
    monkeypatch.setattr("labellint.sources.readers.JSON_BLOCK", 1 << 14)  # many blocks
    report = labellint.check(path, pad_id=0, bos_id=1, eos_id=2, vocab_size=50)
    assert report.sources[0].rows == 3000
    assert [f.count_rows for f in report.findings] == [1000, 1000]


def test_column_names_from_flags(tmp_path):
    renamed = {"tokens": ROWS["input_ids"], "mask": ROWS["attention_mask"],
               "targets": ROWS["labels"]}
    path = pq.write_table(table(renamed), tmp_path / "r.parquet") or tmp_path / "r.parquet"
    data = check_json(path, *FACTS, "--input-ids-column", "tokens", "--labels-column",
                      "targets", "--attention-mask-column", "mask", cwd=tmp_path)
    assert found(data) == EXPECTED


def test_a_dataset_without_labels_is_checked_as_the_collator_builds_them(tmp_path):
    # Row 1 has no EOS: a collator copying input_ids into labels trains a row that never ends.
    no_labels = {"input_ids": [[1, 7, 8, 2], [1, 7, 8, 9]], "attention_mask": [[1] * 4] * 2}
    path = pq.write_table(table(no_labels), tmp_path / "n.parquet") or tmp_path / "n.parquet"
    data = check_json(path, *FACTS, cwd=tmp_path)
    assert found(data) == [("LL404", [1])]
    assert "padding masked, as TRL's collator" in data["summary"]["sources"][str(path)]["notes"][0]
    text = run("check", path, *FACTS, cwd=tmp_path).stdout
    assert "note for" in text and "labels = input_ids" in text
    skipped = check_json(path, *FACTS, "--missing-labels", "skip", cwd=tmp_path)
    assert found(skipped) == []
    assert skipped["summary"]["sources"][str(path)]["skipped"]["LL404"] == "no labels column"


# -- configuration ------------------------------------------------------------------------------


def pyproject(folder, body):
    (folder / "pyproject.toml").write_text(textwrap.dedent(body))


def test_config_from_the_nearest_pyproject_and_flags_override_it(tmp_path):
    WRITERS["parquet"](tmp_path)
    pyproject(tmp_path, """
        [tool.labellint]
        ignore = ["labels-on-padding"]
        pad-id = 0
        bos-id = 1
        eos-id = 2
        vocab-size = 50
    """)
    sub = tmp_path / "sub"
    sub.mkdir()  # found from a folder below the pyproject too
    assert found(check_json("../d.parquet", cwd=sub)) == [("LL404", [2])]
    # As in ruff: --ignore adds to the table's ignores, --select replaces its selection.
    assert found(check_json("../d.parquet", "--ignore", "LL404", cwd=sub)) == []
    assert found(check_json("../d.parquet", "--select", "LL1", cwd=sub)) == []
    assert found(check_json("../d.parquet", "--eos-id", "7", "--select", "LL404",
                            cwd=sub)) == [("LL404", [0, 1, 2])]
    assert found(check_json("d.parquet", "--isolated", *FACTS, cwd=tmp_path)) == EXPECTED


def test_config_options_columns_and_facts(tmp_path):
    renamed = {"tokens": ROWS["input_ids"], "targets": ROWS["labels"]}
    pq.write_table(table(renamed), tmp_path / "r.parquet")
    pyproject(tmp_path, """
        [tool.labellint]
        select = ["LL105"]
        eos-id = 2
        [tool.labellint.columns]
        input-ids = "tokens"
        labels = "targets"
        [tool.labellint.options.few-supervised-tokens]
        min-tokens = 5
    """)
    # Rows have 3, 4 and 4 targets: all fewer than 5; only row 0 fewer than 4.
    assert found(check_json("r.parquet", cwd=tmp_path)) == [("LL105", [0, 1, 2])]
    assert found(check_json("r.parquet", "--option", "LL105.min_tokens=4",
                            cwd=tmp_path)) == [("LL105", [0])]


def test_per_path_ignores(tmp_path):
    for name in ("pretrain", "sft"):
        (tmp_path / "data" / name).mkdir(parents=True)
        pq.write_table(table(), tmp_path / "data" / name / "0.parquet")
    pyproject(tmp_path, """
        [tool.labellint.per-path-ignores]
        "data/pretrain/*" = ["missing-eos"]
    """)
    data = check_json("data/pretrain", "data/sft", *FACTS, cwd=tmp_path)
    assert [(f["source"], f["code"]) for f in data["findings"]] == [
        ("data/pretrain", "LL103"), ("data/sft", "LL103"), ("data/sft", "LL404")]


def test_config_file_given_explicitly(tmp_path):
    WRITERS["parquet"](tmp_path)
    (tmp_path / "lint.toml").write_text('select = ["LL404"]\neos-id = 2\n')
    assert found(check_json("d.parquet", "--config", "lint.toml", cwd=tmp_path)) == \
        [("LL404", [2])]


@pytest.mark.parametrize("body, message", [
    ('[tool.labellint]\nselcet = ["LL1"]\n', "has no setting 'selcet'"),
    ('[tool.labellint]\nmax-examples = "five"\n', "max-examples must be a whole number"),
    ('[tool.labellint.columns]\ntoken-ids = "x"\n', "has no column 'token-ids'"),
    ('[tool.labellint.options.LL105]\nmin-tokenz = 2\n', "LL105 has no option 'min_tokenz'"),
    ('[tool.labellint]\nselect = [\n', "not valid TOML"),
])
def test_bad_config_is_one_line_naming_the_key(tmp_path, body, message):
    WRITERS["parquet"](tmp_path)
    (tmp_path / "pyproject.toml").write_text(body)
    result = run("check", "d.parquet", cwd=tmp_path)
    assert result.returncode == 2, result.stdout
    assert message in result.stderr and result.stderr.count("\n") == 1


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "nothing-*.parquet", "no parquet, arrow or jsonl file matches"),
    (lambda p: write_jsonl(p / "s.jsonl", {"input_ids": [["a", "b"]]}),
     "input_ids holds lists of string"),
    (lambda p: write_jsonl(p / "n.jsonl", {"labels": [[1]]}), "has no 'input_ids' column"),
])
def test_bad_input_is_one_line_naming_the_file(tmp_path, make, message):
    path = make(tmp_path)
    result = run("check", path, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and str(path) in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_a_corrupted_shard_is_named(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    pq.write_table(table(), shards / "0.parquet")
    (shards / "1.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    result = run("check", shards, *FACTS, cwd=tmp_path)
    assert result.returncode == 2
    assert str(shards / "1.parquet") in result.stderr and "cannot read it" in result.stderr


def test_nothing_is_written_next_to_the_data(tmp_path):
    path = WRITERS["save_to_disk"](tmp_path)
    before = {p: p.stat().st_mtime_ns for p in path.rglob("*")}
    run("check", path, *FACTS, cwd=tmp_path)
    assert {p: p.stat().st_mtime_ns for p in path.rglob("*")} == before


# -- chunks and memory --------------------------------------------------------------------------


def synthetic(n_rows, seed=0):
    """Ragged SFT rows with a planted mistake every 97th row (no EOS)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, 400, n_rows)
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int32)
    ids = rng.integers(3, 1000, offsets[-1]).astype(np.int32)
    ids[offsets[:-1]] = 1
    ids[offsets[1:] - 1] = 2
    ids[offsets[1:][::97] - 1] = 5
    pos = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)
    labels = np.where(pos >= 10, ids, -100).astype(np.int32)

    def column(values):
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))

    return pa.table({"input_ids": column(ids), "labels": column(labels)})


def test_many_chunks_give_the_same_report_as_one(tmp_path, monkeypatch):
    path = tmp_path / "s.parquet"
    pq.write_table(synthetic(3000), path, row_group_size=250)
    facts = dict(bos_id=1, eos_id=2, pad_id=0, vocab_size=1000)
    whole = labellint.check(path, chunk_rows=100_000, **facts).to_dict()
    monkeypatch.setattr(engine, "CHUNK_TOKENS", 5_000)  # every chunk cut again
    cut = labellint.check(path, chunk_rows=37, **facts).to_dict()
    assert whole == cut
    assert [(f["code"], f["count_rows"]) for f in whole["findings"]] == [("LL404", 31)]


def test_progress_reports_every_row_once(tmp_path):
    path = tmp_path / "s.parquet"
    pq.write_table(synthetic(1000), path, row_group_size=100)
    calls = []
    labellint.check(path, eos_id=2, chunk_rows=100, progress=lambda *a: calls.append(a))
    assert {c[0] for c in calls} == {str(path)} and {c[3] for c in calls} == {1000}
    assert sum(c[1] for c in calls) == 1000 and len(calls) >= 10


def test_memory_is_bounded_by_the_chunk_not_the_dataset(tmp_path, monkeypatch):
    """A dataset 4x larger must not take 4x the memory: peak allocation stays near a chunk's."""
    monkeypatch.setattr(engine, "CHUNK_TOKENS", 1 << 16)
    peaks = {}
    for n_rows in (2_000, 8_000):
        path = tmp_path / f"{n_rows}.parquet"
        pq.write_table(synthetic(n_rows), path, row_group_size=200)
        tracemalloc.start()
        report = labellint.check(path, eos_id=2, bos_id=1, chunk_rows=200)
        peaks[n_rows] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert report.sources[0].tokens > 4 * (1 << 16) * (n_rows // 2_000)
    assert peaks[8_000] < 1.5 * peaks[2_000], peaks


def test_a_path_whose_every_rule_is_ignored_is_skipped_and_the_others_checked(tmp_path):
    for name in ("pretrain", "sft"):
        (tmp_path / "data" / name).mkdir(parents=True)
        pq.write_table(table(), tmp_path / "data" / name / "0.parquet")
    pyproject(tmp_path, """
        [tool.labellint]
        select = ["LL404"]
        [tool.labellint.per-path-ignores]
        "data/pretrain" = ["missing-eos"]
    """)
    result = run("check", "data/pretrain", "data/sft", *FACTS, "--format", "json", cwd=tmp_path)
    assert result.returncode == 1
    assert found(json.loads(result.stdout)) == [("LL404", [2])]
    assert "data/pretrain: every selected rule is ignored" in result.stderr


@pytest.mark.parametrize("body, message", [
    ('[tool.labellint.per-path-ignores]\n"nowhere/*" = ["missing-eso"]\n',
     "unknown rule selector 'missing-eso'"),
    ('[tool.labellint]\nfail-on = "errors"\n', "fail-on must be one of warning, error"),
])
def test_config_mistakes_are_caught_before_any_check(tmp_path, body, message):
    WRITERS["parquet"](tmp_path)
    (tmp_path / "pyproject.toml").write_text(body)
    result = run("check", "d.parquet", *FACTS, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_an_option_of_the_wrong_type_is_one_line(tmp_path):
    path = WRITERS["parquet"](tmp_path)
    result = run("check", path, *FACTS, "--option", "LL105.min_tokens=four", cwd=tmp_path)
    assert result.returncode == 2
    assert "LL105 option min_tokens must be like its default 2, not 'four'" in result.stderr


def test_show_judges_a_row_under_the_same_configuration_as_check(tmp_path):
    renamed = {"tokens": ROWS["input_ids"], "mask": ROWS["attention_mask"],
               "targets": ROWS["labels"]}
    pq.write_table(table(renamed), tmp_path / "r.parquet")
    pyproject(tmp_path, """
        [tool.labellint]
        pad-id = 0
        bos-id = 1
        eos-id = 2
        ignore = ["missing-eos"]
        [tool.labellint.columns]
        input-ids = "tokens"
        attention-mask = "mask"
        labels = "targets"
    """)
    padded = run("show", "r.parquet", "--row", "1", cwd=tmp_path)
    assert padded.returncode == 0, padded.stderr
    assert "LL103" in padded.stdout
    no_eos = run("show", "r.parquet", "--row", "2", cwd=tmp_path)
    assert no_eos.returncode == 0 and "LL404" not in no_eos.stdout


def test_a_broken_pyproject_of_another_project_above_is_passed_over(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project\nname = 'not ours'\n")
    work = tmp_path / "work"
    work.mkdir()
    WRITERS["parquet"](work)
    assert found(check_json("d.parquet", *FACTS, cwd=work)) == EXPECTED

    (tmp_path / "pyproject.toml").write_text("[tool.labellint]\nignore = [\n")
    result = run("check", "d.parquet", cwd=work)
    assert result.returncode == 2 and "not valid TOML" in result.stderr
