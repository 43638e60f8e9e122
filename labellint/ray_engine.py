"""Ray Data workers that check the parts of a file source (`engine="ray"`), merged here.

The driver plans the source from its files' metadata (parquet row groups, Arrow record batches,
as `labellint.sources` cuts them for one pass) and resolves its facts from the sample, as the
local engine does. Each Ray read task reads one part's columns with pyarrow and tags every row
with its global row number (an int64 column: Ray may split or join blocks, the tag survives
either). `map_batches` runs `engine.check_part` on each block, cut at the chunk boundaries one
pass over the source makes, and hands back the block's Partial as JSON (plain data: no pickle
of anything read from the data). The driver folds them, in source order, into the one Partial
the local engine would have made, so the report is the same.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import socket
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa

from . import engine
from .columns import BOUNDARY_COLUMNS, require_input_ids, table_to_chunk
from .errors import LabelLintError
from .files import read_error
from .partial import Example, Partial, RulePartial, merge
from .sources.locate import Located
from .sources.readers import READ_ERRORS, Part, _ipc_batches, _parquet_file, located_parts
from .window import TokenWindow

INSTALL = "--engine ray needs Ray: pip install 'labellint[ray]'"
ENGINES = ("local", "ray")
ROW = "__labellint_row"  # each row's index in its source, carried through Ray's blocks


def require(engine_name: str) -> str:
    """`engine_name` checked, and Ray's presence for "ray" (before any data is read)."""
    if engine_name not in ENGINES:
        raise LabelLintError(f"engine must be local or ray, not {engine_name!r}")
    if engine_name == "ray" and not _installed():
        raise LabelLintError(INSTALL)
    return engine_name


def _installed() -> bool:
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
        return False


# -- the plan of a source, made on the driver from metadata ------------------------------------


@dataclass(frozen=True)
class _Block:
    """One read task: a part of one file, the rows it starts at, and the sizes of its chunks."""

    file: int  # index into _Work.files
    part: Part
    first_row: int
    chunk_rows: tuple[int, ...]  # rows of each chunk one pass reads from this part
    size: int  # the source's chunk_rows

    @property
    def rows(self) -> int:
        return sum(self.chunk_rows)


def _chunk_rows(part: Part, size: int) -> tuple[int, ...]:
    """Rows per chunk of a part, as `Part.read` cuts them: each parquet row group in pieces of
    `size` rows; the Arrow chunks of `arrow_plan`."""
    if part.units is None:
        # Its metadata could not be read: read it again for the reason, as one pass says it.
        if part.kind == "parquet":
            _parquet_file(part.path).close()
        else:
            list(_ipc_batches(part.path))
        raise LabelLintError(f"{part.path}: cannot read its metadata")
    if part.kind == "parquet":
        meta = _parquet_file(part.path).metadata
        out: list[int] = []
        for g in part.units:
            n = meta.row_group(g).num_rows
            out += [min(size, n - start) for start in range(0, n, size)]
        return tuple(out)
    return tuple(sum(stop - start for _, start, stop in chunk) for chunk in part.units)


def _blocks(found: Located, size: int) -> list[_Block]:
    files = list(found.files)
    blocks, row = [], 0
    for part in located_parts(found, size):
        if part.kind == "jsonl":
            raise LabelLintError(f"{part.path}: --engine ray reads parquet, Arrow and "
                                 "save_to_disk files, not JSON Lines (--engine local reads it)")
        try:
            chunk_rows = _chunk_rows(part, size)
        except READ_ERRORS as e:
            raise read_error(part.path, e) from None
        blocks.append(_Block(files.index(part.path), part, row, chunk_rows, size))
        row += sum(chunk_rows)
    return blocks


@dataclass(frozen=True)
class _Work:
    """What every map task needs, shipped once with the map function: the prepared rules and
    facts, the columns, and where each chunk of the source starts (its global row, its file)."""

    prepared: engine.Prepared
    names: Mapping[str, str]
    files: tuple[str, ...]
    chunk_starts: np.ndarray  # global first row of each chunk, ascending, then the end
    chunk_files: np.ndarray  # the file of each chunk


def _work(prepared: engine.Prepared, names: Mapping[str, str], found: Located,
          blocks: Sequence[_Block]) -> _Work:
    sizes = [(b.file, n) for b in blocks for n in b.chunk_rows]
    starts = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum([n for _, n in sizes], out=starts[1:])
    return _Work(prepared, dict(names), tuple(str(f) for f in found.files), starts,
                 np.array([f for f, _ in sizes], dtype=np.int64))


# -- in a worker: reading a part, checking a block ---------------------------------------------


def _columns(schema: Sequence[str], names: Mapping[str, str], path: Path) -> list[str]:
    """The columns the rules read, as `Part.read` projects them."""
    require_input_ids(list(schema), names, str(path))
    for theirs in set(names.values()) | set(BOUNDARY_COLUMNS):
        if list(schema).count(theirs) > 1:
            raise LabelLintError(f"{path}: column {theirs!r} appears "
                                 f"{list(schema).count(theirs)} times")
    present = [t for t in names.values() if t in schema]
    return present + [c for c in BOUNDARY_COLUMNS if c in schema and c not in present]


def _tables(block: _Block, names: Mapping[str, str]) -> Iterator[pa.Table]:
    """The part's chunks as `Part.read` cuts them, as Arrow tables of the rules' columns:
    streamed, so a part of one huge row group is never whole in memory."""
    part = block.part
    if part.kind == "parquet":
        with _parquet_file(part.path) as f:
            wanted = _columns(f.schema_arrow.names, names, part.path)
            for g in part.units:
                for batch in f.iter_batches(batch_size=block.size, row_groups=[g],
                                            columns=wanted):
                    yield pa.Table.from_batches([batch])
        return
    batches, at, batch, wanted = _ipc_batches(part.path), -1, None, None
    for chunk in part.units:
        pieces = []
        for i, start, stop in chunk:
            while at < i:
                batch, at = next(batches), at + 1
            pieces.append(batch.slice(start, stop - start))
        table = pa.Table.from_batches(pieces)
        wanted = wanted or _columns(table.schema.names, names, part.path)
        yield table.select(wanted)


def _read(block: _Block, names: Mapping[str, str]) -> Iterator[pa.Table]:
    """A read task: the part's chunks, each row tagged with its global number. Ray joins small
    ones into a block (the tags say where each chunk starts); it splits only a chunk over its
    block size (128 MiB), which is then checked as two."""
    row = block.first_row
    try:
        for table in _tables(block, names):
            yield table.append_column(ROW, pa.array(np.arange(row, row + table.num_rows)))
            row += table.num_rows
    except LabelLintError as e:
        raise e if str(e).startswith(str(block.part.path)) else \
            LabelLintError(f"{block.part.path}: {e}") from None
    except READ_ERRORS as e:
        raise read_error(block.part.path, e) from None
    if row - block.first_row != block.rows:
        raise LabelLintError(f"{block.part.path}: {row - block.first_row} rows read where its "
                             f"metadata says {block.rows}")


def check_block(table: pa.Table, work: _Work) -> pa.Table:
    """A map task: one block's rows checked in the chunks one pass cuts them into; its Partial
    as one row of JSON, with the global row the block starts at, for the driver's order."""
    rows = table.column(ROW).to_numpy()
    first, n = int(rows[0]), len(rows)
    data = table.drop_columns([ROW])
    starts = work.chunk_starts
    inner = starts[(starts > first) & (starts < first + n)]
    cuts = np.concatenate([[first], inner, [first + n]]).tolist()
    where = np.searchsorted(starts, cuts[:-1], side="right") - 1
    chunks = (table_to_chunk(data.slice(a - first, b - a), work.names,
                             work.files[work.chunk_files[w]])
              for a, b, w in zip(cuts[:-1], cuts[1:], where.tolist()))
    partial = engine.check_part(work.prepared, chunks, part=0, row_start=first)
    return pa.table({"row": [first], "rows": [n], "partial": [json.dumps(to_plain(partial))]})


# -- a Partial as plain data -------------------------------------------------------------------


def to_plain(p: Partial) -> dict[str, Any]:
    """A Partial as JSON-ready data: lists, numbers, strings (a key is [part, row])."""
    def rule(r: RulePartial) -> dict[str, Any]:
        return {**{f: getattr(r, f) for f in ("rows", "tokens", "batches", "applied_chunks",
                                               "every_chunk_hit", "skip", "by_design")},
                "examples": [{"part": e.part, "row": e.row, "positions": e.positions,
                              "window": None if e.window is None
                              else dataclasses.asdict(e.window)} for e in r.examples]}

    return {"source": p.source, "max_examples": p.max_examples, "rows": p.rows,
            "tokens": p.tokens, "chunks": p.chunks,
            "rules": {code: rule(r) for code, r in p.rules.items()}}


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def from_plain(d: Mapping[str, Any]) -> Partial:
    """The Partial that `to_plain` wrote."""
    def rule(r: Mapping[str, Any]) -> RulePartial:
        examples = tuple(
            Example(e["part"], e["row"], tuple(e["positions"]),
                    None if e["window"] is None else
                    TokenWindow(**{k: _tuples(v) for k, v in e["window"].items()}))
            for e in r["examples"])
        return RulePartial(rows=r["rows"], tokens=r["tokens"], batches=r["batches"],
                           applied_chunks=r["applied_chunks"],
                           every_chunk_hit=r["every_chunk_hit"], skip=_tuples(r["skip"]),
                           by_design=_tuples(r["by_design"]), examples=examples)

    return Partial(source=d["source"], max_examples=d["max_examples"],
                   rules={code: rule(r) for code, r in d["rules"].items()},
                   rows=d["rows"], tokens=d["tokens"], chunks=d["chunks"])


# -- on the driver -----------------------------------------------------------------------------


def _ray(address: str | None) -> Any:
    """Ray, connected: to `address`, or to the cluster already joined, or a local one started."""
    try:
        import ray
    except ImportError:
        raise LabelLintError(INSTALL) from None
    if not ray.is_initialized():
        _reachable(address)
        # Ray's start-up notices (token set-up, "Started a local Ray instance") would come
        # before the report on stderr; its errors still show.
        log = logging.getLogger("ray")
        level = log.level
        log.setLevel(logging.ERROR)
        try:
            ray.init(address=address, include_dashboard=False, logging_level=logging.ERROR,
                     log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise LabelLintError(f"cannot join the Ray cluster at {address or 'auto'}: "
                                 f"{str(e).strip().splitlines()[0]}") from None
        finally:
            log.setLevel(level)
    return ray


def _reachable(address: str | None) -> None:
    """A cluster's host:port answers, or one line now: Ray itself retries for minutes."""
    if address is None or address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as e:
        raise LabelLintError(f"cannot reach the Ray cluster at {address} "
                             f"({e.strerror or e if isinstance(e, OSError) else 'not HOST:PORT'})"
                             ) from None


def _ship_user_rules(prepared: engine.Prepared) -> None:
    """Rules defined outside labellint go to the workers by value: their modules (a notebook's,
    a test file's) need not be importable there."""
    from ray import cloudpickle

    for r in prepared.rules:
        module = sys.modules.get(getattr(r.func, "__module__", "") or "")
        if module is not None and module.__name__.split(".")[0] not in ("labellint", "__main__"):
            cloudpickle.register_pickle_by_value(module)


class _Datasource:
    """Built on first use: ray.data is imported only when the engine runs."""

    @staticmethod
    def make(blocks: Sequence[_Block], names: Mapping[str, str]) -> Any:
        from ray.data import Datasource, ReadTask
        from ray.data.block import BlockMetadata

        class Parts(Datasource):
            def estimate_inmemory_data_size(self) -> int | None:
                return None

            def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
                return [ReadTask(lambda b=b: _read(b, names),
                                 BlockMetadata(num_rows=b.rows, size_bytes=None, exec_stats=None,
                                               input_files=(str(b.part.path),)),
                                 per_task_row_limit=per_task_row_limit) for b in blocks]

        return Parts()


def check_located(prepared: engine.Prepared, found: Located, *, names: Mapping[str, str],
                  size: int, address: str | None = None,
                  progress: Callable[[int, int], None] | None = None) -> Partial:
    """The merged Partial of a located file source, its parts checked by Ray Data workers.

    A part that cannot be read or checked fails the check with its one line; a worker that
    dies fails it with one line naming the first file not yet checked.
    """
    blocks = _blocks(found, size)
    ray = _ray(address)
    _ship_user_rules(prepared)
    from ray.data import DataContext

    work = _work(prepared, names, found, blocks)
    ctx = DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars,
             ctx.max_errored_blocks)
    # Results in source order (so a failure names the right file), no progress bars on stderr,
    # and no block left out: a report missing a block would read as complete.
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    ctx.max_errored_blocks = 0
    results: list[tuple[int, Partial]] = []
    log = logging.getLogger("ray.data")
    level = log.level
    # Ray Data logs each run, and a failed task's traceback: the report, or our one line, says
    # what matters.
    log.setLevel(logging.CRITICAL)
    try:
        for row, partial in _execute(ray, blocks, names, work):
            results.append((row, partial))
            if progress is not None:
                progress(partial.rows, partial.tokens)
    except Exception as e:  # noqa: BLE001 - Ray wraps every worker's failure its own way
        raise _one_line(e, prepared.source, blocks, results) from None
    finally:
        (ctx.execution_options.preserve_order, ctx.enable_progress_bars,
         ctx.max_errored_blocks) = saved
        log.setLevel(level)
    return _fold(prepared, results, blocks)


def _execute(ray: Any, blocks: Sequence[_Block], names: Mapping[str, str],
             work: _Work) -> Iterator[tuple[int, Partial]]:
    """Read, check, hand back: each block's first row and Partial, in source order."""
    # Ray Data retries a task whose worker died, without end by default: here the fault is
    # reported, not hidden behind reruns (a corrupt file fails every rerun the same way).
    remote = {"max_retries": 0, "retry_exceptions": False}
    with warnings.catch_warnings():
        # Ray 2.60 deprecates ray_remote_args; it names no other way to set a task's retries.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
        ds = ray.data.read_datasource(_Datasource.make(blocks, names),
                                      override_num_blocks=len(blocks), ray_remote_args=remote)
        out = ds.map_batches(check_block, fn_kwargs={"work": work}, batch_size=None,
                             batch_format="pyarrow", zero_copy_batch=True, **remote)
    for batch in out.iter_batches(batch_format="pyarrow", batch_size=None):
        for row, text in zip(batch.column("row").to_pylist(),
                             batch.column("partial").to_pylist()):
            yield row, from_plain(json.loads(text))


def _fold(prepared: engine.Prepared, results: list[tuple[int, Partial]],
          blocks: Sequence[_Block]) -> Partial:
    expected = sum(b.rows for b in blocks)
    got = sum(p.rows for _, p in results)
    if got != expected:
        raise LabelLintError(f"{prepared.source}: Ray handed back {got} of its {expected} rows; "
                             "the report would be incomplete")
    # Each block's rows are numbered globally already: merge is exact in any order, and the
    # sort makes the fold the same from run to run.
    return merge(*[p for _, p in sorted(results, key=lambda rp: rp[0])])


def _one_line(error: BaseException, source: str, blocks: Sequence[_Block],
              results: list[tuple[int, Partial]]) -> LabelLintError:
    """A worker's failure as one line: its own LabelLintError when it raised one (a file that
    cannot be read), else the first file whose rows had not all come back."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        # Ray's wrapper of a task's error subclasses the error's own class: the error itself is
        # the one whose class is exactly ours.
        # Ray Data appends lines of retry advice to the message: ours is the first.
        if type(cause) is LabelLintError:
            return LabelLintError(str(cause).strip().splitlines()[0])
        cause = getattr(cause, "cause", None) or cause.__cause__
    covered = np.zeros(len(blocks), dtype=np.int64)
    firsts = np.array([b.first_row for b in blocks])
    for row, p in results:
        covered[np.searchsorted(firsts, row, side="right") - 1] += p.rows
    pending = next((b for b, c in zip(blocks, covered.tolist()) if c < b.rows), blocks[-1])
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return LabelLintError(f"{source}: a Ray worker failed while checking {pending.part.path} "
                          f"({type(error).__name__}: {reason[:200]}); --engine local checks "
                          "on this machine")
