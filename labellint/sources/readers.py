"""Data files (parquet, Arrow IPC, JSON Lines) read as streams of column chunks."""

from __future__ import annotations

import os
import queue
import threading
import zlib
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pyarrow as pa

from ..columns import BOUNDARY_COLUMNS, Chunk, require_input_ids, table_to_chunk
from ..errors import LabelLintError
from ..files import mapped, open_fd, read_error, release_pages
from .locate import Located, file_format

JSON_BLOCK = 1 << 24  # bytes of JSON parsed at a time
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
    try:
        while True:
            chunk, error = ready.get()
            if error is not None:
                raise error
            if chunk is done:
                return
            yield chunk
            # Asked for the next one: this chunk is checked, its memory and file pages can go.
            del chunk
            release_pages()
    finally:
        stop.set()
        # The producer notices within one put's timeout, or when its chunk is read: let it
        # finish, so no reader thread outlives the check (a thread inside Arrow at exit aborts).
        thread.join(timeout=10)


def _unique_columns(schema_names: list[str], names: Mapping[str, str], path: Path) -> None:
    """A column read twice under one name is ambiguous: which one trains the model?"""
    for theirs in set(names.values()) | set(BOUNDARY_COLUMNS):
        if schema_names.count(theirs) > 1:
            raise LabelLintError(f"{path}: column {theirs!r} appears "
                                 f"{schema_names.count(theirs)} times")


def _parquet_chunks(path: Path, names: Mapping[str, str], size: int) -> Iterator[Chunk]:
    import pyarrow.parquet as pq

    with pq.ParquetFile(pa.BufferReader(mapped(path))) as f:
        schema = f.schema_arrow.names
        require_input_ids(schema, names, str(path))
        _unique_columns(schema, names, path)
        present = [t for t in names.values() if t in schema]
        present += [c for c in BOUNDARY_COLUMNS if c in schema and c not in present]
        for batch in f.iter_batches(batch_size=size, columns=present):
            yield table_to_chunk(batch, names, str(path))


def _ipc_batches(path: Path) -> Iterator[pa.RecordBatch]:
    """Record batches of an Arrow IPC file or stream (save_to_disk writes streams), mapped."""
    buffer = mapped(path)
    try:
        reader = pa.ipc.open_file(pa.BufferReader(buffer))
    except pa.ArrowInvalid:
        yield from pa.ipc.open_stream(pa.BufferReader(buffer))
        return
    for i in range(reader.num_record_batches):
        yield reader.get_batch(i)


def _arrow_chunks(files: list[Path], names: Mapping[str, str], size: int) -> Iterator[Chunk]:
    """Record batches as chunks, zero-copy; only batches smaller than `size` rows are joined
    (a copy), so that a file of tiny batches does not cost a Python round per batch."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    for path in files:
        for batch in _ipc_batches(path):
            _unique_columns(batch.schema.names, names, path)
            for start in range(0, batch.num_rows, size):
                part = batch.slice(start, size)
                if not pending and part.num_rows >= size // 8:
                    yield table_to_chunk(part, names, str(path))
                    continue
                if pending and part.schema != pending[0].schema:
                    yield table_to_chunk(pa.Table.from_batches(pending), names, str(path))
                    pending, rows = [], 0
                pending.append(part)
                rows += part.num_rows
                if rows >= size // 8:
                    yield table_to_chunk(pa.Table.from_batches(pending), names, str(path))
                    pending, rows = [], 0
    if pending:
        yield table_to_chunk(pa.Table.from_batches(pending), names, str(files[-1]))


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
    raw = os.fdopen(open_fd(path), "rb")
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
    import pyarrow.parquet as pq

    try:
        return sum(pq.ParquetFile(pa.BufferReader(mapped(f))).metadata.num_rows for f in files)
    except (LabelLintError, *READ_ERRORS):
        return None


def read_located(found: Located, names: Mapping[str, str],
                 size: int) -> tuple[Iterator[Chunk], int | None]:
    """Files of one dataset as one stream of chunks (rows numbered across them, facts shared),
    with its row count when the files' metadata gives it."""
    files = list(found.files)
    if found.save_to_disk:
        return _guard(Path(found.name), _arrow_chunks(files, names, size)), _ipc_rows(files)
    kinds = {file_format(f) for f in files}

    def chunks() -> Iterator[Chunk]:
        for f in files:
            kind = file_format(f)
            if kind == "parquet":
                yield from _guard(f, _parquet_chunks(f, names, size))
            elif kind == "jsonl":
                yield from _guard(f, _jsonl_chunks(f, names, size))
            else:
                yield from _guard(f, _arrow_chunks([f], names, size))

    rows = (_parquet_rows(files) if kinds == {"parquet"} else
            _ipc_rows(files) if kinds == {"arrow"} else None)
    return chunks(), rows
