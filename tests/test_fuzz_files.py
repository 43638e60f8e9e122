"""Seeded corrupt files of every format, checked through the command line: each either checks
(exit 0 or 1) or is one line naming the file and the problem (exit 2); none hangs, crashes or
changes a byte of its input.

The inputs come from real valid files (pyarrow's writers, datasets' save_to_disk) cut, flipped,
spliced, renamed, emptied, or rewritten as hostile JSON Lines. They run in one child process
(tests/isolated.py), so a segfault inside pyarrow fails its case instead of killing pytest, and
start-up is paid once.
"""

import bz2
import gzip
import hashlib
import json
import random
import shutil

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq

from tests.isolated import run_cases

SEED = 11
INPUTS_PER_RUN = 320  # about 15 s on two cores; each is one in-process CLI run
FACTS = ["--pad-id", "0", "--bos-id", "1", "--eos-id", "2", "--vocab-size", "50", "--isolated"]
ROWS = {
    "input_ids":      [[1, 7, 8, 9, 2, 0], [1, 7, 9, 2, 0, 0], [1, 7, 8, 9, 9, 9]] * 3,
    "attention_mask": [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]] * 3,
    "labels":         [[-100, -100, 8, 9, 2, -100], [-100, -100, 9, 2, 0, 0],
                       [-100, -100, 8, 9, 9, 9]] * 3,
    "seq_lengths":    [[3, 3], [6], [2, 4]] * 3,
}


def table():
    return pa.table({k: pa.array(v, pa.list_(pa.int32())) for k, v in ROWS.items()})


def jsonl():
    n = len(ROWS["input_ids"])
    return "".join(json.dumps({k: v[i] for k, v in ROWS.items()} | {"text": "héllo"}) + "\n"
                   for i in range(n)).encode()


def valid_files(folder):
    """name -> bytes of a real valid file of each format."""
    folder.mkdir()
    pq.write_table(table(), folder / "a.parquet")
    feather.write_feather(table(), folder / "a.feather", compression="uncompressed")
    feather.write_feather(table(), folder / "z.feather", compression="zstd")
    with pa.OSFile(str(folder / "a.arrow"), "wb") as sink, \
            pa.ipc.new_stream(sink, table().schema) as writer:
        writer.write_table(table())
    (folder / "a.jsonl").write_bytes(jsonl())
    (folder / "a.jsonl.gz").write_bytes(gzip.compress(jsonl()))
    (folder / "a.jsonl.bz2").write_bytes(bz2.compress(jsonl()))
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def save_to_disk(path):
    import datasets

    datasets.disable_progress_bars()
    datasets.Dataset.from_dict(ROWS).save_to_disk(str(path))
    return path


JSON_VALUES = ["null", "[]", "{}", "[1, 2]", "7", '"x"', "true", "1e400", "-1",
               "18446744073709551616", "9223372036854775808", "1.5", '"7"', "[null]",
               "[[1], [2]]", "[" * 300 + "1" + "]" * 300, '{"a": 1}', "[1, \"2\"]", "[true]"]


def hostile_jsonl(rng):
    """A JSON Lines file with a few hostile rows among good ones."""
    good = jsonl().splitlines(keepends=True)
    lines = list(good)
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(6)
        if kind == 0:  # a hostile value where the ids are
            column = rng.choice(["input_ids", "labels", "attention_mask", "seq_lengths"])
            line = json.dumps({k: v[0] for k, v in ROWS.items()})
            line = line.replace(json.dumps(ROWS[column][0]), rng.choice(JSON_VALUES), 1)
            lines.insert(rng.randrange(len(lines) + 1), line.encode() + b"\n")
        elif kind == 1:  # a hostile top-level row
            lines.insert(rng.randrange(len(lines) + 1), rng.choice(JSON_VALUES).encode() + b"\n")
        elif kind == 2:  # invalid UTF-8 inside a row
            i = rng.randrange(len(lines))
            lines[i] = lines[i].replace("héllo".encode(), b"h\xff\xfello")
        elif kind == 3:  # a row cut short
            i = rng.randrange(len(lines))
            lines[i] = lines[i][:rng.randrange(1, len(lines[i]))] + b"\n"
        elif kind == 4:  # a key repeated
            i = rng.randrange(len(lines))
            lines[i] = lines[i].replace(b"{", b'{"input_ids": [1], ', 1)
        else:  # blank or whitespace lines, CRLF
            lines.insert(rng.randrange(len(lines) + 1), rng.choice([b"\n", b" \t\r\n", b"\r\n"]))
    return b"".join(lines)


def corrupt(rng, name, data, others):
    """One seeded corruption of a valid file: (new name, bytes)."""
    kind = rng.randrange(6)
    if kind == 0:  # truncated
        return name, data[:rng.randrange(len(data))]
    if kind == 1:  # bytes flipped
        out = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        return name, bytes(out)
    if kind == 2:  # spliced with another format's tail
        other = rng.choice(others)
        return name, data[:rng.randrange(len(data))] + other[rng.randrange(len(other)):]
    if kind == 3:  # a format under another's name
        return rng.choice(["x.parquet", "x.feather", "x.arrow", "x.jsonl", "x.jsonl.gz",
                           "x.jsonl.bz2"]), data
    if kind == 4:  # empty, or a run of one byte
        return name, rng.choice([b"", b"\0" * rng.randrange(1, 5000), b"PAR1", b"ARROW1\0\0"])
    out = bytearray(data)  # a random window overwritten with random bytes
    at = rng.randrange(len(out))
    width = rng.randint(1, 64)
    out[at:at + width] = rng.randbytes(min(width, len(out) - at))
    return name, bytes(out)


def corrupt_save_to_disk(rng, folder):
    """A save_to_disk folder with one part broken."""
    ds = save_to_disk(folder)
    shard = next(ds.glob("*.arrow"))
    state = ds / "state.json"
    kind = rng.randrange(4)
    if kind == 0:
        shard.write_bytes(b"")  # a zero-length shard
    elif kind == 1:
        _, data = corrupt(rng, shard.name, shard.read_bytes(), [shard.read_bytes()])
        shard.write_bytes(data)
    elif kind == 2:
        _, data = corrupt(rng, state.name, state.read_bytes(), [b"{}"])
        state.write_bytes(data)
    else:
        meta = json.loads(state.read_text())
        meta["_data_files"] = rng.choice([[], None, "x", [{"filename": 7}],
                                          [{"filename": shard.name}] * 2,
                                          [{"filename": "../" + shard.name}]])
        state.write_text(json.dumps(meta))
    return ds


def digest(root):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_corrupt_files_check_or_fail_with_one_line_and_stay_unchanged(tmp_path):
    rng = random.Random(SEED)
    valid = valid_files(tmp_path / "valid")
    names, blobs = list(valid), list(valid.values())
    cases, paths = {}, {}
    for i in range(INPUTS_PER_RUN):
        folder = tmp_path / f"in{i:03d}"
        if i % 10 == 9:
            path = corrupt_save_to_disk(rng, folder)
        else:
            folder.mkdir()
            if i % 3 == 2:
                name = rng.choice(["x.jsonl", "x.jsonl.gz", "x.jsonl.bz2"])
                data = hostile_jsonl(rng)
                data = (gzip.compress(data) if name.endswith(".gz") else
                        bz2.compress(data) if name.endswith(".bz2") else data)
            else:
                source = rng.choice(names)
                name, data = corrupt(rng, source, valid[source], blobs)
            path = folder / name
            path.write_bytes(data)
            if i % 7 == 0:  # also as a shard beside a valid one, and through a glob
                shutil.copy(tmp_path / "valid" / "a.parquet", folder / "0.parquet")
                path = folder / "*" if i % 14 == 0 else folder
        paths[f"check {i}"] = path
        cases[f"check {i}"] = ["check", path, *FACTS, "--format", "json"]
        if i % 4 == 0:
            paths[f"show {i}"] = path
            cases[f"show {i}"] = ["show", path, "--row", str(rng.randrange(12)), *FACTS]
    before = digest(tmp_path)
    results = run_cases(cases, per_case=10, cwd=tmp_path)
    assert digest(tmp_path) == before, "an input changed"
    bad = {}
    for case, outcome in results.items():
        err = outcome.stderr
        ok = outcome.rc in (0, 1) or (
            outcome.rc == 2 and err.count("\n") == 1 and err.startswith("labellint: error: ")
            and str(paths[case]).split("*")[0] in err
            and "Traceback" not in err and "internal error" not in err)
        if not ok:
            bad[case] = (str(paths[case]), outcome.rc, err[-300:])
    assert not bad, json.dumps(bad, indent=1)[:6000]
    assert len(results) == len(cases) >= INPUTS_PER_RUN
