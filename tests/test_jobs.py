"""Worker processes (`jobs=`, `--jobs`): the same report, byte for byte, whatever their number.

Each data form is written as real files with defects planted across its parts (parquet row
groups, Arrow record batches, JSON Lines files, an in-memory Dataset and Table), checked with
one, two and three processes, and the JSON reports compared whole.
"""

import json
import os
import signal
import subprocess
import sys

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import labellint
from labellint import catalog, parallel
from test_engine_merge import FACTS, datasets as row_lists

CHUNK_ROWS = 7  # small chunks, so that a few dozen rows make several parts
SETTINGS = settings(max_examples=12, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


def _table(rows):
    return pa.table({k: [r[k] for r in rows] for k in ("input_ids", "labels", "attention_mask")},
                    schema=pa.schema([(k, pa.list_(pa.int32()))
                                      for k in ("input_ids", "labels", "attention_mask")]))


def write(form, rows, folder):
    """`rows` as a dataset on disk in `form`; the path to check."""
    table = _table(rows)
    third = max(len(rows) // 3, 1)
    if form == "parquet-row-groups":
        path = folder / "data.parquet"
        pq.write_table(table, path, row_group_size=5)
        return path
    if form == "parquet-shards":
        (folder / "shards").mkdir()
        for i, start in enumerate(range(0, len(rows), third)):
            pq.write_table(table.slice(start, third), folder / "shards" / f"train-{i:05d}.parquet",
                           row_group_size=4)
        return folder / "shards"
    if form == "save_to_disk":
        ds = datasets.Dataset(table)
        ds.save_to_disk(str(folder / "sft"), num_shards=min(3, len(rows)))
        return folder / "sft"
    if form == "arrow-batches":
        path = folder / "data.arrow"
        with pa.ipc.new_file(path, table.schema) as w:
            for batch in table.to_batches(max_chunksize=3):
                w.write_batch(batch)
        return path
    if form == "jsonl-files":
        (folder / "jsonl").mkdir()
        for i, start in enumerate(range(0, len(rows), third)):
            with open(folder / "jsonl" / f"part-{i}.jsonl", "w") as f:
                for r in rows[start:start + third]:
                    f.write(json.dumps(r) + "\n")
        return folder / "jsonl"
    raise AssertionError(form)


FORMS = ["parquet-row-groups", "parquet-shards", "save_to_disk", "arrow-batches", "jsonl-files"]


def report(source, jobs, **kw):
    kw = {**FACTS, "chunk_rows": CHUNK_ROWS, **kw}
    return labellint.check(source, jobs=jobs, **kw).to_json()


@pytest.fixture(scope="module")
def planted_rows():
    """A fixed dataset with a defect in rows spread over every part."""
    return _fixed_rows(60)


def _fixed_rows(n, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        prompt = rng.integers(3, 60, rng.integers(1, 6)).tolist()
        answer = rng.integers(3, 60, rng.integers(2, 6)).tolist()
        ids = [1, *prompt, *answer, 2]
        labels = [-100] * (1 + len(prompt)) + [*answer, 2]
        if i % 11 == 4:
            labels = [-100] * len(ids)  # LL101
        if i % 13 == 6:
            ids[1] = 64 + 3  # LL405
        if i % 17 == 9:
            labels[-1] = -100  # LL403
        rows.append({"input_ids": ids, "labels": labels, "attention_mask": [1] * len(ids)})
    return rows


@pytest.mark.parametrize("form", FORMS)
def test_the_report_is_the_same_whatever_the_number_of_jobs(form, planted_rows, tmp_path):
    path = write(form, planted_rows, tmp_path)
    one = report(path, 1)
    found = {f["code"]: f["rows"] for f in json.loads(one)["findings"]}
    # The planted rows are found where they are, across parts.
    assert found["LL101"][:3] == [4, 15, 26]
    assert found["LL405"][:3] == [6, 19, 32]
    assert report(path, 2) == one
    assert report(path, 3) == one


def test_a_source_is_checked_by_workers_when_jobs_allow(planted_rows, tmp_path, monkeypatch):
    path = write("parquet-row-groups", planted_rows, tmp_path)
    calls = []
    real = parallel.check_parts
    monkeypatch.setattr(parallel, "check_parts",
                        lambda prepared, parts, **kw: calls.append(len(parts))
                        or real(prepared, parts, **kw))
    report(path, 1)
    assert calls == []
    report(path, 2)
    assert calls and calls[0] >= 2


@pytest.mark.parametrize("kind", ["dataset", "table"])
def test_in_memory_tables_are_split_too(kind, planted_rows):
    table = _table(planted_rows)
    source = datasets.Dataset(table) if kind == "dataset" else table
    assert report(source, 2) == report(source, 1)


@SETTINGS
@given(rows=row_lists(min_rows=1, max_rows=40), form=st.sampled_from(FORMS),
       chunk_rows=st.integers(1, 9), max_examples=st.integers(0, 4))
def test_random_data_gives_one_report_for_one_and_two_jobs(rows, form, chunk_rows,
                                                            max_examples, tmp_path_factory):
    path = write(form, rows, tmp_path_factory.mktemp("data"))
    kw = dict(chunk_rows=chunk_rows, max_examples=max_examples)
    assert report(path, 2, **kw) == report(path, 1, **kw)


def test_progress_counts_every_row_once_with_workers(planted_rows, tmp_path):
    path = write("parquet-shards", planted_rows, tmp_path)
    seen = []
    labellint.check(path, jobs=2, chunk_rows=CHUNK_ROWS, **FACTS,
                    progress=lambda source, rows, tokens, total: seen.append((rows, tokens, total)))
    assert sum(r for r, _, _ in seen) == len(planted_rows)
    assert {t for _, _, t in seen} == {len(planted_rows)}


def test_a_part_that_cannot_be_read_fails_as_it_does_in_one_process(planted_rows, tmp_path):
    path = write("parquet-shards", planted_rows, tmp_path)
    broken = sorted(path.iterdir())[1]
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    errors = []
    for jobs in (1, 2):
        with pytest.raises(labellint.LabelLintError) as e:
            report(path, jobs)
        errors.append(str(e.value))
    assert errors[0] == errors[1]
    assert str(broken) in errors[1] and "\n" not in errors[1]


def test_a_worker_that_dies_fails_the_check_with_one_line(planted_rows, tmp_path):
    path = write("parquet-row-groups", planted_rows, tmp_path)
    parent, calls = os.getpid(), []

    @labellint.rule("LL961", "kills-its-worker", severity="error", per="row", message="m",
                    fix="f")
    def kills_its_worker(b):
        """Dies in a worker process, as the kernel's OOM killer would end it."""
        if os.getpid() != parent:
            calls.append(b.n_rows)  # each worker counts its own calls (its copy of the list)
            if len(calls) > 2:
                os.kill(os.getpid(), signal.SIGKILL)
        return np.zeros(b.n_rows, dtype=bool)

    try:
        with pytest.raises(labellint.LabelLintError, match="a worker process died while "
                           f"checking {path}") as e:
            report(path, 2, select=["LL961"])
        assert "\n" not in str(e.value)
        assert json.loads(report(path, 1, select=["LL961"]))["findings"] == []
    finally:
        catalog.remove("LL961")


@pytest.mark.parametrize("jobs", [0, -1, 1.5, "2", True])
def test_jobs_must_be_a_positive_whole_number(jobs, planted_rows):
    with pytest.raises(labellint.LabelLintError, match="jobs"):
        labellint.check(planted_rows, jobs=jobs)


def test_the_command_takes_jobs_from_its_flag_and_its_table(planted_rows, tmp_path):
    path = write("parquet-row-groups", planted_rows, tmp_path)
    facts = ["--pad-id", "0", "--bos-id", "1", "--eos-id", "2", "--vocab-size", "64"]

    def run(*args, cwd=tmp_path):
        return subprocess.run([sys.executable, "-m", "labellint", "check", str(path),
                               "--format", "json", *facts, *args], capture_output=True,
                              text=True, cwd=cwd, env={**os.environ, "HF_HUB_OFFLINE": "1"})

    one, two = run("--jobs", "1"), run("-j", "2")
    assert one.returncode == two.returncode == 1
    assert one.stdout == two.stdout
    # The text report, token strips included, too.
    one, two = run("--jobs", "1", "--format", "text"), run("-j", "2", "--format", "text")
    assert one.stdout == two.stdout and "LL101" in one.stdout
    bad = run("--jobs", "0")
    assert bad.returncode == 2 and "positive" in bad.stderr
    (tmp_path / "pyproject.toml").write_text("[tool.labellint]\njobs = 0\n")
    bad = run()
    assert bad.returncode == 2 and "jobs" in bad.stderr and len(bad.stderr.splitlines()) == 1


ALLOCATOR = """
import sys
import labellint
from labellint import allocator
labellint.check({"input_ids": [[1, 5, 2]], "labels": [[-100, 5, 2]]})
print(allocator._done)
labellint.check(sys.argv[1], jobs=1)
print(allocator._done)
"""


def test_checking_a_dataset_through_the_api_sets_the_allocator_as_the_command_does(tmp_path):
    """The speed of `check(path)` must not depend on calling it through the command line; a
    training batch (the Trainer callback's) leaves a host process's allocator alone."""
    path = write("parquet-row-groups", _fixed_rows(10), tmp_path)
    out = subprocess.run([sys.executable, "-c", ALLOCATOR, str(path)], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["False", "True"]


@pytest.mark.parametrize("name", ["qwen2.5-instruct", "llama3-instruct"])
def test_chat_data_with_its_real_tokenizer_reads_the_same_in_workers(name, real_tokenizers,
                                                                     tmp_path):
    """Chat rows from a real template, half of them with the prompt trained: the findings,
    their decoded strips and the facts are the same with workers as in one process."""
    tok = real_tokenizers[name].tokenizer
    rows = []
    for i in range(30):
        conv = [{"role": "user", "content": f"question {i}: how many legs has a spider?"},
                {"role": "assistant", "content": f"eight, answer {i}."}]
        ids = list(tok.apply_chat_template(conv, tokenize=True, return_dict=True)["input_ids"])
        prompt = len(tok.apply_chat_template(conv[:1], tokenize=True, return_dict=True,
                                             add_generation_prompt=True)["input_ids"])
        labels = ids if i % 2 else [-100] * prompt + ids[prompt:]
        rows.append({"input_ids": ids, "labels": labels, "attention_mask": [1] * len(ids)})
    path = tmp_path / "chat.parquet"
    pq.write_table(_table(rows), path, row_group_size=4)
    one = labellint.check(path, tok, jobs=1, chunk_rows=4)
    two = labellint.check(path, tok, jobs=2, chunk_rows=4)
    assert one.to_json() == two.to_json()
    assert one.render() == two.render() and "LL601" in one.render()
    assert any(f.rows[:3] == (1, 3, 5) for f in one.findings)


def test_checks_from_two_threads_take_turns_with_the_workers(planted_rows, tmp_path):
    import threading

    path = write("parquet-shards", planted_rows, tmp_path)
    want = report(path, 1)
    out, errors = [], []

    def run():
        try:
            out.append(report(path, 2))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and out == [want] * 3


def test_a_check_inside_a_worker_runs_there_without_a_pool_of_its_own(planted_rows, tmp_path):
    """A rule that itself calls labellint.check (on a path) in a worker must not fork again."""
    path = write("parquet-row-groups", planted_rows, tmp_path)
    inner = write("parquet-shards", planted_rows, tmp_path)
    parent = os.getpid()

    @labellint.rule("LL962", "checks-inside", severity="error", per="row", message="m", fix="f")
    def checks_inside(b):
        """Fires on every row when a nested check in a worker found what one process finds."""
        if os.getpid() == parent:
            return np.zeros(b.n_rows, dtype=bool)
        nested = [report(inner, jobs, ignore=["LL962"]) for jobs in (2, 1)]
        return np.full(b.n_rows, nested[0] == nested[1])

    try:
        found = json.loads(report(path, 2, select=["LL962"]))["findings"]
        assert [f["count_rows"] for f in found] == [len(planted_rows)]
    finally:
        catalog.remove("LL962")



def test_map_forked_returns_results_in_order_and_raises_a_tasks_own_error():
    assert parallel.map_forked(lambda i: (i, os.getpid()), 5, jobs=2, name=str)[3][0] == 3
    pids = {pid for _, pid in parallel.map_forked(lambda i: (i, os.getpid()), 4, jobs=2,
                                                  name=str)}
    assert os.getpid() not in pids  # the tasks ran in workers

    def task(i):
        if i == 2:
            raise labellint.LabelLintError(f"task {i} failed")
        return i

    with pytest.raises(labellint.LabelLintError, match="task 2 failed"):
        parallel.map_forked(task, 4, jobs=2, name=str)


def test_map_forked_names_the_task_of_a_worker_that_died():
    def task(i):
        if i == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return i

    with pytest.raises(labellint.LabelLintError, match="died while working on task-"):
        parallel.map_forked(task, 3, jobs=2, name=lambda i: f"task-{i}")
