"""`--engine ray`: a real local Ray cluster checks a file source and gives the local report.

One cluster (two CPUs) is started for the module and shut down after it. Each source is real
files with planted defects (tests/test_jobs.py's rows, benchmarks/synthetic.py's table), checked
by both engines and the JSON reports compared whole; the faults (a corrupt shard beyond the
sample, a worker killed mid-run) must fail the check with one line naming the file.
"""

import json
import os
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import labellint
from labellint import catalog, ray_engine
from labellint.cli import main
from test_engine_merge import FACTS
from test_jobs import _fixed_rows, _table, write

ray = pytest.importorskip("ray")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import synthetic  # noqa: E402

CHUNK_ROWS = 7


@pytest.fixture(scope="module", autouse=True)
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


def both(path, **kw):
    """The JSON reports of the local engine (one process) and of Ray."""
    kw = {**FACTS, "chunk_rows": CHUNK_ROWS, **kw}
    return (labellint.check(path, jobs=1, **kw).to_json(),
            labellint.check(path, engine="ray", **kw).to_json())


@pytest.mark.parametrize("form", ["parquet-shards", "save_to_disk", "arrow-batches"])
def test_the_report_is_the_local_engines(form, tmp_path):
    local, remote = both(write(form, _fixed_rows(60), tmp_path))
    found = {f["code"]: f["rows"] for f in json.loads(local)["findings"]}
    assert found["LL101"][:3] == [4, 15, 26]  # the planted rows, across the shards
    assert remote == local


def test_a_larger_synthetic_corpus_gives_the_same_report(tmp_path):
    """Default chunking, several row groups per shard, facts inferred on the driver."""
    table = synthetic.build_table(1_500_000, padded=True)
    paths = synthetic.write(table, tmp_path, parquet_shards=3)
    for path in (paths["parquet"], paths["save_to_disk"]):
        local = labellint.check(path, jobs=1, chunk_rows=1000).to_json()
        report = json.loads(local)
        rows = {f["code"]: f["count_rows"] for f in report["findings"]}
        assert rows["LL103"] == len(synthetic.expected_rows("LL103", table.num_rows))
        assert labellint.check(path, engine="ray", chunk_rows=1000).to_json() == local


def test_the_command_line_takes_the_engine(tmp_path, capsys):
    path = write("parquet-shards", _fixed_rows(60), tmp_path)
    codes, outputs = [], []
    for extra in ([], ["--engine", "ray"]):
        codes.append(main(["check", str(path), "--format", "json", "--isolated", "--jobs", "1",
                           "--pad-id", "0", "--bos-id", "1", "--eos-id", "2",
                           "--vocab-size", "64", *extra]))
        outputs.append(capsys.readouterr().out)
    assert codes == [1, 1]
    assert outputs[1] == outputs[0]


def test_a_shard_that_cannot_be_read_fails_with_one_line(tmp_path):
    """Its footer is intact (the driver plans it), its pages are not: a worker finds out."""
    rows = _fixed_rows(4000)
    folder = tmp_path / "shards"
    folder.mkdir()
    for i in range(4):  # the sample (2,048 rows, and the chunks read ahead) ends in the third
        pq.write_table(_table(rows[i * 1000:(i + 1) * 1000]),
                       folder / f"train-{i}.parquet", row_group_size=250)
    broken = folder / "train-3.parquet"
    data = bytearray(broken.read_bytes())
    data[4:len(data) // 2] = bytes(len(data) // 2 - 4)
    broken.write_bytes(bytes(data))
    with pytest.raises(labellint.LabelLintError) as local:
        labellint.check(folder, jobs=1, **FACTS)
    with pytest.raises(labellint.LabelLintError) as remote:
        labellint.check(folder, engine="ray", **FACTS)
    message = str(remote.value)
    assert message.startswith(f"{broken}: cannot read it") and "\n" not in message
    assert message == str(local.value)


def test_a_worker_that_dies_fails_the_check_with_one_line(tmp_path):
    path = write("parquet-shards", _fixed_rows(60), tmp_path)
    first = sorted(path.iterdir())[0]
    driver = os.getpid()

    @labellint.rule("LL962", "kills-its-ray-worker", severity="error", per="row", message="m",
                    fix="f")
    def kills_its_ray_worker(b):
        """Ends its Ray worker at the first block, as the kernel's OOM killer would."""
        if os.getpid() != driver and b.row_start == 0:
            os._exit(1)
        return b.lengths < 0

    try:
        with pytest.raises(labellint.LabelLintError,
                           match=f"a Ray worker failed while checking {first}") as e:
            labellint.check(path, engine="ray", select=["LL962"], chunk_rows=CHUNK_ROWS, **FACTS)
        assert "\n" not in str(e.value)
        # The rule is harmless in this process: the local engine checks the source whole.
        assert json.loads(labellint.check(path, jobs=1, select=["LL962"],
                                          **FACTS).to_json())["findings"] == []
    finally:
        catalog.remove("LL962")
    # The cluster outlives the dead worker: the next check runs.
    local, remote = both(path)
    assert remote == local


def test_without_ray_the_engine_asks_for_the_extra(tmp_path, capsys, monkeypatch):
    path = write("parquet-shards", _fixed_rows(20), tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["check", str(path), "--engine", "ray", "--isolated"]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install 'labellint[ray]'" in err and "\n" not in err
    with pytest.raises(labellint.LabelLintError, match=r"labellint\[ray\]"):
        labellint.check(path, engine="ray")


def test_sources_ray_does_not_read_are_refused_with_one_line(tmp_path):
    with pytest.raises(labellint.LabelLintError, match="--engine local checks it"):
        labellint.check(_table(_fixed_rows(20)), engine="ray")
    path = write("jsonl-files", _fixed_rows(20), tmp_path)
    with pytest.raises(labellint.LabelLintError, match="not JSON Lines"):
        labellint.check(path, engine="ray", **FACTS)
    with pytest.raises(labellint.LabelLintError, match="engine must be local or ray"):
        labellint.check(path, engine="spark")


def test_a_partial_survives_its_plain_form(tmp_path):
    """What a worker sends back is JSON, and it is the Partial exactly."""
    from labellint import engine

    path = write("parquet-shards", _fixed_rows(60), tmp_path)
    chunks = labellint.sources.open_sources(path, chunk_rows=CHUNK_ROWS)[0].chunks
    prepared, stream = engine.prepare(chunks, source="s", facts=labellint.Facts(**FACTS),
                                      rules=list(catalog.select_rules(None, None)), options={})
    partial = engine.check_part(prepared, stream)
    plain = json.loads(json.dumps(ray_engine.to_plain(partial)))
    assert ray_engine.from_plain(plain) == partial


@pytest.mark.parametrize("address, reason", [("127.0.0.1:1", "cannot reach the Ray cluster"),
                                             ("no-port", "not HOST:PORT")])
def test_an_address_nothing_answers_at_fails_at_once(address, reason):
    """Ray's own ray.init retries a dead address for minutes; the check says so in one line."""
    with pytest.raises(labellint.LabelLintError, match=reason):
        ray_engine._reachable(address)


def test_a_shard_whose_footer_is_cut_off_fails_on_the_driver_as_it_does_locally(tmp_path):
    rows = _fixed_rows(4000)
    folder = tmp_path / "shards"
    folder.mkdir()
    for i in range(4):
        pq.write_table(_table(rows[i * 1000:(i + 1) * 1000]), folder / f"train-{i}.parquet")
    broken = folder / "train-3.parquet"
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    with pytest.raises(labellint.LabelLintError) as local:
        labellint.check(folder, jobs=1, **FACTS)
    with pytest.raises(labellint.LabelLintError) as remote:
        labellint.check(folder, engine="ray", **FACTS)
    assert str(remote.value) == str(local.value)
    assert str(broken) in str(remote.value) and "\n" not in str(remote.value)
