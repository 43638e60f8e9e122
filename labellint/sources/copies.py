"""Every column of a data file, read for a writer whose copy keeps what labellint does not read."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pyarrow as pa

from ..errors import LabelLintError
from ..files import mapped, read_error
from .readers import READ_ERRORS, _guard, _ipc_batches, _json_blocks, _parquet_file


def file_schema(path: Path, kind: str) -> tuple[pa.Schema, bool]:
    """A parquet or Arrow file's schema (with its metadata), and whether it is an Arrow stream
    (save_to_disk writes streams) rather than an Arrow file."""
    try:
        if kind == "parquet":
            with _parquet_file(path) as f:
                return f.schema_arrow, False
        buffer = mapped(path)
        try:
            return pa.ipc.open_file(pa.BufferReader(buffer)).schema, False
        except pa.ArrowInvalid:
            return pa.ipc.open_stream(pa.BufferReader(buffer)).schema, True
    except READ_ERRORS as e:
        raise read_error(path, e) from None


def whole_tables(path: Path, kind: str, size: int) -> Iterator[pa.Table]:
    """Every column of a parquet or Arrow file, in tables of at most `size` rows, in order."""

    def tables() -> Iterator[pa.Table]:
        if kind == "parquet":
            with _parquet_file(path) as f:
                for batch in f.iter_batches(batch_size=size):
                    yield pa.Table.from_batches([batch])
            return
        for batch in _ipc_batches(path):
            for start in range(0, batch.num_rows, size):
                yield pa.Table.from_batches([batch.slice(start, size)])

    return _guard(path, tables())


def json_line_blocks(path: Path) -> Iterator[tuple[list[bytes], pa.Table]]:
    """A JSON Lines file as blocks of its lines (the non-blank ones, as bytes, one a row) with
    the table pyarrow reads from them (every field)."""
    import pyarrow.json as pj

    def blocks() -> Iterator[tuple[list[bytes], pa.Table]]:
        for block in _json_blocks(path):
            raw = block.to_pybytes()
            lines = [line for line in raw.split(b"\n") if line.strip()]
            try:
                table = pj.read_json(pa.BufferReader(block))
            except pa.ArrowInvalid as e:
                raise LabelLintError(f"{path}: cannot read it as JSON Lines, one object per "
                                     f"line ({str(e).splitlines()[0]})") from None
            if table.num_rows != len(lines):
                raise LabelLintError(f"{path}: {len(lines)} lines but {table.num_rows} rows")
            yield lines, table

    return _guard(path, blocks())


def parquet_compression(path: Path) -> str | None:
    """The codec of a parquet file's first column chunk, for a copy written alike."""
    try:
        meta = _parquet_file(path).metadata
        if meta.num_row_groups and meta.num_columns:
            codec = meta.row_group(0).column(0).compression
            return codec.lower()  # "uncompressed" is written as "none"
    except READ_ERRORS:
        pass
    return None
