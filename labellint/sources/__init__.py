"""Every input form as `Source`s: batch dicts, rows, datasets, DataLoaders, tables or paths.

A `Source` is a name, an iterator of chunks ({column: (flat, offsets)}), and whether each chunk
is one training batch exactly as the model receives it.
"""

from __future__ import annotations

import functools
import itertools
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import pyarrow as pa

from ..columns import (BOUNDARY_COLUMNS, Chunk, batch_to_chunk, column_names, is_scalar, plain,
                       require_input_ids, rows_to_chunk, table_to_chunk)
from ..errors import LabelLintError
from .locate import Located, locate
from .readers import located_parts, read_ahead, read_located
from .remote import is_url, local_path, locate_remote

CHUNK_ROWS = 8192
# A part of a source, for a worker process: what it is (a file and where in it, for messages)
# and a function reading its chunks.
PartReader = tuple[str, Callable[[], Iterator[Chunk]]]


@dataclass
class Source:
    name: str
    chunks: Iterator[Chunk]
    training_batches: bool
    total_rows: int | None = None  # when known up front, for progress
    # The source cut into parts on its chunk boundaries, for worker processes: a list of (what
    # the part is, a function reading its chunks), together exactly the chunks of `chunks`.
    # Planned on demand (it reads every file's metadata); None for a stream that cannot be cut.
    parts: Callable[[], list[PartReader]] | None = None


def _is_dataset(obj: Any) -> bool:
    datasets = sys.modules.get("datasets")
    return datasets is not None and isinstance(obj, datasets.Dataset)


def _is_iterable_dataset(obj: Any) -> bool:
    datasets = sys.modules.get("datasets")
    return datasets is not None and isinstance(obj, datasets.IterableDataset)


def _is_iterable_dataset_dict(obj: Any) -> bool:
    datasets = sys.modules.get("datasets")
    return datasets is not None and isinstance(obj, datasets.IterableDatasetDict)


def _is_dataset_dict(obj: Any) -> bool:
    datasets = sys.modules.get("datasets")
    return datasets is not None and isinstance(obj, datasets.DatasetDict)


def _is_row(item: Any, names: Mapping[str, str]) -> bool:
    """A row dict holds one sequence per column; a batch dict holds several."""
    if not isinstance(item, Mapping) or names["input_ids"] not in item:
        return False
    ids = plain(item[names["input_ids"]])
    if isinstance(ids, np.ndarray):
        return ids.ndim == 1
    # Anything else that is not a list is a column to_ragged refuses by name.
    return isinstance(ids, (list, tuple)) and len(ids) > 0 and is_scalar(ids[0])


def _chunked_rows(items: Iterator[Any], names: Mapping[str, str], size: int) -> Iterator[Chunk]:
    first = 0
    while batch := list(itertools.islice(items, size)):
        yield rows_to_chunk(batch, names, first)
        first += len(batch)


def _chunked_table(table: pa.Table, names: Mapping[str, str], size: int,
                   what: str) -> Iterator[Chunk]:
    for start in range(0, max(table.num_rows, 1), size):
        yield table_to_chunk(table.slice(start, size), names, what)


def _dataset_chunks(ds: Any, names: Mapping[str, str], size: int) -> Iterator[Chunk]:
    require_input_ids(ds.column_names, names, "the dataset")
    wanted = _wanted(ds.column_names, names)
    # Arrow formatting hands out record batches without converting rows to Python.
    for table in ds.select_columns(wanted).with_format("arrow").iter(batch_size=size):
        yield table_to_chunk(table, names, "the dataset")


def _streamed_chunks(ds: Any, names: Mapping[str, str], size: int) -> Iterator[Chunk]:
    """A streaming dataset, batch by batch as Arrow tables: only `size` rows are in memory at
    a time, and a dataset read from Arrow or parquet shards never makes a Python row."""
    wanted = None
    if ds.column_names is not None:  # a generator's columns are known from its first rows
        require_input_ids(ds.column_names, names, "the dataset")
        wanted = _wanted(ds.column_names, names)
        ds = ds.select_columns(wanted)
    tables, rows = iter(ds.with_format("arrow").iter(batch_size=size)), 0
    while True:
        try:
            table = next(tables, None)
        except LabelLintError:
            raise
        except Exception as e:  # the stream's own: a dropped connection, the user's map
            # Chained, not swallowed: the cause is the stream's, and its traceback says where.
            raise LabelLintError(f"the dataset: the stream failed after {rows} rows "
                                 f"({type(e).__name__}: {str(e).strip()[:200]})") from e
        if table is None:
            return
        if wanted is None:
            require_input_ids(table.column_names, names, "the dataset")
            wanted = _wanted(table.column_names, names)
        rows += table.num_rows
        yield table_to_chunk(table.select([c for c in wanted if c in table.column_names]),
                             names, "the dataset")


def _wanted(present: list[str], names: Mapping[str, str]) -> list[str]:
    wanted = [theirs for theirs in names.values() if theirs in present]
    return wanted + [c for c in BOUNDARY_COLUMNS if c in present and c not in wanted]


def _row_ranges(rows: int, size: int) -> list[tuple[int, int]]:
    """Rows cut into ranges of one chunk each (a part of ~3M tokens), as one pass cuts them."""
    return [(start, min(start + size, rows)) for start in range(0, rows, size)]


def _dataset_parts(ds: Any, names: Mapping[str, str], size: int) -> list[PartReader]:
    # A contiguous `select` is a slice of the dataset's table, and a forked worker has the
    # table already: nothing is copied.
    return [(f"rows {a}-{b - 1}",
             functools.partial(_dataset_chunks, ds.select(range(a, b)), names, size))
            for a, b in _row_ranges(len(ds), size)]


def _table_parts(table: pa.Table, names: Mapping[str, str], size: int) -> list[PartReader]:
    return [(f"rows {a}-{b - 1}",
             functools.partial(_chunked_table, table.slice(a, b - a), names, size, "the table"))
            for a, b in _row_ranges(table.num_rows, size)]


def _file_parts(found: Located, names: Mapping[str, str], size: int) -> list[PartReader]:
    return [(str(part), functools.partial(part.read, names, size))
            for part in located_parts(found, size)]


def _batches(first: Any, rest: Iterator[Any], names: Mapping[str, str]) -> Iterator[Chunk]:
    for i, batch in enumerate(itertools.chain([first], rest)):
        if not isinstance(batch, Mapping):
            raise LabelLintError(f"batch {i} is a {type(batch).__name__}, not a dict of columns")
        yield batch_to_chunk(batch, names)


def open_sources(
    source: Any,
    *,
    columns: Mapping[str, str] | None = None,
    chunk_rows: int = CHUNK_ROWS,
    name: str | None = None,
) -> list[Source]:
    """Turn whatever the user handed us into named chunk streams."""
    names = column_names(columns)
    if isinstance(source, (str, os.PathLike)) and not is_url(source):
        return [Source(s.name, read_ahead(s.chunks), s.training_batches, s.total_rows, s.parts)
                for s in open_path(Path(source), names, chunk_rows)]
    streamed = _streamed_sources(source, columns, chunk_rows, name)
    if streamed is not None:
        return streamed
    if _is_dataset_dict(source):
        return [Source(f"{name or 'dataset'}[{split}]",
                       _dataset_chunks(ds, names, chunk_rows), False, len(ds),
                       functools.partial(_dataset_parts, ds, names, chunk_rows))
                for split, ds in source.items()]
    if _is_dataset(source):
        return [Source(name or "dataset", _dataset_chunks(source, names, chunk_rows), False,
                       len(source), functools.partial(_dataset_parts, source, names, chunk_rows))]
    if type(source).__module__.startswith("pandas") and type(source).__name__ == "DataFrame":
        source = pa.Table.from_pandas(source, preserve_index=False)
    if isinstance(source, (pa.Table, pa.RecordBatch)):
        table = pa.Table.from_batches([source]) if isinstance(source, pa.RecordBatch) else source
        return [Source(name or "table", _chunked_table(table, names, chunk_rows, "the table"),
                       False, table.num_rows,
                       functools.partial(_table_parts, table, names, chunk_rows))]
    if isinstance(source, Mapping):
        if _is_row(source, names):
            return [Source(name or "row", iter([batch_to_chunk(source, names)]), False)]
        return [Source(name or "batch", iter([batch_to_chunk(source, names)]), True)]
    if isinstance(source, (str, bytes)) or not isinstance(source, Iterable):
        raise LabelLintError(
            f"cannot check a {type(source).__name__}: pass a batch dict, a list of rows, "
            "a datasets.Dataset, an iterable of batches (a DataLoader) or a path")
    items = iter(source)
    first = next(items, None)
    if first is None:
        raise LabelLintError("no rows to check: the source is empty")
    if _is_row(first, names):
        return [Source(name or "rows",
                       _chunked_rows(itertools.chain([first], items), names, chunk_rows), False)]
    return [Source(name or "batches", _batches(first, items, names), True)]


def _streamed_sources(source: Any, columns: Mapping[str, str] | None, size: int,
                      name: str | None) -> list[Source] | None:
    """A URL or a streaming dataset as Sources; None for anything else.

    A URL's files are cut into parts as local ones are (parquet row groups from each footer;
    an Arrow or JSON Lines file whole). A streaming dataset is one stream, read in this
    process. A `file://` URL is a local path, read as one.
    """
    names = column_names(columns)
    if is_url(source) and local_path(source) is not None:
        return open_sources(local_path(source), columns=columns, chunk_rows=size, name=name)
    if is_url(source):
        return [Source(found.name, read_ahead(chunks), False, rows,
                       functools.partial(_file_parts, found, names, size))
                for found in locate_remote(source)
                for chunks, rows in [read_located(found, names, size)]]
    if _is_iterable_dataset_dict(source):
        return [Source(f"{name or 'dataset'}[{split}]", _streamed_chunks(ds, names, size),
                       False) for split, ds in source.items()]
    if _is_iterable_dataset(source):
        return [Source(name or "dataset", _streamed_chunks(source, names, size), False)]
    return None


def open_path(path: Path, names: Mapping[str, str], size: int) -> list[Source]:
    """A file or folder: parquet, Arrow IPC, JSON lines (also .gz), a `save_to_disk` folder
    (a DatasetDict gives a source per split), a folder of shards (one source), or a folder of
    such folders (a source each). A glob pattern stands for its files, as one source."""
    sources = []
    for found in locate(path):
        chunks, rows = read_located(found, names, size)
        sources.append(Source(found.name, chunks, False, rows,
                              functools.partial(_file_parts, found, names, size)))
    return sources
