"""The token columns labellint reads, from user values (lists, arrays, tensors, Arrow) to Ragged.

A chunk is {column: (flat values, offsets)}: every input form reaches the rules as chunks.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pyarrow as pa

from .arguments import ID_LIMIT, describe
from .ragged import Ragged
from .errors import LabelLintError

COLUMNS = ("input_ids", "labels", "attention_mask", "position_ids")
# Labels already shifted for the loss (sequence-parallel training: transformers' context
# parallelism, accelerate's Ulysses adapter, TRL): read when present, and judged as the labels.
SHIFT_LABELS = "shift_labels"
SOURCE_COLUMNS = COLUMNS + (SHIFT_LABELS,)
Chunk = dict[str, Ragged]


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


def plain(value: Any) -> Any:
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
    if is_scalar(value) or (isinstance(value, np.ndarray) and value.ndim == 0):
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


def is_scalar(x: Any) -> bool:
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
    value = plain(value)
    if isinstance(value, np.ndarray) and value.dtype != object:
        return _array_to_ragged(value, name)
    why = _not_a_column(value, name)
    if why is not None:
        raise LabelLintError(why)
    seq = list(value)
    if not seq:
        return np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64)
    if all(is_scalar(x) for x in seq):
        return _validated(_scalars(seq, name), name), np.array([0, len(seq)], dtype=np.int64)
    fast = _converted_rows(seq, name)
    if fast is not None:
        return fast
    # Row by row, so that the first bad row is the one named.
    return _joined_rows([_row_values(row, i, name) for i, row in enumerate(seq)], name)


def _array_to_ragged(value: np.ndarray, name: str) -> Ragged:
    """A numeric numpy column: a 2-D batch (rows of one width) or a single 1-D row."""
    if value.ndim == 2:
        rows, width = value.shape
        return (_validated(value.reshape(-1), name),
                np.arange(rows + 1, dtype=np.int64) * width)
    if value.ndim == 1:
        return _validated(value, name), np.array([0, value.size], dtype=np.int64)
    raise LabelLintError(
        f"{name} has {value.ndim} dimensions; labellint reads one sequence per row "
        "(a 2-D batch or a list of rows)")


def _converted_rows(seq: list, name: str) -> Ragged | None:
    """A list of rows converted in one call (numpy for rectangular, Arrow for ragged ints);
    None when neither applies and the rows must be read one by one."""
    try:  # rectangular lists convert in one call
        rect = np.asarray(seq)
    except (ValueError, TypeError, OverflowError):
        rect = None
    # A float result may be Python ints past int64 (numpy gives up on them): the paths below
    # tell those from real floats.
    if rect is not None and rect.dtype.kind not in "Of" and rect.ndim != 1:
        return to_ragged(rect, name)
    try:  # ragged lists of ints convert in C; tensors and odd rows take the slow path
        arrow = pa.array(seq)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        arrow = None
    if arrow is not None and (pa.types.is_list(arrow.type) or pa.types.is_large_list(arrow.type)):
        if arrow.null_count:
            first = int(np.argmax(arrow.is_null().to_numpy(zero_copy_only=False)))
            raise LabelLintError(f"{name} row {first} is None, not a list of token ids")
        return arrow_to_ragged(arrow, name)
    return None


def _row_values(row: Any, i: int, name: str) -> np.ndarray:
    """Row i of a column as a flat numeric array, or the error that names what is wrong."""
    if row is None:
        raise LabelLintError(f"{name} row {i} is None, not a list of token ids")
    row = plain(row)
    if isinstance(row, np.ndarray):
        row_values = row
    else:
        why = _not_a_column(row, f"{name} row {i}", "a list of token ids")
        if why is not None:
            raise LabelLintError(why)
        row_values = _scalar_row(row, i, name)
    if row_values.ndim != 1:
        raise LabelLintError(f"{name} row {i} is not a flat list of token ids")
    if row_values.dtype.kind == "O":
        raise LabelLintError(_object_values(row_values, f"{name} row {i}"))
    return row_values


def _scalar_row(row: Iterable, i: int, name: str) -> np.ndarray:
    """A row given as a Python sequence, which must hold numbers only (no nested lists)."""
    odd = next((x for x in row if not is_scalar(x)), None)
    if odd is not None and not isinstance(odd, (str, bytes)) and \
            isinstance(plain(odd), (Iterable, np.ndarray)):
        raise LabelLintError(f"{name} row {i} is not a flat list of token ids")
    if odd is not None or any(x is None for x in row):
        raise LabelLintError(f"{name} row {i} holds {describe(odd)} among its values; "
                             f"it must hold {_wanted(name)}")
    return _scalars(list(row), name)


def _joined_rows(rows: list[np.ndarray], name: str) -> Ragged:
    """Checked rows as one ragged column; rows of different kinds (ints and floats) refused."""
    lengths = np.fromiter((r.size for r in rows), dtype=np.int64, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    # Empty rows have no kind of their own (numpy makes them float): they mix with any.
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


def require_input_ids(keys: Iterable[str], names: Mapping[str, str], what: str) -> None:
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
    require_input_ids(batch.keys(), names, "the batch")
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
    require_input_ids(table.schema.names, names, what)
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


def realign(
    values: np.ndarray,
    col_offsets: np.ndarray,
    offsets: np.ndarray,
    mismatch: np.ndarray,
    name: str,
    ignore_index: int,
) -> np.ndarray:
    """`values` (ragged by `col_offsets`) laid out by `offsets`; the rows in `mismatch` get
    neutral values instead (no label, attended, natural positions)."""
    lengths = np.diff(offsets)
    n = int(offsets[-1])
    rows = np.repeat(np.arange(lengths.size), lengths)
    pos = np.arange(n) - np.repeat(offsets[:-1], lengths)
    neutral = {"labels": ignore_index, "attention_mask": 1}.get(name)
    out = pos.astype(values.dtype) if neutral is None else np.full(n, neutral, dtype=values.dtype)
    keep = ~mismatch[rows]
    out[keep] = values[col_offsets[rows[keep]] + pos[keep]]
    return out
