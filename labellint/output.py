"""Writers of a corrected data file, in the format it was read in, every column kept."""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pyarrow as pa

from .columns import arrow_to_ragged
from .edits import Working, follow_index
from .ragged import ranges_index
from .errors import LabelLintError


class TableFile:
    """A parquet or Arrow (file or stream) file written table by table, under one schema."""

    def __init__(self, path: Path, kind: str, schema: pa.Schema, *, stream: bool,
                 compression: str | None = None) -> None:
        self.path, self.kind, self.schema = path, kind, schema
        if kind == "parquet":
            import pyarrow.parquet as pq

            codec = {"uncompressed": "none", None: "snappy"}.get(compression, compression)
            self._writer: Any = pq.ParquetWriter(path, schema, compression=codec)
        else:
            self._sink = pa.OSFile(str(path), "wb")
            self._writer = (pa.ipc.new_stream if stream else pa.ipc.new_file)(self._sink, schema)

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self._writer.write_table(table.cast(self.schema) if table.schema != self.schema
                                     else table)

    def close(self) -> None:
        self._writer.close()
        if self.kind != "parquet":
            self._sink.close()


class WriteBehind:
    """A file's writes done in one thread, in order, at most `depth` behind the caller.

    Parquet encoding and compression release the GIL: the next chunk is read and repaired on
    another core while this one is written. Memory stays bounded by `depth` chunks queued. The
    writer's error is raised in the caller, at its next write or at close.
    """

    def __init__(self, writer: TableFile | JsonLinesFile, depth: int = 2) -> None:
        self.writer = writer
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="labellint-fix-writer",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:  # after a failure the rest is only drained
                try:
                    getattr(self.writer, item[0])(item[1])
                except BaseException as e:  # raised in the caller
                    self._error = e
            del item  # a written chunk is not kept while the next one waits

    def _put(self, method: str, value: Any) -> None:
        self._raise()
        self._queue.put((method, value))

    def write(self, table: pa.Table) -> None:
        self._put("write", table)

    def write_lines(self, lines: list[bytes]) -> None:
        self._put("write_lines", lines)

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def close(self) -> None:
        """Every queued write done, then the file closed; the first error raised."""
        self._queue.put(None)
        self._thread.join()
        try:
            self.writer.close()
        finally:
            self._raise()


class JsonLinesFile:
    """A JSON Lines file written line by line, compressed as `like` (the file it copies) is."""

    def __init__(self, path: Path, like: Path) -> None:
        name = like.name.lower()
        if name.endswith(".gz"):
            import gzip

            self._f: Any = gzip.open(path, "wb")
        elif name.endswith(".bz2"):
            import bz2

            self._f = bz2.open(path, "wb")
        else:
            self._f = open(path, "wb")

    def write_lines(self, lines: list[bytes]) -> None:
        if lines:
            self._f.write(b"\n".join(lines) + b"\n")

    def close(self) -> None:
        self._f.close()


def _flat(column: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """A list column's values and its row offsets (from 0)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_fixed_size_list(column.type):
        size = column.type.list_size
        return column.flatten(), np.arange(len(column) + 1, dtype=np.int64) * size
    offsets = np.asarray(column.offsets, dtype=np.int64)
    return column.flatten(), offsets - offsets[0]


def column_array(values: Any, offsets: np.ndarray, like: pa.DataType, name: str) -> pa.Array:
    """Flat values and row offsets as a list column of type `like` (list, large or fixed)."""
    vals = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else \
        pa.array(values, type=like.value_type)
    if vals.type != like.value_type:
        vals = vals.cast(like.value_type)
    if pa.types.is_fixed_size_list(like):
        if not (np.diff(offsets) == like.list_size).all():
            raise LabelLintError(f"{name} is a fixed-size list column ({like}): a fix that "
                                 "removes a token cannot write it")
        return pa.FixedSizeListArray.from_arrays(vals, type=like)
    if pa.types.is_large_list(like):
        return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), vals, type=like)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), vals, type=like)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def fixed_table(table: pa.Table, w: Working, names: Mapping[str, str],
                drop: set[str]) -> pa.Table:
    """`table` (every column of a chunk) with the repairs of `w` written in: its rows dropped,
    its changed rows' token columns replaced, and tokens removed from the other list columns
    whose rows are as long as input_ids'."""
    read = table
    if w.rows.size != table.num_rows:
        table = table.take(pa.array(w.rows))
    changed = w.changed[w.rows]
    if changed.any():
        ours_of = {theirs: ours for ours, theirs in names.items()}
        for i, field in enumerate(table.schema):
            ours = ours_of.get(field.name)
            if field.name in drop or not _is_list(field.type):
                continue
            if ours in w.columns and ours in w.real:
                values, offsets = w.columns[ours]
                if ours == "labels" and "seq_lengths" in table.schema.names and \
                        "position_ids" not in w.real:
                    values = _stored_where_unchanged(values, offsets, w, table.column(i))
            elif w.deleted and ours is None:
                flat, read_offsets = _flat(read.column(field.name))
                index, offsets = follow_index(read_offsets, w)
                values = flat.take(pa.array(index))
            else:
                continue
            table = table.set_column(i, field, column_array(values, offsets, field.type,
                                                            field.name))
    gone = [n for n in table.schema.names if n in drop]
    return table.drop_columns(gone) if gone else table


def _stored_where_unchanged(values: np.ndarray, offsets: np.ndarray, w: Working,
                            stored: Any) -> np.ndarray:
    """Labels read beside a seq_lengths column were masked where each sequence starts (as
    TRL's collator will mask them): the copy keeps the stored label wherever no repair changed
    it. No token is removed from such rows (the lengths would need rewriting), so the rows
    kept line up with those read."""
    stored_values, _ = arrow_to_ragged(stored, "labels")
    read_values, read_offsets = w.read["labels"]
    kept = ranges_index(read_offsets[w.rows], read_offsets[w.rows + 1])
    return np.where(values != read_values[kept], values, stored_values)


def fixed_lines(lines: list[bytes], table: pa.Table, w: Working, names: Mapping[str, str],
                drop: set[str]) -> list[bytes]:
    """JSON Lines of a chunk with the repairs of `w` written in: unchanged rows byte for byte,
    changed rows re-encoded with their token columns replaced (other fields kept)."""
    changed = w.changed[w.rows]
    if not changed.any() and not drop:
        return [lines[r] for r in w.rows]
    real = [(ours, theirs) for ours, theirs in names.items()
            if ours in w.columns and ours in w.real]
    followers = [n for n in table.schema.names if _is_list(table.schema.field(n).type)
                 and n not in names.values()] if w.deleted else []
    spans = {ours: w.columns[ours] for ours, _ in real}
    out = []
    for at, r in enumerate(w.rows.tolist()):
        if not changed[at] and not (drop and drop & set(table.schema.names)):
            out.append(lines[r])
            continue
        row = json.loads(lines[r])
        if changed[at]:
            for ours, theirs in real:
                values, offsets = spans[ours]
                row[theirs] = values[offsets[at]:offsets[at + 1]].tolist()
            kept = w.origin[spans["input_ids"][1][at]:spans["input_ids"][1][at + 1]] - \
                w.read_offsets[r]
            for name in followers:
                if isinstance(row.get(name), list) and \
                        len(row[name]) == w.read_offsets[r + 1] - w.read_offsets[r]:
                    row[name] = np.asarray(row[name], dtype=object)[kept].tolist()
        for name in drop:
            row.pop(name, None)
        out.append(json.dumps(row, ensure_ascii=False).encode("utf-8"))
    return out
