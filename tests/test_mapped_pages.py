"""Mapped files' pages are let go as a check goes, and letting them go changes no finding.

Resident memory is the kernel's: each measurement runs in a child process of its own, so that
what it reads is that check's alone.
"""

import gc
import json
import mmap
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from labellint import files

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/status")
                                or not hasattr(mmap, "MADV_DONTNEED"),
                                reason="needs Linux's /proc and madvise")

ROWS, ROW_TOKENS, BATCH_ROWS = 24_000, 256, 2048
# Defects planted in rows spread over the file's chunks: a released page read again with the
# wrong bytes would move or lose them. Rows of one length read as cut at that max_length, so a
# row without EOS is truncated-target's (LL409); an id past the vocabulary is LL405's.
PLANTED = {"LL409": range(5, ROWS, 997), "LL405": range(11, ROWS, 1409)}


def rss_file_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssFile:"))


def write_arrow(path):
    """A ~55 MB Arrow IPC file of batches of BATCH_ROWS rows, with PLANTED defects."""
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 1000, size=(ROWS, ROW_TOKENS), dtype=np.int32)
    ids[:, 0], ids[:, -1] = 1, 2
    labels = ids.copy()
    labels[:, : ROW_TOKENS // 2] = -100
    ids[list(PLANTED["LL409"]), -1] = labels[list(PLANTED["LL409"]), -1] = 7
    ids[list(PLANTED["LL405"]), 3] = labels[list(PLANTED["LL405"]), 3] = 5000
    offsets = pa.array(np.arange(ROWS + 1, dtype=np.int32) * ROW_TOKENS)

    def column(values):
        return pa.ListArray.from_arrays(offsets, pa.array(values.ravel()))

    table = pa.table({"input_ids": column(ids), "labels": column(labels),
                      "attention_mask": column(np.ones_like(ids, dtype=np.int8))})
    with pa.ipc.new_file(path, table.schema) as w:
        w.write_table(table, max_chunksize=BATCH_ROWS)
    return path


CHILD = r"""
import json, os, sys
import numpy as np
import labellint
from labellint.sources import readers
from tests.test_mapped_pages import rss_file_kb
path, mode, jobs, log = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
if mode == "keep":  # as before pages were let go
    readers.release_pages = lambda: None
readers.RELEASE_BYTES = 4 << 20  # let go every few chunks of this small file
before = rss_file_kb()

@labellint.rule("LL990", "records-file-pages", severity="warning", per="row", message="m", fix="f")
def records_file_pages(b):
    # In whichever process checks the chunk: the one-process path or a worker.
    with open(log, "a") as f:
        f.write(f"{os.getpid()} {rss_file_kb()}\n")
    return np.zeros(b.n_rows, dtype=bool)

report = labellint.check(path, eos_id=2, bos_id=1, pad_id=0, vocab_size=1000,
                         chunk_rows=512, jobs=jobs)
labellint.catalog.remove("LL990")
seen = {}
for line in open(log):
    pid, kb = map(int, line.split())
    seen.setdefault(pid, []).append(kb)
# The growth within each process, from its first chunk to its peak.
grew = max(max(kbs) - (before if pid == os.getpid() else kbs[0]) for pid, kbs in seen.items())
report = report.to_dict()
report["findings"] = [f for f in report["findings"] if f["code"] != "LL990"]
print(json.dumps({"grew_kb": grew, "processes": len(seen), "report": report}))
"""


@pytest.fixture(scope="module")
def arrow_file(tmp_path_factory):
    return write_arrow(tmp_path_factory.mktemp("mapped") / "data.arrow")


def check_in_child(path, mode, jobs, log):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    log.unlink(missing_ok=True)
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), mode, str(jobs), str(log)],
                         capture_output=True, text=True, check=True, cwd=root,
                         env=dict(os.environ, PYTHONPATH=root))
    return json.loads(out.stdout)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_checked_files_pages_do_not_stay_resident(arrow_file, jobs, tmp_path):
    """In one process, pages are let go as the read-ahead hands on the next chunk; a worker
    maps each part's file afresh and lets the map go at the part's end."""
    size_kb = os.path.getsize(arrow_file) >> 10
    released = check_in_child(arrow_file, "release", jobs, tmp_path / "log")
    kept = check_in_child(arrow_file, "keep", jobs, tmp_path / "log")
    assert released["processes"] == kept["processes"] == jobs
    if jobs == 1:
        # The measurement sees the pages: kept, they are most of the file by its end.
        assert kept["grew_kb"] > size_kb * 3 // 4
    else:
        assert kept["grew_kb"] < size_kb // 4, (kept["grew_kb"], size_kb)
    # Let go after each chunk: a few chunks of 512 rows (~1.2 MB each) at a time, and the
    # library code the check runs for the first time.
    assert released["grew_kb"] < size_kb // 4, (released["grew_kb"], size_kb)
    assert released["report"] == kept["report"]
    found = {f["code"]: f for f in released["report"]["findings"]}
    for code, rows in PLANTED.items():
        assert found[code]["count_rows"] == len(rows)
        assert found[code]["rows"] == list(rows)[: len(found[code]["rows"])]


def test_released_pages_read_back_unchanged(tmp_path):
    data = np.random.default_rng(1).integers(0, 255, size=8 << 20, dtype=np.uint8)
    path = tmp_path / "bytes.bin"
    data.tofile(path)
    buffer = files.mapped(path)
    view = np.frombuffer(buffer, dtype=np.uint8)
    assert int(view.sum()) == int(data.sum())  # every page read
    resident = rss_file_kb()
    files.release_pages()
    assert rss_file_kb() < resident - (6 << 10)  # the 8 MB are out of the process
    assert np.array_equal(view, data)  # read again from the page cache, the same bytes


def test_release_after_a_map_is_gone_is_harmless(tmp_path):
    path = tmp_path / "bytes.bin"
    path.write_bytes(b"x" * 10_000)
    buffer = files.mapped(path)
    del buffer
    gc.collect()
    files.release_pages()
    assert all(m() is None for m in files._MAPS)
