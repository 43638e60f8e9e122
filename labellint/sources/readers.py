"""Data files (parquet, Arrow IPC, JSON Lines) read as streams of column chunks."""

from __future__ import annotations

import os
import queue
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa

from ..columns import BOUNDARY_COLUMNS, Chunk, require_input_ids, table_to_chunk
from ..errors import LabelLintError
from ..files import mapped, open_fd, read_error, release_pages
from .locate import Located, file_format
from .remote import RemoteFile

JSON_BLOCK = 1 << 24  # bytes of JSON parsed at a time
RELEASE_BYTES = 64 << 20  # chunk bytes checked between letting mapped file pages go
# A record batch of this many rows is a chunk of its own, never copied into a join: datasets
# writes batches of 1,000 rows, and joining two of them cost a fifth of a check's CPU.
ALONE_ROWS = 512
# What a reader may raise on a corrupt file: Arrow's own errors, the decompressors' (zlib.error
# and EOFError from gzip, OSError from bz2), numpy's on a buffer shorter than its header says.
READ_ERRORS = (OSError, ValueError, EOFError, IndexError, pa.ArrowException, zlib.error)


def _guard(path: Path, chunks: Iterator[Chunk]) -> Iterator[Chunk]:
    """Turn a reader's failure part-way through a file into one clear line."""
    try:
        yield from chunks
    except LabelLintError as e:
        raise (LabelLintError(f"{path}: {e}") if not str(e).startswith(str(path)) else e) from None
    except READ_ERRORS as e:
        raise read_error(path, e) from None


def read_ahead(chunks: Iterator[Chunk], depth: int = 2) -> Iterator[Chunk]:
    """Produce chunks in a thread, up to `depth` ahead of the consumer.

    Decoding parquet or JSON releases the GIL, and so do the rules' numpy passes: the next
    chunk decodes on one core while this one is checked on the other. The producer's errors
    are raised here, in the consumer, in order; memory stays bounded by `depth` + 2 chunks (the
    queue's, the one being read and the one being checked). When the consumer stops early the
    producer stops too, and nothing is left waiting.
    """
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def hand_over(item: tuple) -> bool:
        """Queue `item` unless the consumer has stopped (then nobody would take it)."""
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                handed = hand_over((chunk, None))
                # The queue holds it now; held here too, it would outlive its check while the
                # next one is read, one chunk more in memory.
                del chunk
                if not handed:
                    return
            hand_over((done, None))
        except BaseException as e:  # handed to the consumer, which raises it
            hand_over((done, e))
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # the reader's files and maps, now rather than at collection

    thread = threading.Thread(target=produce, name="labellint-read-ahead", daemon=True)
    thread.start()
    pages = _PageRelease()
    try:
        while True:
            chunk, error = ready.get()
            if error is not None:
                raise error
            if chunk is done:
                return
            yield chunk
            # Asked for the next one: this chunk is checked, its memory can go.
            pages.checked(chunk)
            del chunk
    finally:
        stop.set()
        # The producer notices within one put's timeout, or when its chunk is read: let it
        # finish, so no reader thread outlives the check (a thread inside Arrow at exit aborts).
        thread.join(timeout=10)


class _PageRelease:
    """Mapped file pages let go every RELEASE_BYTES of chunks checked.

    Not after every chunk: each release also drops the pages of the chunks read ahead (read
    again from the page cache) and walks the whole map, ~10% of a check when done per chunk.
    """

    def __init__(self) -> None:
        self.bytes = 0

    def checked(self, chunk: Chunk) -> None:
        self.bytes += sum(values.nbytes + offsets.nbytes for values, offsets in chunk.values())
        if self.bytes >= RELEASE_BYTES:
            release_pages()
            self.bytes = 0


def _unique_columns(schema_names: list[str], names: Mapping[str, str], path: Path) -> None:
    """A column read twice under one name is ambiguous: which one trains the model?"""
    for theirs in set(names.values()) | set(BOUNDARY_COLUMNS):
        if schema_names.count(theirs) > 1:
            raise LabelLintError(f"{path}: column {theirs!r} appears "
                                 f"{schema_names.count(theirs)} times")


def _parquet_file(path: Path) -> Any:
    import pyarrow.parquet as pq

    if isinstance(path, RemoteFile):
        # The footer, then each row group's projected column chunks, their ranges coalesced
        # into few requests (pre_buffer): a skipped column is never fetched.
        return pq.ParquetFile(path.native(cache="none"), pre_buffer=True)
    return pq.ParquetFile(pa.BufferReader(mapped(path)))


def _parquet_chunks(path: Path, names: Mapping[str, str], size: int,
                    groups: range | None = None) -> Iterator[Chunk]:
    """The file's row groups `groups` (all by default) in chunks of at most `size` rows."""
    with _parquet_file(path) as f:
        schema = f.schema_arrow.names
        require_input_ids(schema, names, str(path))
        _unique_columns(schema, names, path)
        present = [t for t in names.values() if t in schema]
        present += [c for c in BOUNDARY_COLUMNS if c in schema and c not in present]
        if groups is None:
            groups = range(f.num_row_groups)
        # Row group by row group, so that a part's chunks are those one pass over the file reads.
        for g in groups:
            for batch in f.iter_batches(batch_size=size, row_groups=[g], columns=present):
                yield table_to_chunk(batch, names, str(path))


def _ipc_batches(path: Path) -> Iterator[pa.RecordBatch]:
    """Record batches of an Arrow IPC file or stream (save_to_disk writes streams), mapped."""
    if isinstance(path, RemoteFile):
        yield from _remote_ipc_batches(path)
        return
    buffer = mapped(path)
    try:
        reader = pa.ipc.open_file(pa.BufferReader(buffer))
    except pa.ArrowInvalid:
        yield from pa.ipc.open_stream(pa.BufferReader(buffer))
        return
    for i in range(reader.num_record_batches):
        yield reader.get_batch(i)


def _remote_ipc_batches(path: RemoteFile) -> Iterator[pa.RecordBatch]:
    """A remote file's record batches read one at a time: an IPC file's by its footer, a
    stream's in order, so that memory holds one batch, not the file."""
    file = path.native()
    try:
        reader = pa.ipc.open_file(file)
    except pa.ArrowInvalid:
        file.close()
        with path.native() as again:
            yield from pa.ipc.open_stream(again)
        return
    with file:
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)


def _streamed_plan(batches: Iterator[pa.RecordBatch],
                   size: int) -> Iterator[list[pa.RecordBatch]]:
    """`arrow_plan`'s chunks (the same cuts) made as the batches arrive, as the slices
    themselves: a remote stream is not listed first, which would read all of it."""
    pending: list[pa.RecordBatch] = []
    rows, least = 0, max(size // 8, 1)
    for batch in batches:
        for start in range(0, batch.num_rows, size):
            piece = batch.slice(start, size)
            if not pending and piece.num_rows >= least:
                yield [piece]
                continue
            pending.append(piece)
            rows += piece.num_rows
            if rows >= least:
                yield pending
                pending, rows = [], 0
    if pending:
        yield pending


def arrow_plan(batch_rows: Sequence[int], size: int) -> list[list[tuple[int, int, int]]]:
    """A file's chunks, from its record batches' row counts: each chunk the (batch, start, stop)
    slices it joins.

    A batch is cut into slices of at most `size` rows; a slice of at least `size // 8` rows (or
    ALONE_ROWS) is a chunk alone (zero-copy), smaller ones are joined until they reach it, so
    that a file of tiny batches does not cost a Python round per batch. Chunks never span files.
    """
    chunks: list[list[tuple[int, int, int]]] = []
    pending: list[tuple[int, int, int]] = []
    rows, least = 0, max(min(size // 8, ALONE_ROWS), 1)
    for i, n in enumerate(batch_rows):
        for start in range(0, n, size):
            piece = (i, start, min(start + size, n))
            if not pending and piece[2] - start >= least:
                chunks.append([piece])
                continue
            pending.append(piece)
            rows += piece[2] - start
            if rows >= least:
                chunks.append(pending)
                pending, rows = [], 0
    if pending:
        chunks.append(pending)
    return chunks


def _arrow_chunks(path: Path, names: Mapping[str, str], size: int,
                  plan: Sequence[list[tuple[int, int, int]]] | None = None) -> Iterator[Chunk]:
    """An Arrow file's chunks as `arrow_plan` cuts them (all, or the run of them in `plan`),
    zero-copy but for joined slices."""
    if isinstance(path, RemoteFile):
        yield from _remote_arrow_chunks(path, names, size)
        return
    batches = _ipc_batches(path)
    if plan is None:
        batches = list(batches)  # bodies stay unread: the map is only sliced
        plan = arrow_plan([b.num_rows for b in batches], size)
        batches = iter(batches)
    at, batch = -1, None
    for chunk in plan:
        pieces = []
        for i, start, stop in chunk:
            while at < i:
                batch, at = next(batches), at + 1
                _unique_columns(batch.schema.names, names, path)
            pieces.append(batch.slice(start, stop - start))
        joined = pieces[0] if len(pieces) == 1 else pa.Table.from_batches(pieces)
        yield table_to_chunk(joined, names, str(path))


def _remote_arrow_chunks(path: RemoteFile, names: Mapping[str, str],
                         size: int) -> Iterator[Chunk]:
    for pieces in _streamed_plan(_remote_ipc_batches(path), size):
        for piece in pieces:
            _unique_columns(piece.schema.names, names, path)
        joined = pieces[0] if len(pieces) == 1 else pa.Table.from_batches(pieces)
        yield table_to_chunk(joined, names, str(path))


_WHAT_JSON = {ord("n"): "null", ord("["): "an array", ord('"'): "a string",
              ord("t"): "a boolean", ord("f"): "a boolean", ord("-"): "a number",
              **{ord(d): "a number" for d in "0123456789"}}


def _refuse_non_objects(block: np.ndarray, path: Path, line: int) -> None:
    """Refuse any line of `block` (whole lines, its first starting at line `line`) that does
    not start with `{`, naming it.

    pyarrow's JSON reader (up to at least 26.0) dies of a segmentation fault when a block of
    input starts with a top-level `null`, and blocks start at line starts: so a `null` row
    anywhere may kill the process. Other non-objects (arrays, numbers, strings) get an
    ArrowInvalid that reads "Column() changed from object to array"; this names the line.
    """
    newlines = np.flatnonzero(block == 10)
    starts = np.concatenate([[0], newlines + 1])
    starts = starts[starts < block.size]  # a line starts after every newline but a last one
    starts = starts[block[starts] != ord("{")]  # nearly every line opens at once
    if not starts.size:
        return
    # The first character of each other line that is not a blank (a newline counts: an empty
    # line); only found on this slow path, since it indexes every byte.
    content = np.flatnonzero((block != 32) & (block != 9) & (block != 13))
    at = np.searchsorted(content, starts)
    first = content[at[at < content.size]]
    bad = first[(block[first] != ord("{")) & (block[first] != 10)]
    if bad.size:
        pos = int(bad[0])
        where = line + int(np.searchsorted(newlines, pos))
        what = _WHAT_JSON.get(int(block[pos]))
        raise LabelLintError(f"{path}: line {where} is "
                             f"{f'{what}, not a JSON object' if what else 'not JSON'}; "
                             "JSON Lines hold one object per line")


def _json_file(path: Path) -> Any:
    """The file's bytes, decompressed by suffix."""
    raw = path.open() if isinstance(path, RemoteFile) else os.fdopen(open_fd(path), "rb")
    name = path.name.lower()
    if name.endswith(".gz"):
        import gzip

        return gzip.GzipFile(fileobj=raw, mode="rb")
    if name.endswith(".bz2"):
        import bz2

        return bz2.BZ2File(raw, mode="rb")
    return raw


def _json_blocks(path: Path) -> Iterator[pa.Buffer]:
    """The file in blocks of about JSON_BLOCK bytes that end at a line's end, each checked to
    hold only JSON objects before pyarrow parses it.

    The blocks are ours, not pyarrow's streaming reader's: its read-ahead threads would call
    into a Python stream (decompression, the check), and one still running when the reader is
    dropped aborts the process. A block in a native buffer parses on every core.
    """
    line, parts, first = 1, [], True
    with _json_file(path) as f:
        while True:
            data = f.read(JSON_BLOCK)
            if first:
                data, first = data.removeprefix(b"\xef\xbb\xbf"), False  # a BOM opens the file
            cut = data.rfind(b"\n") + 1
            if data and not cut:  # inside a line longer than a block: read on
                parts.append(data)
                continue
            block = b"".join([*parts, data[:cut]]) if data else b"".join(parts)
            parts = [data[cut:]] if data else []
            if block.strip():
                b = np.frombuffer(block, dtype=np.uint8)
                _refuse_non_objects(b, path, line)
                yield pa.py_buffer(block)
            line += block.count(b"\n")
            if not data:
                return


def _jsonl_chunks(path: Path, names: Mapping[str, str], size: int) -> Iterator[Chunk]:
    """JSON Lines, streamed in blocks (gzip and bz2 decompressed by suffix), reading only the
    columns the rules need, so rows may carry text and other fields of any shape."""
    import pyarrow.json as pj

    read = pj.ReadOptions(block_size=1 << 20)  # pyarrow's own blocks, parsed in threads
    parse = None
    try:
        for block in _json_blocks(path):
            if parse is None:
                # The first block's inferred schema names the columns and their types; every
                # block is then read with only those, so a later row's extra field is no error.
                inferred = pj.read_json(pa.BufferReader(block), read_options=read).schema
                require_input_ids(inferred.names, names, str(path))
                wanted = pa.schema([inferred.field(t) for t in dict.fromkeys(names.values())
                                    if t in inferred.names])
                parse = pj.ParseOptions(explicit_schema=wanted,
                                        unexpected_field_behavior="ignore")
            table = pj.read_json(pa.BufferReader(block), read_options=read, parse_options=parse)
            for batch in table.combine_chunks().to_batches(max_chunksize=size):
                yield table_to_chunk(batch, names, str(path))
        if parse is None:
            raise LabelLintError(f"{path}: no rows in it (JSON Lines hold one object per line)")
    except pa.ArrowInvalid as e:
        raise LabelLintError(f"{path}: cannot read it as JSON Lines, one object per line "
                             f"({str(e).splitlines()[0]})") from None


def _ipc_rows(files: list[Path]) -> int | None:
    """Rows in Arrow IPC files, from their batches' metadata (bodies stay unread)."""
    try:
        return sum(b.num_rows for f in files for b in _ipc_batches(f))
    except (LabelLintError, *READ_ERRORS):
        return None  # the read proper reports it


def _parquet_rows(files: list[Path]) -> int | None:
    try:
        return sum(_parquet_file(f).metadata.num_rows for f in files)
    except (LabelLintError, *READ_ERRORS):
        return None


@dataclass(frozen=True)
class Part:
    """A run of one file's chunks that a process can read on its own, in one pass's order.

    kind: the file's format; units: the parquet row groups, or the Arrow chunks (as
    `arrow_plan` cuts them), of the run; None for the whole file.
    """

    path: Path
    kind: str
    units: Any = None

    def read(self, names: Mapping[str, str], size: int) -> Iterator[Chunk]:
        if self.kind == "parquet":
            chunks = _parquet_chunks(self.path, names, size, self.units)
        elif self.kind == "jsonl":
            chunks = _jsonl_chunks(self.path, names, size)
        else:
            chunks = _arrow_chunks(self.path, names, size, self.units)
        return _guard(self.path, chunks)

    def __str__(self) -> str:
        if self.units is None:
            return str(self.path)
        if self.kind == "parquet":
            return f"{self.path} (row groups {self.units.start}-{self.units.stop - 1})"
        first, last = self.units[0][0], self.units[-1][-1]
        return f"{self.path} (record batches {first[0]}-{last[0]})"


def _runs(rows: Sequence[int], least: int) -> list[tuple[int, int]]:
    """Consecutive units, of `rows` rows each, grouped into runs of at least `least` rows (the
    last may have fewer): (first, stop) each."""
    runs, first, total = [], 0, 0
    for i, n in enumerate(rows):
        total += n
        if total >= least:
            runs.append((first, i + 1))
            first, total = i + 1, 0
    if first < len(rows):
        runs.append((first, len(rows)))
    return runs


def kind_of(found: Located, path: Path) -> str:
    """How a located file is read: a save_to_disk folder's files are Arrow streams."""
    return "arrow" if found.save_to_disk else file_format(path) or "arrow"


def _file_parts(path: Path, kind: str, size: int) -> list[Part]:
    """One file's parts of at least `size` rows each; the whole file as one part where its
    metadata cannot be read (the read then reports why) or gives no rows up front (JSON)."""
    try:
        if kind == "arrow" and isinstance(path, RemoteFile):
            return [Part(path, kind)]  # its batches' sizes are its whole body read: one part
        if kind == "parquet":
            meta = _parquet_file(path).metadata
            rows = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
            return [Part(path, kind, range(a, b)) for a, b in _runs(rows, size)]
        if kind == "arrow":
            plan = arrow_plan([b.num_rows for b in _ipc_batches(path)], size)
            rows = [sum(stop - start for _, start, stop in chunk) for chunk in plan]
            return [Part(path, kind, plan[a:b]) for a, b in _runs(rows, size)]
    except (LabelLintError, *READ_ERRORS):
        pass
    return [Part(path, kind)]


def located_parts(found: Located, size: int) -> list[Part]:
    """A located dataset's parts, in order: together, exactly the chunks one pass reads."""
    return [part for f in found.files for part in _file_parts(f, kind_of(found, f), size)]


def read_located(found: Located, names: Mapping[str, str],
                 size: int) -> tuple[Iterator[Chunk], int | None]:
    """Files of one dataset as one stream of chunks (rows numbered across them, facts shared),
    with its row count when the files' metadata gives it."""
    files = list(found.files)
    kinds = {kind_of(found, f) for f in files}

    def chunks() -> Iterator[Chunk]:
        for f in files:  # each file whole: the parts of one pass
            yield from Part(f, kind_of(found, f)).read(names, size)

    # Remote files' row count would cost a request per file before the first row is read (an
    # Arrow stream's whole body): left unknown, progress then counts without a total.
    rows = (None if isinstance(files[0], RemoteFile) else
            _parquet_rows(files) if kinds == {"parquet"} else
            _ipc_rows(files) if kinds == {"arrow"} else None)
    return chunks(), rows
