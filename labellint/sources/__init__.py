"""Read batches, DataLoaders, datasets and files as a stream of ragged column chunks.

Every input form becomes `Source`s: a name, an iterator of chunks ({column: (flat, offsets)}),
and whether each chunk is one training batch exactly as the model receives it.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import os
import queue
import re
import stat
import sys
import threading
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import pyarrow as pa

from ..arguments import ID_LIMIT, describe
from ..columns import SOURCE_COLUMNS
from ..errors import LabelLintError
from ..files import mapped, open_fd, read_error, read_json, regular, stat_path
from ..ragged import Ragged

CHUNK_ROWS = 8192
Chunk = dict[str, Ragged]


@dataclass
class Source:
    name: str
    chunks: Iterator[Chunk]
    training_batches: bool
    total_rows: int | None = None  # when known up front, for progress


# -- columns ----------------------------------------------------------------------------------


def _kind(values: np.ndarray) -> str:
    return {"f": "floating-point", "U": "string", "S": "bytes", "O": "object (None or mixed)",
            "b": "boolean", "c": "complex"}.get(values.dtype.kind, str(values.dtype))


def _validated(values: np.ndarray, name: str) -> np.ndarray:
    """Integer token columns; a 0/1 attention_mask may also be bool or float."""
    kind = values.dtype.kind
    if values.size == 0 and kind not in "iu":
        return np.zeros(0, dtype=np.int64)
    if kind == "u" and values.dtype.itemsize == 8:
        # Compared with signed ids, uint64 promotes to float64 and loses ids past 2**53.
        big = values >= ID_LIMIT
        if big.any():
            raise LabelLintError(f"{name} holds {int(values[np.argmax(big)])}, past the "
                                 "int64 range no tokenizer's ids reach")
        return values.astype(np.int64)
    if kind in "iu":
        return values.astype(np.int64) if kind == "u" and name == "labels" else values
    if name == "attention_mask" and kind == "b":
        return values
    if name == "attention_mask" and kind == "f" and np.isin(values, (0.0, 1.0)).all():
        return values != 0
    if kind == "O":
        raise LabelLintError(_object_values(values, name))
    raise LabelLintError(f"{name} holds {_kind(values)} values; it must hold integer token ids"
                         if name != "attention_mask" else
                         f"attention_mask holds {_kind(values)} values; it must hold 0 and 1")


def _wanted(name: str) -> str:
    """What a column's values must be, for a message."""
    return "0 and 1" if name.split()[0] == "attention_mask" else "integer token ids"


def _object_values(values: np.ndarray, name: str) -> str:
    """What is wrong with a column numpy could only hold as objects: the first odd value."""
    wanted = _wanted(name)
    for value in values.reshape(-1):
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            if not -ID_LIMIT <= value < ID_LIMIT:
                return f"{name} holds {value}, past the int64 range no tokenizer's ids reach"
            continue
        return f"{name} holds {describe(value)} among its values; it must hold {wanted}"
    return f"{name} holds values of mixed types; it must hold {wanted}"


def _plain(value: Any) -> Any:
    """numpy for torch tensors and numpy arrays; anything else as it is."""
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        value = value.detach().cpu()
        return value.float().numpy() if value.is_floating_point() else value.numpy()
    return value


COLUMN = "a list of rows of token ids, a 2-D array or a tensor"


def _not_a_column(value: Any, name: str, wanted: str = COLUMN) -> str | None:
    """Why `value` cannot be a column (one list of token ids per row) or, with `wanted` saying
    so, a row; None if it may be."""
    if value is None:
        return f"{name} is None; it must be {wanted}"
    if isinstance(value, (str, bytes)):
        return f"{name} is a string, not a list of token ids"
    if _is_scalar(value) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return f"{name} is a single value ({describe(value)}); it must be {wanted}"
    if isinstance(value, Mapping):
        return f"{name} is a {type(value).__name__} of {len(value)} keys; it must be {wanted}"
    if isinstance(value, (set, frozenset)):
        return f"{name} is a set, which has no order; it must be {wanted}"
    if not isinstance(value, Iterable):
        return f"{name} is a {type(value).__name__}; it must be {wanted}"
    if iter(value) is value:
        # Reading an iterator would use it up: the caller's data would change.
        return f"{name} is an iterator ({type(value).__name__}); give a list, an array or a tensor"
    return None


def _is_scalar(x: Any) -> bool:
    return isinstance(x, (int, float, bool, np.number, np.bool_))


def _numpy(array: pa.Array) -> np.ndarray:
    """A null-free numeric Arrow array as numpy, zero-copy from its data buffer.

    Not `to_numpy()`: on first use it imports pandas, which costs a check ~0.3 s of start-up.
    """
    t = array.type
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        dtype = np.dtype(f"{'u' if pa.types.is_unsigned_integer(t) else 'i'}{t.bit_width // 8}"
                         if pa.types.is_integer(t) else f"f{t.bit_width // 8}")
        if len(array) == 0:
            return np.zeros(0, dtype=dtype)
        return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array),
                             offset=array.offset * dtype.itemsize)
    return array.to_numpy(zero_copy_only=False)  # booleans are bit-packed: a copy


def arrow_to_ragged(array: pa.Array | pa.ChunkedArray, name: str) -> Ragged:
    """A list<int> Arrow column as flat values + offsets, without a Python object per row."""
    if isinstance(array, pa.ChunkedArray):
        array = array.chunk(0) if array.num_chunks == 1 else array.combine_chunks()
    t = array.type
    try:  # a corrupt file's offsets or lengths past its buffers: before any numpy view of them
        array.validate(full=True)
    except pa.ArrowInvalid as e:
        raise LabelLintError(f"{name} is corrupt ({str(e).splitlines()[0][:200]})") from None
    if pa.types.is_fixed_size_list(t):
        if array.null_count:
            raise LabelLintError(f"{name} has {array.null_count} null rows")
        values = array.flatten()
        offsets = np.arange(len(array) + 1, dtype=np.int64) * t.list_size
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        if array.null_count:
            raise LabelLintError(f"{name} has {array.null_count} null rows")
        raw = _numpy(array.offsets).astype(np.int64)
        values = array.values.slice(raw[0], raw[-1] - raw[0])
        offsets = raw - raw[0]
    else:
        raise LabelLintError(f"{name} holds {t} values, not lists of token ids")
    vt = values.type
    if not (pa.types.is_integer(vt) or pa.types.is_boolean(vt) or pa.types.is_floating(vt)):
        wanted = "0 and 1" if name == "attention_mask" else "integer token ids"
        raise LabelLintError(f"{name} holds lists of {vt}; it must hold {wanted}")
    if values.null_count:
        raise LabelLintError(f"{name} has {values.null_count} null values inside its rows")
    return _validated(_numpy(values), name), offsets


def to_ragged(value: Any, name: str) -> Ragged:
    """One column of a batch (lists, numpy, torch, Arrow; rectangular or ragged) as ragged."""
    if isinstance(value, (pa.Array, pa.ChunkedArray)):
        return arrow_to_ragged(value, name)
    value = _plain(value)
    if isinstance(value, np.ndarray) and value.dtype != object:
        if value.ndim == 2:
            rows, width = value.shape
            return (_validated(value.reshape(-1), name),
                    np.arange(rows + 1, dtype=np.int64) * width)
        if value.ndim == 1:
            return _validated(value, name), np.array([0, value.size], dtype=np.int64)
        raise LabelLintError(
            f"{name} has {value.ndim} dimensions; labellint reads one sequence per row "
            "(a 2-D batch or a list of rows)")
    why = _not_a_column(value, name)
    if why is not None:
        raise LabelLintError(why)
    seq = list(value)
    if not seq:
        return np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64)
    if all(_is_scalar(x) for x in seq):
        return _validated(_scalars(seq, name), name), np.array([0, len(seq)], dtype=np.int64)
    try:  # rectangular lists convert in one call
        rect = np.asarray(seq)
    except (ValueError, TypeError, OverflowError):
        rect = None
    # A float result may be Python ints past int64 (numpy gives up on them): the paths below
    # tell those from real floats.
    if rect is not None and rect.dtype.kind not in "Of" and rect.ndim != 1:
        return to_ragged(rect, name)
    try:  # ragged lists of ints convert in C; tensors and odd rows take the slow path below
        arrow = pa.array(seq)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        arrow = None
    if arrow is not None and (pa.types.is_list(arrow.type) or pa.types.is_large_list(arrow.type)):
        if arrow.null_count:
            first = int(np.argmax(arrow.is_null().to_numpy(zero_copy_only=False)))
            raise LabelLintError(f"{name} row {first} is None, not a list of token ids")
        return arrow_to_ragged(arrow, name)
    rows = []
    for i, row in enumerate(seq):
        if row is None:
            raise LabelLintError(f"{name} row {i} is None, not a list of token ids")
        row = _plain(row)
        why = _not_a_column(row, f"{name} row {i}", "a list of token ids")
        if why is not None and not isinstance(row, np.ndarray):
            raise LabelLintError(why)
        if isinstance(row, np.ndarray):
            row_values = row
        else:
            odd = next((x for x in row if not _is_scalar(x)), None)
            if odd is not None and not isinstance(odd, (str, bytes)) and \
                    isinstance(_plain(odd), (Iterable, np.ndarray)):
                raise LabelLintError(f"{name} row {i} is not a flat list of token ids")
            if odd is not None or any(x is None for x in row):
                raise LabelLintError(f"{name} row {i} holds {describe(odd)} among its values; "
                                     f"it must hold {_wanted(name)}")
            row_values = _scalars(list(row), name)
        if row_values.ndim != 1:
            raise LabelLintError(f"{name} row {i} is not a flat list of token ids")
        if row_values.dtype.kind == "O":
            raise LabelLintError(_object_values(row_values, f"{name} row {i}"))
        rows.append(row_values)
    lengths = np.fromiter((r.size for r in rows), dtype=np.int64, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    nonempty = [r for r in rows if r.size]
    kinds = {r.dtype.kind for r in nonempty}
    if len(kinds) > 1 and not kinds <= set("iu"):
        found = " and ".join(sorted({_kind(r) for r in nonempty}))
        raise LabelLintError(f"{name} mixes rows of {found} values; it must hold "
                             f"{_wanted(name)}")
    flat = np.concatenate(nonempty) if nonempty else np.zeros(0, dtype=np.int64)
    return _validated(flat, name), offsets


def _scalars(seq: list, name: str) -> np.ndarray:
    """One row of Python or numpy numbers as an array, ints past int64 refused by name."""
    try:
        values = np.asarray(seq)
    except OverflowError:
        return np.asarray(seq, dtype=object)  # _validated names the value too large
    if values.dtype.kind == "f" and any(isinstance(x, int) for x in seq):
        # numpy turns Python ints past int64 into floats: keep them, to name them.
        return np.asarray(seq, dtype=object)
    return values


# Packed-sequence boundaries that stand in for position_ids: TRL's `pack_dataset` stores
# `seq_lengths` per row (its collator builds position_ids from them), and
# `DataCollatorWithFlattening(return_seq_idx=True)` gives each token its sequence's index.
BOUNDARY_COLUMNS = ("seq_lengths", "seq_idx")


class Columns(dict):
    """Our column name -> the source's; `given` holds the ones the user named, which must exist
    (a misspelt --labels-column would otherwise check the data as if it had no labels)."""

    given: frozenset = frozenset()


def column_names(columns: Mapping[str, str] | None) -> Columns:
    """Our column name -> the source's column name."""
    names = Columns((c, c) for c in SOURCE_COLUMNS)
    if columns is not None and not isinstance(columns, Mapping):
        raise LabelLintError("columns must map labellint's column names to yours, e.g. "
                             f'{{"input_ids": "tokens"}}, not {describe(columns)}')
    for ours, theirs in (columns or {}).items():
        if ours not in names:
            raise LabelLintError(f"unknown column {describe(ours)} in columns; labellint reads "
                                 f"{', '.join(SOURCE_COLUMNS)}")
        if not isinstance(theirs, str) or not theirs:
            raise LabelLintError(f"columns[{ours!r}] must be the name of one of your columns, "
                                 f"not {describe(theirs)}")
        names[ours] = theirs
    names.given = frozenset(columns or ())
    return names


def _require_input_ids(keys: Iterable[str], names: Mapping[str, str], what: str) -> None:
    """input_ids, and every column the user named, must be there."""
    keys = list(keys)
    required = ["input_ids", *sorted(getattr(names, "given", ()))]
    for ours in dict.fromkeys(required):
        if names[ours] not in keys:
            found = ", ".join(map(repr, keys)) or "none"
            raise LabelLintError(f"{what} has no {names[ours]!r} column (found: {found})")


def _check_rows(chunk: Chunk, names: Mapping[str, str]) -> Chunk:
    n = len(chunk["input_ids"][1]) - 1
    for ours, (_, offsets) in chunk.items():
        if len(offsets) - 1 != n:
            raise LabelLintError(f"{names[ours]} has {len(offsets) - 1} rows but "
                                 f"{names['input_ids']} has {n}")
    return chunk


def batch_to_chunk(batch: Mapping[str, Any], names: Mapping[str, str]) -> Chunk:
    """A dict batch (a collator's output, a BatchEncoding) as one chunk."""
    _require_input_ids(batch.keys(), names, "the batch")
    chunk = {ours: to_ragged(batch[theirs], theirs)
             for ours, theirs in names.items() if theirs in batch}
    return _with_boundaries(_check_rows(chunk, names), lambda n: to_ragged(batch[n], n), batch)


def rows_to_chunk(rows: list[Mapping[str, Any]], names: Mapping[str, str], first: int) -> Chunk:
    """Row dicts as one chunk; every row must have the columns the first one has."""
    present = [ours for ours, theirs in names.items() if theirs in rows[0]]
    chunk = {}
    for ours in present:
        theirs = names[ours]
        try:
            values = [row[theirs] for row in rows]
        except (KeyError, TypeError):
            bad = next(i for i, row in enumerate(rows) if not isinstance(row, Mapping)
                       or theirs not in row)
            raise LabelLintError(f"row {first + bad} has no {theirs!r}, which row "
                                 f"{first} has") from None
        chunk[ours] = to_ragged(values, theirs)
    return _with_boundaries(_check_rows(chunk, names),
                            lambda n: to_ragged([row[n] for row in rows], n), rows[0])


def table_to_chunk(table: pa.Table | pa.RecordBatch, names: Mapping[str, str],
                   what: str) -> Chunk:
    _require_input_ids(table.schema.names, names, what)
    try:
        chunk = {ours: arrow_to_ragged(table.column(theirs), theirs)
                 for ours, theirs in names.items() if theirs in table.schema.names}
        return _with_boundaries(chunk, lambda n: arrow_to_ragged(table.column(n), n),
                                table.schema.names)
    except LabelLintError as e:
        raise LabelLintError(f"{what}: {e}") from None


def _with_boundaries(chunk: Chunk, read: Callable[[str], Ragged], present: Iterable[str]) -> Chunk:
    """Add the position_ids that a boundary column implies, when position_ids are absent.

    A column of that name that is not one list per row is someone else's: it is left alone.
    A boundary column that disagrees with the rows' lengths yields position_ids of another
    length, which length-mismatch then reports.
    """
    if "position_ids" in chunk:
        return chunk
    for name in (n for n in BOUNDARY_COLUMNS if n in present):
        try:
            values, offsets = read(name)
        except (LabelLintError, KeyError, TypeError, ValueError, pa.ArrowException):
            continue
        if len(offsets) != len(chunk["input_ids"][1]) or values.dtype.kind not in "iu":
            continue
        chunk["position_ids"] = _positions_from(name, values.astype(np.int64), offsets,
                                                chunk["input_ids"][1])
        if name == "seq_lengths" and "labels" in chunk:
            chunk["labels"] = _mask_sequence_starts(chunk["labels"], chunk["position_ids"])
        break
    return chunk


def _mask_sequence_starts(labels: Ragged, positions: Ragged) -> Ragged:
    """Labels as TRL's collator leaves a packed dataset's: -100 where each sequence starts
    (labels[position_ids == 0] = -100). A stored `seq_lengths` column means that collator is
    still to run, so the stored labels are not yet what the model is trained on."""
    values, offsets = labels
    pos_values, pos_offsets = positions
    if pos_values.size != values.size or not np.array_equal(pos_offsets, offsets):
        return labels  # length-mismatch reports it; nothing to align
    out = values.astype(np.promote_types(values.dtype, np.int16))
    out[pos_values == 0] = -100
    return out, offsets


def _positions_from(name: str, values: np.ndarray, offsets: np.ndarray,
                    row_offsets: np.ndarray) -> Ragged:
    """position_ids restarting at 0 for each packed sequence, from seq_lengths or seq_idx.

    The lengths a row claims are cut to one past the row's real length before anything is
    allocated: a value of 10**12 in a small file would otherwise ask for terabytes, and a row
    that claims more than it holds still gets position_ids of another length, which
    length-mismatch reports.
    """
    if name == "seq_lengths":
        row_len = np.diff(row_offsets)
        row_of = np.repeat(np.arange(row_len.size), np.diff(offsets))
        room = row_len[row_of] + 1  # what a row may claim, and one more to stay a mismatch
        claimed = np.minimum(np.maximum(values, 0), room)
        # Cumulated within each row (each term is bounded, so no overflow), then capped.
        cum = np.cumsum(claimed)
        before = np.concatenate([[0], cum])[offsets[:-1]][row_of]
        within = np.minimum(cum - before, room)
        lengths = within - np.concatenate([[0], within[:-1]])
        firsts = offsets[:-1][offsets[:-1] < offsets[1:]]  # each nonempty row's first claim
        lengths[firsts] = within[firsts]
        ends = np.cumsum(lengths)
        positions = np.arange(int(ends[-1]) if ends.size else 0) - np.repeat(ends - lengths,
                                                                             lengths)
        return positions, np.concatenate([[0], ends])[offsets]
    index = np.arange(values.size)
    new = np.ones(values.size, dtype=bool)
    new[1:] = values[1:] != values[:-1]
    new[offsets[:-1][offsets[:-1] < values.size]] = True  # every row starts a sequence
    return index - np.maximum.accumulate(np.where(new, index, 0)), offsets


# -- in-memory sources ------------------------------------------------------------------------


def _is_dataset(obj: Any) -> bool:
    datasets = sys.modules.get("datasets")
    return datasets is not None and isinstance(obj, datasets.Dataset)


def _is_dataset_dict(obj: Any) -> bool:
    datasets = sys.modules.get("datasets")
    return datasets is not None and isinstance(obj, datasets.DatasetDict)


def _is_row(item: Any, names: Mapping[str, str]) -> bool:
    """A row dict holds one sequence per column; a batch dict holds several."""
    if not isinstance(item, Mapping) or names["input_ids"] not in item:
        return False
    ids = _plain(item[names["input_ids"]])
    if isinstance(ids, np.ndarray):
        return ids.ndim == 1
    # Anything else that is not a list is a column to_ragged refuses by name.
    return isinstance(ids, (list, tuple)) and len(ids) > 0 and _is_scalar(ids[0])


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
    _require_input_ids(ds.column_names, names, "the dataset")
    wanted = [theirs for theirs in names.values() if theirs in ds.column_names]
    wanted += [c for c in BOUNDARY_COLUMNS if c in ds.column_names and c not in wanted]
    # Arrow formatting hands out record batches without converting rows to Python.
    for table in ds.select_columns(wanted).with_format("arrow").iter(batch_size=size):
        yield table_to_chunk(table, names, "the dataset")


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
    if isinstance(source, (str, os.PathLike)):
        return [Source(s.name, _read_ahead(s.chunks), s.training_batches, s.total_rows)
                for s in open_path(Path(source), names, chunk_rows)]
    if _is_dataset_dict(source):
        return [Source(f"{name or 'dataset'}[{split}]",
                       _dataset_chunks(ds, names, chunk_rows), False)
                for split, ds in source.items()]
    if _is_dataset(source):
        return [Source(name or "dataset", _dataset_chunks(source, names, chunk_rows), False)]
    if type(source).__module__.startswith("pandas") and type(source).__name__ == "DataFrame":
        source = pa.Table.from_pandas(source, preserve_index=False)
    if isinstance(source, (pa.Table, pa.RecordBatch)):
        table = pa.Table.from_batches([source]) if isinstance(source, pa.RecordBatch) else source
        return [Source(name or "table", _chunked_table(table, names, chunk_rows, "the table"),
                       False)]
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


# -- files ------------------------------------------------------------------------------------

PARQUET = (".parquet", ".pq")
ARROW = (".arrow", ".feather", ".ipc")
JSONL = (".jsonl", ".json", ".ndjson")
COMPRESSED = (".gz", ".bz2")
# JSON files a dataset folder holds that are not rows (Hugging Face snapshots, save_to_disk).
METADATA = frozenset({"dataset_info.json", "dataset_infos.json", "state.json",
                      "dataset_dict.json", "config.json"})
JSON_BLOCK = 1 << 24  # bytes of JSON parsed at a time
MAX_DEPTH = 8  # folders below the path given that are searched for datasets
GLOB = re.compile(r"[*?\[]")
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


def _plain_name(value: Any, path: Path, key: str) -> str:
    """A name of a file or folder directly inside the dataset's folder, nothing else."""
    if (not isinstance(value, str) or not value or value in (".", "..") or "/" in value
            or "\\" in value or "\0" in value or os.path.isabs(value)):
        raise LabelLintError(f"{path}: {key} {value!r} is not the plain name of a file or "
                             "folder beside it")
    return value


# -- reading ------------------------------------------------------------------------------------


def _read_ahead(chunks: Iterator[Chunk], depth: int = 2) -> Iterator[Chunk]:
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
                if not hand_over((chunk, None)):
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
        _require_input_ids(schema, names, str(path))
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
                _require_input_ids(inferred.names, names, str(path))
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


def _format(path: Path) -> str | None:
    name = path.name.lower()
    for compressed in COMPRESSED:
        name = name.removesuffix(compressed)
    suffix = Path(name).suffix
    if suffix in PARQUET and name == path.name.lower():
        return "parquet"
    if suffix in ARROW and name == path.name.lower():
        return "arrow"
    if suffix in JSONL:
        return "jsonl"
    return None


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


# -- where a path's data is ---------------------------------------------------------------------


@dataclass(frozen=True)
class Located:
    """One source a path names: its data files and the metadata files read to find them."""

    name: str
    files: tuple[Path, ...]
    save_to_disk: bool = False
    metadata: tuple[Path, ...] = ()


def _file_source(found: Located, names: Mapping[str, str], size: int) -> Source:
    """Files of one dataset as one source: rows numbered across them, facts shared."""
    files = list(found.files)
    if found.save_to_disk:
        return Source(found.name, _guard(Path(found.name), _arrow_chunks(files, names, size)),
                      False, _ipc_rows(files))
    kinds = {_format(f) for f in files}

    def chunks() -> Iterator[Chunk]:
        for f in files:
            kind = _format(f)
            if kind == "parquet":
                yield from _guard(f, _parquet_chunks(f, names, size))
            elif kind == "jsonl":
                yield from _guard(f, _jsonl_chunks(f, names, size))
            else:
                yield from _guard(f, _arrow_chunks([f], names, size))

    rows = (_parquet_rows(files) if kinds == {"parquet"} else
            _ipc_rows(files) if kinds == {"arrow"} else None)
    return Source(found.name, chunks(), False, rows)


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError as e:
        raise read_error(folder, e) from None


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return False


def _dataset_files(folder: Path) -> list[Path]:
    """The data files directly in `folder`. A `.json` file counts only where it is the only
    kind there: beside shards it is metadata (dataset_infos.json, a config).

    An entry named as data that is neither a file nor a folder (a FIFO, a socket, a dangling
    symbolic link) is refused, not passed over: its rows would be missing from the check
    without a word. A folder named like a file (Spark's `x.parquet/`) is a folder.
    """
    files = []
    for p in _entries(folder):
        if not _format(p):
            continue
        try:
            mode = os.stat(p).st_mode
        except OSError:
            stat_path(p)  # says why
            raise
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode):
            regular(p)
        files.append(p)
    data = [p for p in files if not _is_plain_json(p)]
    return data or [p for p in files if p.name.lower() not in METADATA]


def _is_plain_json(path: Path) -> bool:
    name = path.name.lower()
    for compressed in COMPRESSED:
        name = name.removesuffix(compressed)
    return name.endswith(".json")


def _save_to_disk(folder: Path) -> Located:
    """A `Dataset.save_to_disk` folder: the Arrow files its state.json lists, in order."""
    state_path = folder / "state.json"
    state = read_json(state_path)
    listed = state.get("_data_files")
    if not isinstance(listed, list) or not listed:
        raise LabelLintError(f"{state_path}: no `_data_files` list naming the Arrow files")
    files = []
    for entry in listed:
        if not isinstance(entry, dict) or "filename" not in entry:
            raise LabelLintError(f"{state_path}: a `_data_files` entry without a `filename`: "
                                 f"{json.dumps(entry)[:100]}")
        file = folder / _plain_name(entry["filename"], state_path, "filename")
        regular(file)
        files.append(file)
    return Located(str(folder), tuple(files), save_to_disk=True, metadata=(state_path,))


def _dataset_dict(folder: Path) -> list[Located]:
    """A `DatasetDict.save_to_disk` folder: one save_to_disk folder per split, named in
    dataset_dict.json. A split is the plain name of a folder beside it: `.` or `..` would read
    the dict again (and again)."""
    meta = folder / "dataset_dict.json"
    splits = read_json(meta).get("splits")
    if not isinstance(splits, list) or not splits:
        raise LabelLintError(f"{meta}: no `splits` list naming the split folders")
    out = []
    for split in splits:
        name = _plain_name(split, meta, "split")
        if splits.count(split) > 1:
            raise LabelLintError(f"{meta}: split {split!r} is listed {splits.count(split)} times")
        sub = folder / name
        if not _is_dir(sub):
            stat_path(sub)
            raise LabelLintError(f"{sub}: split {name!r} of {meta} is not a folder")
        if not (sub / "state.json").exists():
            raise LabelLintError(f"{sub}: split {name!r} has no state.json (not a save_to_disk "
                                 "folder)")
        found = _save_to_disk(sub)
        out.append(replace(found, metadata=(meta, *found.metadata)))
    return out


def locate(path: Path, *, depth: int = 0, seen: frozenset = frozenset()) -> list[Located]:
    """Where the data of a file, folder or glob is: every file each of its sources reads.

    `seen` holds the folders above (device, inode): a symbolic link back up is a loop, refused.
    """
    if not str(path):
        raise LabelLintError("an empty path names no file or folder")
    if GLOB.search(str(path)) and not os.path.lexists(path):
        return [_glob(path)]
    st = stat_path(path)
    if not stat.S_ISDIR(st.st_mode):
        if _format(path) is None:
            raise LabelLintError(f"{path}: unknown format "
                                 f"{''.join(path.suffixes) or '(no suffix)'}; labellint reads "
                                 "parquet, arrow, feather, jsonl (.gz) and save_to_disk folders")
        regular(path)
        return [Located(str(path), (path,))]
    key = (st.st_dev, st.st_ino)
    if key in seen:
        raise LabelLintError(f"{path}: a folder that contains itself (a symbolic link loop)")
    seen = seen | {key}
    if os.path.lexists(path / "dataset_dict.json"):
        return _dataset_dict(path)
    if os.path.lexists(path / "state.json"):
        return [_save_to_disk(path)]
    shards = _dataset_files(path)
    if shards:
        return [Located(str(path), tuple(shards))]
    # A repository layout (data/train/, data/test/): each folder holding a dataset.
    nested = []
    if depth < MAX_DEPTH:
        for sub in _entries(path):
            if sub.name.startswith(".") or not _is_dir(sub) or not _holds_dataset(sub):
                continue
            nested += locate(sub, depth=depth + 1, seen=seen)
    if not nested:
        raise LabelLintError(f"{path}: no dataset here (no save_to_disk state.json, "
                             "no parquet, arrow or jsonl files)")
    return nested


def open_path(path: Path, names: Mapping[str, str], size: int) -> list[Source]:
    """A file or folder: parquet, Arrow IPC, JSON lines (also .gz), a `save_to_disk` folder
    (a DatasetDict gives a source per split), a folder of shards (one source), or a folder of
    such folders (a source each). A glob pattern stands for its files, as one source."""
    return [_file_source(found, names, size) for found in locate(path)]


def input_files(path: str | os.PathLike) -> list[Path]:
    """Every file that reading `path` reads (data and metadata), for writers to keep off."""
    return [f for found in locate(Path(path)) for f in (*found.metadata, *found.files)]


def _holds_dataset(folder: Path, depth: int = 3) -> bool:
    if os.path.lexists(folder / "state.json") or os.path.lexists(folder / "dataset_dict.json"):
        return True
    try:
        if _dataset_files(folder):
            return True
    except LabelLintError:
        return True  # reading it says what is wrong there
    return depth > 0 and any(_holds_dataset(sub, depth - 1) for sub in _entries(folder)
                             if not sub.name.startswith(".") and _is_dir(sub))


def _glob_parts(pattern: str) -> tuple[str, list[str]]:
    """The folder a pattern starts from (no wildcard in it) and the parts that follow."""
    parts = pattern.split(os.sep)
    fixed = next(i for i, p in enumerate(parts) if GLOB.search(p))
    root = os.sep.join(parts[:fixed]) or ("" if not pattern.startswith(os.sep) else os.sep)
    return root, parts[fixed:]


def _matches(parts: list[str], names: list[str]) -> bool:
    """glob's rules for one path: `**` is any number of folders, `*` never starts a hidden
    name."""
    if not parts:
        return not names
    if parts[0] == "**":
        return any(_matches(parts[1:], names[i:]) for i in range(len(names) + 1)
                   if not any(n.startswith(".") for n in names[:i]))
    return (bool(names) and not (names[0].startswith(".") and not parts[0].startswith("."))
            and fnmatch.fnmatchcase(names[0], parts[0]) and _matches(parts[1:], names[1:]))


def _glob(pattern: Path) -> Located:
    """A glob's data files, found without following symbolic links to folders.

    glob.glob follows them under `**`, so two links back up make it walk 2^40 paths (a hang);
    links to files are followed as any file is.
    """
    root, parts = _glob_parts(str(pattern))
    depth = len(parts) if "**" not in parts else None
    found = []
    for folder, dirs, files in os.walk(root or ".", followlinks=False):
        rel = os.path.relpath(folder, root or ".")
        names = [] if rel == "." else rel.split(os.sep)
        if depth is not None and len(names) >= depth - 1:
            dirs[:] = []
        for entry in files:  # a FIFO or a dangling link is among them: _regular refuses it
            full = Path(os.path.normpath(os.path.join(folder, entry)))
            if _matches(parts, [*names, entry]) and _format(full):
                found.append(full)
    if not found:
        raise LabelLintError(f"{pattern}: no parquet, arrow or jsonl file matches")
    for f in found:
        regular(f)
    return Located(str(pattern), tuple(sorted(found)))
