"""Remote and streamed sources: URLs through fsspec (memory://, file://, a missing package, a
failing filesystem) and streaming datasets, each judged against the same data read locally."""

import gzip
import importlib.util
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import labellint
from labellint import cli

FACTS = dict(pad_id=0, bos_id=1, eos_id=2, vocab_size=64)
CLI_FACTS = ["--pad-id", "0", "--bos-id", "1", "--eos-id", "2", "--vocab-size", "64"]


def rows(n, seed=0):
    """Ragged rows with defects planted at known rows: labels on padding (every 7th row), a
    missing eos (every 11th), an out-of-vocabulary id (row 5 of every 1000)."""
    rng = np.random.default_rng(seed)
    out = {"input_ids": [], "attention_mask": [], "labels": []}
    for i in range(n):
        body = rng.integers(3, 60, int(rng.integers(4, 40))).tolist()
        ids = [1, *body, *([] if i % 11 == 0 else [2])]
        labels = [-100, *ids[1:]]
        pad = 3 if i % 5 == 0 else 0
        if i % 1000 == 5:
            ids[2] = 70
        mask = [1] * len(ids) + [0] * pad
        labels += [0 if i % 7 == 0 else -100] * pad
        ids += [0] * pad
        out["input_ids"].append(ids)
        out["attention_mask"].append(mask)
        out["labels"].append(labels)
    return out


def table(columns):
    return pa.table({k: pa.array(v, pa.list_(pa.int32())) for k, v in columns.items()})


def write_jsonl(path, columns, compress=False):
    n = len(columns["input_ids"])
    text = "".join(json.dumps({**{k: v[i] for k, v in columns.items()}, "text": "t" * (i % 5)})
                   + "\n" for i in range(n)).encode()
    path.write_bytes(gzip.compress(text) if compress else text)


def build(root, kind, n=2500):
    """One dataset of `kind` under `root`: the path to check."""
    import datasets

    datasets.disable_progress_bars()
    data = rows(n)
    root.mkdir(parents=True, exist_ok=True)
    if kind == "parquet":
        pq.write_table(table(data), root / "train.parquet", row_group_size=700)
        return root / "train.parquet"
    if kind == "shards":
        folder = root / "shards"
        folder.mkdir()
        t = table(data)
        for i, start in enumerate(range(0, n, 1000)):
            pq.write_table(t.slice(start, 1000), folder / f"part-{i:03d}.parquet",
                           row_group_size=300)
        return folder
    if kind == "arrow":
        t = table(data)
        with pa.ipc.new_file(str(root / "train.arrow"), t.schema) as w:
            for b in t.to_batches(max_chunksize=400):
                w.write_batch(b)
        return root / "train.arrow"
    if kind == "save_to_disk":
        datasets.Dataset.from_dict(data).save_to_disk(str(root / "saved"), max_shard_size="40KB")
        return root / "saved"
    if kind == "dataset_dict":
        datasets.DatasetDict({"train": datasets.Dataset.from_dict(data),
                              "test": datasets.Dataset.from_dict(rows(300, seed=1))}
                             ).save_to_disk(str(root / "dict"))
        return root / "dict"
    if kind in ("jsonl", "jsonl.gz"):
        path = root / f"train.{kind}"
        write_jsonl(path, data, compress=kind.endswith("gz"))
        return path
    raise AssertionError(kind)


KINDS = ["parquet", "shards", "arrow", "save_to_disk", "dataset_dict", "jsonl", "jsonl.gz"]


@pytest.fixture
def memory_root():
    """A fresh folder in fsspec's in-process memory filesystem, emptied afterwards."""
    fs = fsspec.filesystem("memory")
    root = f"/labellint-{uuid.uuid4().hex}"
    yield fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)


def upload(fs, local: Path, base: Path, root: str) -> str:
    """Copy `local` (a file or folder under `base`) into the memory filesystem: its URL."""
    files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
    for f in files:
        fs.pipe(f"{root}/{f.relative_to(base).as_posix()}", f.read_bytes())
    return f"memory://{root}/{local.relative_to(base).as_posix()}"


def named(text, *pairs):
    for old, new in pairs:
        text = text.replace(old, new)
    return text


@pytest.mark.parametrize("kind", KINDS)
def test_memory_url_reports_what_the_local_path_reports(kind, tmp_path, memory_root):
    fs, root = memory_root
    local = build(tmp_path, kind)
    url = upload(fs, local, tmp_path, root)
    expected = labellint.check(str(local), jobs=2, **FACTS).to_json()
    got = labellint.check(url, **FACTS).to_json()
    assert len(json.loads(expected)["findings"]) >= 3, expected  # findings to compare
    assert named(got, (url, "DATA")) == named(expected, (str(local), "DATA"))


@pytest.mark.parametrize("kind", KINDS)
def test_file_url_reports_what_the_local_path_reports(kind, tmp_path, capsys):
    local = build(tmp_path, kind)
    assert cli.main(["check", str(local), "--format", "json", *CLI_FACTS]) == 1
    expected = capsys.readouterr().out
    assert cli.main(["check", f"file://{local}", "--format", "json", *CLI_FACTS]) == 1
    assert capsys.readouterr().out == expected  # a local path, named as one


def test_check_command_reads_a_memory_url(tmp_path, memory_root, capsys):
    fs, root = memory_root
    local = build(tmp_path, "shards")
    url = upload(fs, local, tmp_path, root)
    assert cli.main(["check", str(local), "--format", "json", *CLI_FACTS]) == 1
    expected = capsys.readouterr().out
    assert cli.main(["check", url, "--format", "json", *CLI_FACTS]) == 1
    assert named(capsys.readouterr().out, (url, "D")) == named(expected, (str(local), "D"))


def test_a_glob_url_reads_its_matching_files(tmp_path, memory_root):
    fs, root = memory_root
    local = build(tmp_path, "shards")
    upload(fs, local, tmp_path, root)
    fs.pipe(f"{root}/shards/notes.txt", b"not data")
    expected = labellint.check(str(local / "*.parquet"), **FACTS).to_json()
    url = f"memory://{root}/shards/*.parquet"
    assert named(labellint.check(url, **FACTS).to_json(), (url, "D")) == \
        named(expected, (str(local / "*.parquet"), "D"))


def assert_one_line_error(rc, err, *needles):
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("labellint: error: "), err
    assert "Traceback" not in err and "internal error" not in err, err
    for needle in needles:
        assert needle in err, err


@pytest.mark.skipif(importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed")
def test_s3_without_s3fs_is_one_line_naming_the_package(capsys):
    rc = cli.main(["check", "s3://bucket/data/", *CLI_FACTS])
    out, err = capsys.readouterr()
    assert_one_line_error(rc, err, "s3://bucket/data/", "pip install s3fs")
    assert out == ""


def test_a_scheme_whose_package_is_missing_is_one_line(monkeypatch, capsys):
    from fsspec.registry import known_implementations

    monkeypatch.setitem(known_implementations, "nopkg",
                        {"class": "labellint_missing_pkg.NoFS",
                         "err": "Install labellint-missing-pkg to access nopkg"})
    rc = cli.main(["check", "nopkg://bucket/x.parquet", *CLI_FACTS])
    assert_one_line_error(rc, capsys.readouterr().err, "nopkg://bucket/x.parquet",
                          "labellint-missing-pkg")


def test_an_unknown_scheme_is_one_line(capsys):
    rc = cli.main(["check", "nosuchscheme://x/y.parquet", *CLI_FACTS])
    assert_one_line_error(rc, capsys.readouterr().err, "nosuchscheme://")


def test_a_missing_remote_path_is_one_line(memory_root, capsys):
    _, root = memory_root
    rc = cli.main(["check", f"memory://{root}/absent.parquet", *CLI_FACTS])
    assert_one_line_error(rc, capsys.readouterr().err, f"memory://{root}/absent.parquet",
                          "no such file")


@pytest.mark.parametrize("damage", ["truncated", "zeroed-middle", "not-parquet"])
def test_a_corrupt_remote_parquet_file_is_one_line(damage, tmp_path, memory_root, capsys):
    fs, root = memory_root
    raw = build(tmp_path, "parquet").read_bytes()
    bad = {"truncated": raw[: len(raw) // 2],
           "zeroed-middle": raw[:4] + b"\0" * (len(raw) // 2) + raw[4 + len(raw) // 2:],
           "not-parquet": b"PAR1 this is text, not a parquet file PAR1"}[damage]
    fs.pipe(f"{root}/bad.parquet", bad)
    rc = cli.main(["check", f"memory://{root}/bad.parquet", *CLI_FACTS])
    out, err = capsys.readouterr()
    assert_one_line_error(rc, err, f"memory://{root}/bad.parquet")
    assert out == ""  # no partial report


@pytest.mark.parametrize("kind", ["arrow", "save_to_disk", "jsonl.gz"])
def test_a_truncated_remote_file_is_one_line(kind, tmp_path, memory_root, capsys):
    fs, root = memory_root
    local = build(tmp_path, kind)
    url = upload(fs, local, tmp_path, root)
    victim = sorted(p for p in fs.find(root) if not p.endswith(".json"))[-1]
    data = fs.cat(victim)
    fs.pipe(victim, data[: len(data) * 2 // 3])
    rc = cli.main(["check", url, *CLI_FACTS])
    out, err = capsys.readouterr()
    assert_one_line_error(rc, err, victim.rsplit("/", 1)[-1])
    assert out == ""


class ReadHookFS(MemoryFileSystem):
    """The memory filesystem under its own scheme, each file opened for reading handed to
    `reading` (which wraps its read)."""

    root_marker = "/"

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.removeprefix(f"{cls.protocol}://"))

    def _open(self, path, mode="rb", **kwargs):
        file = super()._open(path, mode, **kwargs)
        return self.reading(file) if "r" in mode else file

    def reading(self, file):
        return file


class FlakyFS(ReadHookFS):
    """Files that fail like a dropped connection after `budget` bytes."""

    protocol = "flaky"
    budget = 0

    def reading(self, file):
        budget, read = self.budget, file.read

        def failing_read(n=-1):
            nonlocal budget
            data = read(n)
            budget -= len(data)
            if budget < 0:
                raise ConnectionError("Connection reset by peer")
            return data

        file.read = failing_read
        return file


@pytest.mark.parametrize("kind", ["parquet", "arrow", "jsonl"])
def test_a_read_failing_mid_stream_is_one_line_naming_the_file(kind, tmp_path, capsys,
                                                              monkeypatch):
    fsspec.register_implementation("flaky", FlakyFS, clobber=True)
    fs = FlakyFS()
    root = f"/flaky-{uuid.uuid4().hex}"
    local = build(tmp_path, kind, n=20000)
    fs.pipe(f"{root}/{local.name}", local.read_bytes())
    monkeypatch.setattr(FlakyFS, "budget", local.stat().st_size // 2)
    try:
        rc = cli.main(["check", f"flaky://{root}/{local.name}", *CLI_FACTS])
    finally:
        fs.rm(root, recursive=True)
    out, err = capsys.readouterr()
    assert_one_line_error(rc, err, f"flaky://{root}/{local.name}", "Connection reset")
    assert out == ""


def test_show_refuses_to_write_to_a_url(tmp_path, memory_root, capsys):
    fs, root = memory_root
    url = upload(fs, build(tmp_path, "parquet"), tmp_path, root)
    before = fs.cat(url[len("memory://"):])
    rc = cli.main(["show", url, "--row", "3", "-o", url, *CLI_FACTS])
    assert_one_line_error(rc, capsys.readouterr().err, "-o writes a local file")
    assert fs.cat(url[len("memory://"):]) == before


def test_show_refuses_a_file_url_output_that_is_the_input(tmp_path, capsys):
    local = build(tmp_path, "parquet")
    before = local.read_bytes()
    rc = cli.main(["show", f"file://{local}", "--row", "3", "-o", f"file://{local}", *CLI_FACTS])
    assert_one_line_error(rc, capsys.readouterr().err, "is a file of the data being shown")
    assert local.read_bytes() == before


def test_show_reads_a_row_of_a_memory_url(tmp_path, memory_root, capsys):
    fs, root = memory_root
    local = build(tmp_path, "parquet")
    url = upload(fs, local, tmp_path, root)
    assert cli.main(["show", str(local), "--row", "14", *CLI_FACTS]) == 0
    expected = capsys.readouterr().out
    assert cli.main(["show", url, "--row", "14", *CLI_FACTS]) == 0
    assert named(capsys.readouterr().out, (url, "D")) == named(expected, (str(local), "D"))


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 900), group=st.integers(1, 400), batch=st.integers(1, 300),
       chunk=st.integers(1, 500))
def test_remote_chunking_matches_the_local_read(n, group, batch, chunk, tmp_path_factory):
    """Any row group and record batch sizes, any chunk size: the same report either way."""
    base = tmp_path_factory.mktemp("h")
    t = table(rows(n, seed=n))
    pq.write_table(t, base / "d.parquet", row_group_size=group)
    with pa.ipc.new_stream(str(base / "d.arrow"), t.schema) as w:  # save_to_disk's format
        for b in t.to_batches(max_chunksize=batch):
            w.write_batch(b)
    fs, root = fsspec.filesystem("memory"), f"/h-{uuid.uuid4().hex}"
    try:
        for name in ("d.parquet", "d.arrow"):
            fs.pipe(f"{root}/{name}", (base / name).read_bytes())
            url = f"memory://{root}/{name}"
            local = labellint.check(str(base / name), chunk_rows=chunk, jobs=1, **FACTS)
            remote = labellint.check(url, chunk_rows=chunk, **FACTS)
            assert named(remote.to_json(), (url, "D")) == \
                named(local.to_json(), (str(base / name), "D"))
    finally:
        fs.rm(root, recursive=True)


# Streaming datasets


def test_an_iterable_dataset_reports_what_the_dataset_reports():
    import datasets

    ds = datasets.Dataset.from_dict(rows(5000))
    expected = labellint.check(ds, chunk_rows=700, **FACTS).to_json()
    for streamed in (ds.to_iterable_dataset(), ds.to_iterable_dataset(num_shards=4)):
        assert labellint.check(streamed, chunk_rows=700, **FACTS).to_json() == expected


def test_a_generator_dataset_reports_what_the_dataset_reports():
    import datasets

    data = rows(3000)

    def generate():
        for i in range(len(data["input_ids"])):
            yield {**{k: v[i] for k, v in data.items()}, "text": "x" * (i % 3)}

    streamed = datasets.IterableDataset.from_generator(generate)
    expected = labellint.check(datasets.Dataset.from_dict(data), chunk_rows=512, **FACTS)
    got = labellint.check(streamed, chunk_rows=512, **FACTS)
    assert got.to_json() == expected.to_json()


def test_a_streamed_defect_is_reported_at_its_global_row():
    import datasets

    data = {"input_ids": [[1, 5, 6, 2]] * 20000, "labels": [[-100, 5, 6, 2]] * 20000}
    data["input_ids"] = list(data["input_ids"])
    data["input_ids"][17_345] = [1, 5, 99, 2]  # out of vocabulary
    streamed = datasets.Dataset.from_dict(data).to_iterable_dataset(num_shards=3)
    report = labellint.check(streamed, chunk_rows=1000, select=["LL405"], **FACTS)
    found = json.loads(report.to_json())
    rows_ = [r for f in found["findings"] for r in f["rows"]]
    assert rows_ == [17_345], found


def test_an_iterable_dataset_without_input_ids_is_one_error():
    import datasets

    streamed = datasets.IterableDataset.from_generator(lambda: iter([{"text": "a"}] * 3))
    with pytest.raises(labellint.LabelLintError, match="input_ids"):
        labellint.check(streamed, **FACTS)


def test_an_iterable_dataset_dict_gives_a_source_per_split():
    import datasets

    d = datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows(400)),
                              "test": datasets.Dataset.from_dict(rows(100, seed=2))})
    streamed = datasets.IterableDatasetDict({k: v.to_iterable_dataset() for k, v in d.items()})
    assert labellint.check(streamed, **FACTS).to_json() == labellint.check(d, **FACTS).to_json()


PEAK = """
import resource, sys, datasets, numpy as np, labellint
tokens = int(sys.argv[1])
rng = np.random.default_rng(0)
row = [1, *rng.integers(3, 60, 510).tolist(), 2]
def generate():
    for _ in range(tokens // len(row)):
        yield {"input_ids": row, "labels": row}
streamed = datasets.IterableDataset.from_generator(generate)
labellint.check(streamed, chunk_rows=1024, pad_id=0, bos_id=1, eos_id=2, vocab_size=64)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


@pytest.mark.slow
def test_a_long_generator_is_checked_in_bounded_memory():
    def peak_mib(tokens):
        out = subprocess.run([sys.executable, "-c", PEAK, str(tokens)], capture_output=True,
                             text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        return int(out.stdout.split()[-1])

    small, large = peak_mib(500_000), peak_mib(5_000_000)
    # Ten times the tokens (40 MB of int64 ids alone) may not cost ten times the memory.
    assert large - small < 40, (small, large)


class CountingFS(ReadHookFS):
    """Counting the bytes its readers ask for."""

    protocol = "counting"
    read_bytes = 0

    def reading(self, file):
        read = file.read

        def counted(n=-1):
            data = read(n)
            CountingFS.read_bytes += len(data)
            return data

        file.read = counted
        return file


def test_remote_parquet_fetches_only_the_columns_checked(tmp_path):
    """Rows with a large text column beside the token columns: the text is never fetched."""
    fsspec.register_implementation("counting", CountingFS, clobber=True)
    data = rows(4000)
    text = np.random.default_rng(0).integers(97, 123, (4000, 2000), dtype=np.uint8)
    t = table(data).append_column("text", pa.array([r.tobytes().decode() for r in text]))
    pq.write_table(t, tmp_path / "d.parquet", row_group_size=500, compression="none")
    fs, root = CountingFS(), f"/c-{uuid.uuid4().hex}"
    fs.pipe(f"{root}/d.parquet", (tmp_path / "d.parquet").read_bytes())
    try:
        CountingFS.read_bytes = 0
        report = labellint.check(f"counting://{root}/d.parquet", **FACTS)
        read = CountingFS.read_bytes
    finally:
        fs.rm(root, recursive=True)
    size = (tmp_path / "d.parquet").stat().st_size
    assert report.to_json().count('"code"') >= 3
    assert read < size / 4, (read, size)  # the text is ~85% of the file


def test_a_hub_url_offline_is_one_line_and_a_bare_name_is_never_fetched(capsys):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    rc = cli.main(["check", "hf://datasets/someone/some-data", *CLI_FACTS])
    assert_one_line_error(rc, capsys.readouterr().err, "hf://datasets/someone/some-data",
                          "offline")
    rc = cli.main(["check", "someone/some-data", *CLI_FACTS])
    assert_one_line_error(rc, capsys.readouterr().err, "someone/some-data",
                          "no such file or folder")


def test_a_stream_failing_mid_way_is_one_error_naming_where():
    import datasets

    def generate():
        for i in range(5000):
            if i == 3000:
                raise ConnectionError("Connection reset by peer")
            yield {"input_ids": [1, 5, 2], "labels": [-100, 5, 2]}

    streamed = datasets.IterableDataset.from_generator(generate)
    with pytest.raises(labellint.LabelLintError, match="stream failed after 2048 rows"):
        labellint.check(streamed, chunk_rows=1024, **FACTS)


def test_per_path_ignores_match_a_url(tmp_path, memory_root, capsys):
    fs, root = memory_root
    url = upload(fs, build(tmp_path, "parquet"), tmp_path, root)
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.labellint.per-path-ignores]\n"memory://{root}/*" = ["LL103"]\n')
    args = ["check", url, "--format", "json", "--config", str(tmp_path / "pyproject.toml"),
            *CLI_FACTS]
    cli.main(args)
    codes = [f["code"] for f in json.loads(capsys.readouterr().out)["findings"]]
    assert "LL103" not in codes and codes, codes
    cli.main(["check", url, "--format", "json", "--isolated", *CLI_FACTS])
    assert "LL103" in [f["code"] for f in json.loads(capsys.readouterr().out)["findings"]]


class WatchedFS(MemoryFileSystem):
    """The memory filesystem, recording every mode a file is opened in and every change."""

    protocol = "watched"
    root_marker = "/"
    opened: list = []
    changes: list = []

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.removeprefix("watched://"))

    def _open(self, path, mode="rb", **kwargs):
        WatchedFS.opened.append(mode)
        return super()._open(path, mode, **kwargs)

    def rm(self, *args, **kwargs):
        WatchedFS.changes.append(("rm", args))
        return super().rm(*args, **kwargs)

    def mv(self, *args, **kwargs):
        WatchedFS.changes.append(("mv", args))
        return super().mv(*args, **kwargs)

    def touch(self, *args, **kwargs):
        WatchedFS.changes.append(("touch", args))
        return super().touch(*args, **kwargs)

    def makedirs(self, *args, **kwargs):
        WatchedFS.changes.append(("makedirs", args))
        return super().makedirs(*args, **kwargs)


@pytest.mark.parametrize("kind", ["dataset_dict", "shards", "jsonl.gz"])
def test_a_remote_source_is_only_ever_opened_for_reading(kind, tmp_path, capsys):
    fsspec.register_implementation("watched", WatchedFS, clobber=True)
    local = build(tmp_path, kind)
    fs, root = WatchedFS(), f"/w-{uuid.uuid4().hex}"
    files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
    for f in files:
        fs.pipe(f"{root}/{f.relative_to(tmp_path).as_posix()}", f.read_bytes())
    before = {p: fs.cat(p) for p in fs.find(root)}
    WatchedFS.opened.clear()
    WatchedFS.changes.clear()
    url = f"watched://{root}/{local.name}"
    try:
        assert cli.main(["check", url, *CLI_FACTS]) == 1
        assert cli.main(["show", url if kind != "dataset_dict" else f"{url}/train", "--row", "2",
                         "-o", str(tmp_path / "row.txt"), *CLI_FACTS]) == 0
        changes, after = list(WatchedFS.changes), {p: fs.cat(p) for p in fs.find(root)}
    finally:
        fs.rm(root, recursive=True)
    capsys.readouterr()
    assert WatchedFS.opened and set(WatchedFS.opened) == {"rb"}
    assert changes == [] and after == before


class ForkUnsafeFS(MemoryFileSystem):
    """The memory filesystem refusing, as fsspec's async ones do, use in a forked child."""

    protocol = "forkunsafe"
    root_marker = "/"
    pids: set = set()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._made_in = os.getpid()

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.removeprefix("forkunsafe://"))

    def _open(self, path, mode="rb", **kwargs):
        if os.getpid() != self._made_in:
            raise RuntimeError("This class is not fork-safe")
        return super()._open(path, mode, **kwargs)


@pytest.mark.parametrize("kind", ["shards", "parquet", "save_to_disk", "jsonl"])
def test_remote_parts_are_read_by_workers_with_their_own_filesystem(kind, tmp_path):
    """jobs=2 on a remote source: parts (row groups, files) in forked workers, each opening
    the files through a filesystem made in that worker; the report is one pass's."""
    fsspec.register_implementation("forkunsafe", ForkUnsafeFS, clobber=True)
    local = build(tmp_path, kind, n=6000)
    fs, root = ForkUnsafeFS(), f"/u-{uuid.uuid4().hex}"
    files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
    for f in files:
        fs.pipe(f"{root}/{f.relative_to(tmp_path).as_posix()}", f.read_bytes())
    url = f"forkunsafe://{root}/{local.name}"
    try:
        expected = labellint.check(str(local), chunk_rows=400, jobs=1, **FACTS).to_json()
        for jobs in (1, 2):
            got = labellint.check(url, chunk_rows=400, jobs=jobs, **FACTS).to_json()
            assert named(got, (url, "D")) == named(expected, (str(local), "D"))
    finally:
        fs.rm(root, recursive=True)


@settings(max_examples=8, deadline=None)
@given(n=st.integers(1, 3000), shards=st.integers(1, 5), chunk=st.integers(1, 1500))
def test_any_streamed_cut_reports_what_the_dataset_reports(n, shards, chunk):
    import datasets

    ds = datasets.Dataset.from_dict(rows(n, seed=n))
    expected = labellint.check(ds, chunk_rows=chunk, jobs=1, **FACTS).to_json()
    streamed = ds.to_iterable_dataset(num_shards=min(shards, n))
    assert labellint.check(streamed, chunk_rows=chunk, **FACTS).to_json() == expected


def test_a_relative_file_url_is_one_line(capsys):
    rc = cli.main(["check", "file://data/train.parquet", *CLI_FACTS])
    assert_one_line_error(rc, capsys.readouterr().err, "file://data/train.parquet",
                          "absolute path")
