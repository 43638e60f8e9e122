"""Hostile files and paths: every one is a single line naming it and exit code 2, never a hang,
a crash, an internal error or a write to the data. Real files on disk, the real command line."""

import bz2
import gzip
import json
import os
import pickle
import shutil
import socket
import tracemalloc

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import labellint
from labellint import cli
from tests.isolated import run_cases

ROWS = {
    "input_ids":      [[1, 7, 8, 9, 2, 0], [1, 7, 9, 2, 0, 0]],
    "attention_mask": [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]],
    "labels":         [[-100, -100, 8, 9, 2, -100], [-100, -100, 9, 2, 0, 0]],
}
FACTS = ["--pad-id", "0", "--bos-id", "1", "--eos-id", "2", "--vocab-size", "50"]


def table(columns=ROWS):
    return pa.table({k: pa.array(v, pa.list_(pa.int32())) for k, v in columns.items()})


def jsonl_bytes(columns=ROWS):
    n = len(columns["input_ids"])
    return "".join(json.dumps({k: v[i] for k, v in columns.items()}) + "\n"
                   for i in range(n)).encode()


def save_to_disk(path, columns=ROWS):
    import datasets

    datasets.disable_progress_bars()  # its bars go to stderr, which the tests read
    datasets.Dataset.from_dict(columns).save_to_disk(str(path))
    return path


def run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, *needles):
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("labellint: error: "), err
    assert "internal error" not in err and "Traceback" not in err, err
    for needle in needles:
        assert str(needle) in err, err


def snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink()}


# -- FIFOs, devices, sockets: nothing blocks ---------------------------------------------------


def test_a_fifo_is_refused_without_blocking_in_every_format_and_command(tmp_path):
    """Run in a child with a per-case alarm: before the fix each of these blocked forever."""
    cases = {}
    for name in ("d.parquet", "d.arrow", "d.feather", "d.jsonl", "d.jsonl.gz", "d.jsonl.bz2"):
        fifo = tmp_path / name
        os.mkfifo(fifo)
        cases[f"check {name}"] = ["check", fifo, *FACTS]
        cases[f"show {name}"] = ["show", fifo, "--row", "0", "--isolated"]
        cases[f"loss {name}"] = ["loss", "--model", tmp_path / "no-model", "--data", fifo,
                                 "--pad-id", "0"]
    ds = save_to_disk(tmp_path / "ds")
    shard = next(ds.glob("*.arrow"))
    shard.unlink()
    os.mkfifo(shard)
    cases["check save_to_disk"] = ["check", ds, *FACTS]
    cases["show save_to_disk"] = ["show", ds, "--row", "0", "--isolated"]
    cases["loss save_to_disk"] = ["loss", "--model", tmp_path / "no-model", "--data", ds,
                                  "--pad-id", "0"]
    shards = tmp_path / "shards"
    shards.mkdir()
    pq.write_table(table(), shards / "0.parquet")
    os.mkfifo(shards / "1.parquet")
    cases["check folder of shards"] = ["check", shards, *FACTS]
    cases["check glob"] = ["check", shards / "*.parquet", *FACTS]
    results = run_cases(cases, per_case=5, cwd=tmp_path)
    for case, outcome in results.items():
        assert outcome.rc == 2, (case, outcome)
        assert "named pipe (FIFO)" in outcome.stderr, (case, outcome)
        assert outcome.stderr.count("\n") == 1, (case, outcome)


def test_a_device_a_socket_and_a_folder_where_a_file_belongs_are_refused(tmp_path, capsys):
    rc, _, err = run(capsys, "check", "/dev/zero")
    assert_one_line_error(rc, err, "/dev/zero", "unknown format")  # no suffix: never opened
    os.symlink("/dev/zero", tmp_path / "zero.parquet")
    rc, _, err = run(capsys, "check", tmp_path / "zero.parquet", *FACTS)
    assert_one_line_error(rc, err, "zero.parquet", "a character device")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "s.jsonl"))
    try:
        rc, _, err = run(capsys, "check", tmp_path / "s.jsonl", *FACTS)
        assert_one_line_error(rc, err, "s.jsonl", "a socket")
    finally:
        sock.close()
    ds = save_to_disk(tmp_path / "ds")
    shard = next(ds.glob("*.arrow"))
    shard.unlink()
    shard.mkdir()
    rc, _, err = run(capsys, "check", ds, *FACTS)
    assert_one_line_error(rc, err, shard, "a folder, not a data file")


# -- JSON Lines that crash pyarrow ---------------------------------------------------------------


def test_json_lines_that_segfault_pyarrow_are_refused_before_it_parses_them(tmp_path):
    """pyarrow's JSON reader dies of SIGSEGV when a block starts with a top-level `null`;
    blocks start at line starts, so a `null` row anywhere may crash it. Other top-level
    values get a message naming the line."""
    good = jsonl_bytes()
    inputs = {
        "null.jsonl": (b"null\n", "line 1 is null"),
        "nulls.jsonl": (b"null\nnull\n", "line 1 is null"),
        "null-first.jsonl": (b"  null\n" + good, "line 1 is null"),
        "null-later.jsonl": (good + b"null\n" + good, "line 3 is null"),
        "null.jsonl.gz": (gzip.compress(good + b"\r\n\t null\n"), "line 4 is null"),
        "null.jsonl.bz2": (bz2.compress(b"null\n"), "line 1 is null"),
        "array.jsonl": (good + b"[1, 2]\n", "line 3 is an array"),
        "number.jsonl": (b"7\n", "line 1 is a number"),
        "string.jsonl": (b'"x"\n', "line 1 is a string"),
    }
    cases = {}
    for name, (data, _) in inputs.items():
        (tmp_path / name).write_bytes(data)
        cases[name] = ["check", tmp_path / name, *FACTS]
    # A null row at the start of a later block: the 16 KiB blocks of this file end at a line
    # end, so pyarrow's second block starts with it.
    line = json.dumps({"input_ids": [1, 2], "pad": "x" * 40}).encode() + b"\n"
    big = line * ((1 << 14) // len(line)) + b"null\n" + line
    (tmp_path / "block.jsonl").write_bytes(big)
    cases["block.jsonl"] = ["check", tmp_path / "block.jsonl", *FACTS]
    results = run_cases(cases, per_case=10, cwd=tmp_path)
    for name, outcome in results.items():
        expected = inputs[name][1] if name in inputs else "is null"
        assert outcome.rc == 2, (name, outcome)
        assert expected in outcome.stderr and name in outcome.stderr, (name, outcome)
        assert outcome.stderr.count("\n") == 1, (name, outcome)


def test_a_bom_and_blank_lines_in_json_lines_are_read(tmp_path, capsys):
    (tmp_path / "a.jsonl").write_bytes(jsonl_bytes())
    (tmp_path / "b.jsonl").write_bytes(b"\xef\xbb\xbf" + jsonl_bytes().replace(b"\n", b"\n\n \n"))
    rc_a, out_a, _ = run(capsys, "check", tmp_path / "a.jsonl", *FACTS, "--format", "json")
    rc_b, out_b, err = run(capsys, "check", tmp_path / "b.jsonl", *FACTS, "--format", "json")
    assert rc_a == rc_b == 1, err
    assert ([f["code"] for f in json.loads(out_a)["findings"]]
            == [f["code"] for f in json.loads(out_b)["findings"]] == ["LL103"])


@pytest.mark.parametrize("block", [7, 64, 1 << 10, 1 << 24])
def test_json_lines_read_the_same_rows_at_any_block_size(tmp_path, monkeypatch, block):
    """Blocks are cut at line ends by labellint: a line longer than a block, blank lines, CRLF
    and a last line without its newline all read as the rows they are."""
    rows = [{"input_ids": list(range(1, n)) + [2], "labels": list(range(1, n)) + [2],
             "text": "x" * (3 * n)} for n in (3, 40, 5, 300, 9)]
    data = b"".join(json.dumps(r).encode() + (b"\r\n" if i % 2 else b"\n\n")
                    for i, r in enumerate(rows)).rstrip(b"\r\n")
    (tmp_path / "a.jsonl").write_bytes(data)
    monkeypatch.setattr("labellint.sources.readers.JSON_BLOCK", block)
    report = labellint.check(tmp_path / "a.jsonl", pad_id=0, bos_id=1, eos_id=2,
                             vocab_size=400, select=["LL405"])
    assert (report.sources[0].rows, report.sources[0].tokens) == (5, sum((3, 40, 5, 300, 9)))


# -- show -o never writes over the data --------------------------------------------------------


def test_show_output_is_refused_when_it_names_any_file_the_data_is_read_from(tmp_path, capsys):
    shards = tmp_path / "shards"
    shards.mkdir()
    pq.write_table(table(), shards / "0.parquet")
    pq.write_table(table(), shards / "1.parquet")
    ds = save_to_disk(tmp_path / "ds")
    os.link(shards / "1.parquet", tmp_path / "hard.html")
    os.symlink(shards / "1.parquet", tmp_path / "soft.html")
    attempts = [
        (shards, shards / "1.parquet"),                    # a shard of the folder
        (shards, tmp_path / "hard.html"),                  # a hard link to a shard
        (shards, tmp_path / "soft.html"),                  # a symbolic link to a shard
        (shards / "*.parquet", shards / "0.parquet"),      # a member of the glob
        (shards / "0.parquet", shards / ".." / "shards" / "0.parquet"),  # another spelling
        (ds, next(ds.glob("*.arrow"))),                    # save_to_disk's Arrow file
        (ds, ds / "state.json"),                           # its metadata
        (shards, shards / "2.jsonl"),                      # a new file the folder would read
    ]
    before = snapshot(tmp_path)
    for data, out in attempts:
        rc, _, err = run(capsys, "show", data, "--row", "0", "--isolated", "-o", out)
        assert_one_line_error(rc, err, "write elsewhere")
    assert snapshot(tmp_path) == before
    assert not (shards / "2.jsonl").exists()
    rc, _, err = run(capsys, "show", shards, "--row", "0", "--isolated", "-o",
                     tmp_path / "row.txt")
    assert rc == 0, err
    assert "row 0" in (tmp_path / "row.txt").read_text()


# -- save_to_disk metadata ---------------------------------------------------------------------


@pytest.mark.parametrize("content, message", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "holds a JSON list, not an object"),
    (b'"state"', "holds a JSON str, not an object"),
    (b"{}", "no `_data_files` list"),
    (b'{"_data_files": 5}', "no `_data_files` list"),
    (b'{"_data_files": []}', "no `_data_files` list"),
    (b'{"_data_files": [5]}', "without a `filename`"),
    (b'{"_data_files": [{"name": "x"}]}', "without a `filename`"),
    (b'{"_data_files": [{"filename": 5}]}', "filename 5 is not the plain name"),
    (b'{"_data_files": [{"filename": "../../etc/passwd"}]}', "is not the plain name"),
    (b'{"_data_files": [{"filename": "/etc/passwd"}]}', "is not the plain name"),
    (b'{"_data_files": [{"filename": "missing.arrow"}]}', "no such file or folder"),
    (b'{"_data_files": [{"filename": "\xff\xfe.arrow"}]}', "not UTF-8"),
    (b"[" * 100000, "not valid JSON"),
])
def test_a_broken_state_json_is_one_line_naming_it(tmp_path, capsys, content, message):
    ds = save_to_disk(tmp_path / "ds")
    (ds / "state.json").write_bytes(content)
    rc, _, err = run(capsys, "check", ds, *FACTS)
    assert_one_line_error(rc, err, message, ds)


def test_a_bom_in_state_json_is_accepted(tmp_path, capsys):
    ds = save_to_disk(tmp_path / "ds")
    rc, out, _ = run(capsys, "check", ds, *FACTS, "--format", "json")
    state = ds / "state.json"
    state.write_bytes(b"\xef\xbb\xbf" + state.read_bytes())
    rc_bom, out_bom, err = run(capsys, "check", ds, *FACTS, "--format", "json")
    assert (rc_bom, json.loads(out_bom)["findings"]) == (rc, json.loads(out)["findings"]), err


@pytest.mark.parametrize("content, message", [
    (b'{"splits": ["."]}', "split '.' is not the plain name"),
    (b'{"splits": [".."]}', "split '..' is not the plain name"),
    (b'{"splits": ["train/../train"]}', "is not the plain name"),
    (b'{"splits": ["/tmp"]}', "is not the plain name"),
    (b'{"splits": "train"}', "no `splits` list"),
    (b'{"splits": []}', "no `splits` list"),
    (b'{"split": ["train"]}', "no `splits` list"),
    (b'{"splits": [null]}', "split None is not the plain name"),
    (b'{"splits": ["train", "train"]}', "listed 2 times"),
    (b'{"splits": ["nope"]}', "no such file or folder"),
    (b'{"splits": ["train"]', "not valid JSON"),
    (b"\xff", "not UTF-8"),
    (b"5", "holds a JSON int, not an object"),
])
def test_a_broken_dataset_dict_json_is_one_line_naming_it(tmp_path, capsys, content, message):
    import datasets
    from datasets import Dataset, DatasetDict

    datasets.disable_progress_bars()
    dd = tmp_path / "dd"
    DatasetDict(train=Dataset.from_dict(ROWS)).save_to_disk(str(dd))
    (dd / "dataset_dict.json").write_bytes(content)
    rc, _, err = run(capsys, "check", dd, *FACTS)
    assert_one_line_error(rc, err, message, dd)


def test_a_split_that_is_itself_a_dataset_dict_is_refused_not_recursed(tmp_path, capsys):
    dd = tmp_path / "dd"
    (dd / "inner").mkdir(parents=True)
    (dd / "dataset_dict.json").write_text('{"splits": ["inner"]}')
    (dd / "inner" / "dataset_dict.json").write_text('{"splits": ["inner"]}')
    os.symlink("..", dd / "inner" / "inner")
    rc, _, err = run(capsys, "check", dd, *FACTS)
    assert_one_line_error(rc, err, "has no state.json")


# -- what a file's columns may claim ------------------------------------------------------------


def test_duplicate_column_names_are_refused(tmp_path, capsys):
    t = table()
    dup = pa.table([t["input_ids"], t["labels"], t["labels"]],
                   names=["input_ids", "labels", "labels"])
    pq.write_table(dup, tmp_path / "d.parquet")
    feather.write_feather(dup, tmp_path / "d.feather")
    for path in (tmp_path / "d.parquet", tmp_path / "d.feather"):
        rc, _, err = run(capsys, "check", path, *FACTS)
        assert_one_line_error(rc, err, path, "column 'labels' appears 2 times")


def test_fixed_size_list_columns_with_null_rows_are_refused(tmp_path, capsys):
    ids = pa.array([[1, 7, 2], None, [1, 8, 2]], pa.list_(pa.int32(), 3))
    feather.write_feather(pa.table({"input_ids": ids, "labels": ids}), tmp_path / "f.feather")
    rc, _, err = run(capsys, "check", tmp_path / "f.feather", *FACTS)
    assert_one_line_error(rc, err, "f.feather", "input_ids has 1 null rows")


@pytest.mark.parametrize("claim", [10**12, 5 * 10**7, 2**62])
def test_a_huge_seq_lengths_claim_costs_no_memory_and_is_a_length_mismatch(tmp_path, capsys,
                                                                            claim):
    path = tmp_path / "packed.parquet"
    pq.write_table(pa.table({"input_ids": [[1, 5, 2, 1, 6, 2]], "labels": [[1, 5, 2, 1, 6, 2]],
                             "seq_lengths": pa.array([[3, claim]], pa.list_(pa.int64()))}), path)
    assert path.stat().st_size < 2048
    tracemalloc.start()
    try:
        rc, out, err = run(capsys, "check", path, *FACTS, "--format", "json")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rc == 1, err
    assert "LL001" in [f["code"] for f in json.loads(out)["findings"]]
    assert peak < 50 << 20, f"{peak / 2**20:.0f} MiB traced"


@pytest.mark.parametrize("claim", [10**12, 2**62])
def test_a_huge_seq_lengths_claim_in_memory_is_a_length_mismatch(claim):
    tracemalloc.start()
    try:
        report = labellint.check({"input_ids": [[1, 5, 2, 1, 6, 2]],
                                  "labels": [[1, 5, 2, 1, 6, 2]], "seq_lengths": [[3, claim]]},
                                 pad_id=0, bos_id=1, eos_id=2, vocab_size=50)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "LL001" in {f.code for f in report.findings}
    assert peak < 50 << 20, f"{peak / 2**20:.0f} MiB traced"


def test_seq_lengths_that_fit_still_give_the_packed_positions(tmp_path, capsys):
    path = tmp_path / "packed.parquet"
    pq.write_table(pa.table({"input_ids": [[1, 5, 2, 1, 6, 2], [1, 7, 2]],
                             "labels": [[1, 5, 2, 1, 6, 2], [1, 7, 2]],
                             "seq_lengths": [[3, 3], [3]]}), path)
    rc, out, err = run(capsys, "check", path, *FACTS, "--format", "json")
    assert "LL001" not in [f["code"] for f in json.loads(out)["findings"]], err


def test_a_corrupted_arrow_file_is_one_line(tmp_path, capsys):
    """Offsets flipped to point past the values: IndexError inside the rules before."""
    good = tmp_path / "good.arrow"
    feather.write_feather(table(), good, compression="uncompressed")
    data = bytearray(good.read_bytes())
    offsets = pa.array([0, 6, 12], pa.int32()).buffers()[1].to_pybytes()
    at = data.find(offsets)
    assert at > 0
    data[at + 4:at + 8] = (1 << 20).to_bytes(4, "little")
    bad = tmp_path / "bad.arrow"
    bad.write_bytes(bytes(data))
    rc, _, err = run(capsys, "check", bad, *FACTS)
    assert_one_line_error(rc, err, bad, "corrupt")


# -- paths ---------------------------------------------------------------------------------------


def test_paths_that_cannot_name_data_are_one_line(tmp_path, capsys):
    long = tmp_path / ("x" * 300 + ".parquet")
    os.symlink(tmp_path / "loop-b.parquet", tmp_path / "loop-a.parquet")
    os.symlink(tmp_path / "loop-a.parquet", tmp_path / "loop-b.parquet")
    os.symlink(tmp_path / "gone.parquet", tmp_path / "dangling.parquet")
    for path, message in [(long, "name is too long"),
                          (tmp_path / "loop-a.parquet", "a symbolic link loop"),
                          (tmp_path / "dangling.parquet", "which does not exist")]:
        for argv in (["check", path, *FACTS], ["show", path, "--row", "0", "--isolated"]):
            rc, _, err = run(capsys, *argv)
            assert_one_line_error(rc, err, message)


def test_a_dangling_link_among_shards_is_refused_not_skipped(tmp_path, capsys):
    shards = tmp_path / "shards"
    shards.mkdir()
    pq.write_table(table(), shards / "0.parquet")
    os.symlink(tmp_path / "gone.parquet", shards / "1.parquet")
    rc, _, err = run(capsys, "check", shards, *FACTS)
    assert_one_line_error(rc, err, shards / "1.parquet", "which does not exist")


def test_a_folder_linked_into_itself_is_refused_not_walked_forever(tmp_path, capsys):
    repo = tmp_path / "repo"
    (repo / "data" / "train").mkdir(parents=True)
    pq.write_table(table(), repo / "data" / "train" / "0.parquet")
    os.symlink("..", repo / "data" / "up")
    os.symlink("..", repo / "data" / "up2")
    rc, _, err = run(capsys, "check", repo / "data", *FACTS)
    assert_one_line_error(rc, err, "contains itself")
    # A glob with ** does not follow the links either: glob.glob walks 2**40 paths here, so
    # the run is a child's, with a deadline.
    glob = run_cases({"glob": ["check", repo / "**" / "*.parquet", *FACTS]}, per_case=20)
    assert glob["glob"].rc == 1, glob


@pytest.mark.parametrize("argv", [
    ["check", ""], ["check", "x.parquet", ""], ["show", "", "--row", "0"],
    ["loss", "--model", "m", "--data", ""], ["check", "x.parquet", "--tokenizer", ""],
    ["show", "x.parquet", "--row", "0", "-o", ""],
])
def test_an_empty_path_is_a_usage_error_not_the_current_folder(tmp_path, capsys, monkeypatch,
                                                                argv):
    monkeypatch.chdir(tmp_path)
    pq.write_table(table(), tmp_path / "x.parquet")  # the current folder holds data
    rc, _, err = run(capsys, *argv)
    assert_one_line_error(rc, err, "is an empty path")


# -- no pickle -----------------------------------------------------------------------------------


class Marker:
    """Unpickling it creates a file: proof that something was unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickles_beside_the_data_or_in_a_model_folder_are_never_loaded(tmp_path, capsys):
    marker = tmp_path / "unpickled"
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(table(), data / "0.parquet")
    for name in ("data.pkl", "pytorch_model.bin", "model.pt", "train.pickle"):
        (data / name).write_bytes(pickle.dumps(Marker(marker)))
    model = tmp_path / "model"
    model.mkdir()
    shutil.copy(data / "pytorch_model.bin", model / "pytorch_model.bin")
    (model / "config.json").write_text(json.dumps({
        "model_type": "llama", "vocab_size": 64, "hidden_size": 16, "intermediate_size": 32,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2}))
    (model / "training_args.bin").write_bytes(pickle.dumps(Marker(marker)))
    runs = [["check", data, *FACTS], ["show", data, "--row", "0", "--isolated"],
            ["check", data, *FACTS, "--model", model],
            ["loss", "--model", model, "--data", data, "--batch-size", "1", "--pad-id", "0"]]
    for argv in runs:
        rc, _, err = run(capsys, *argv)
        assert rc in (0, 1, 2), err
        assert not marker.exists(), argv
    assert "cannot load a causal LM" in err  # no safetensors: refused, not unpickled
