"""fix(): a corrected copy of a dataset, written beside its final place, then re-checked."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from . import engine, parallel
from .columns import column_names, table_to_chunk
from .edits import Applied, Working, hits, repair_order
from .errors import LabelLintError
from .files import read_json
from .fix_report import DiffRow, FixReport, RuleFix, diff_row, never_reason, strips_before
from .output import JsonLinesFile, TableFile, WriteBehind, fixed_lines, fixed_table
from .plan import Plan
from .registry import Edit, Rule
from .sources.copies import file_schema, json_line_blocks, parquet_compression, whole_tables
from .sources.locate import GLOB, Located, file_format, glob_root, input_files, locate
from .sources.readers import kind_of, read_located
from .sources.remote import is_url, local_path
from .window import TokenWindow

DIFF_ROWS = 3  # rows per rule that --diff draws


def refuse_output(out: Path, source: str | os.PathLike, what: str = "--out") -> None:
    """OUT must be new, and neither be nor sit inside anything the data is read from, however
    either is named (links, shards, globs): fix never writes over or into its input."""
    if os.path.lexists(out):
        raise LabelLintError(f"{out}: already exists; {what} must name a new path (fix never "
                             "overwrites)")
    parent = Path(os.path.realpath(out.parent if str(out.parent) else "."))
    if not parent.is_dir():
        raise LabelLintError(f"{out}: its folder {out.parent} does not exist")
    target = parent / out.name
    inputs = input_files(source)
    # A folder read (a dataset folder, a glob's folders) would read a new file in it as data
    # next time; beside a single file given by name, nothing else is read.
    folders = {Path(os.path.realpath(f)).parent for f in inputs} \
        if GLOB.search(os.fspath(source)) and not os.path.lexists(source) else set()
    if os.path.isdir(source):
        folders.add(Path(os.path.realpath(source)))
        folders |= {Path(os.path.realpath(f)).parent for f in inputs}
    for f in inputs:
        if Path(os.path.realpath(f)) == target:
            raise LabelLintError(f"{out}: is a file of the data being fixed ({source})")
    for folder in folders:
        if target == folder or folder in target.parents:
            raise LabelLintError(f"{out}: is inside the data being fixed ({source}, folder "
                                 f"{folder}); write the corrected copy elsewhere")


@dataclass
class _Journal:
    """The journal written as the changes come: one JSON object, `changes` streamed."""

    path: Path
    first: bool = True
    _f: Any = None

    def open(self, header: dict) -> None:
        self._f = open(self.path, "w", encoding="utf-8")
        head = json.dumps(header)[:-1]
        self._f.write(head + ', "changes": [\n')

    def add(self, source: str, code: str, rows: np.ndarray, positions: list, dropped: bool,
            columns: tuple[str, ...]) -> None:
        extra = {"dropped": True} if dropped else {}
        if columns:
            extra["columns_dropped"] = list(columns)
        for r, at in zip(rows.tolist(), positions):
            entry = {"source": source, "row": r, "rule": code, "positions": at.tolist(),
                     **extra}
            self._f.write(("" if self.first else ",\n") + json.dumps(entry))
            self.first = False

    def close(self, summary: dict) -> None:
        self._f.write('\n], "summary": ' + json.dumps(summary) + "}\n")
        self._f.close()

    def discard(self) -> None:
        if self._f is not None:
            self._f.close()
        _remove(self.path)


@dataclass
class _Entries:
    """A worker's journal: its changes kept, for the parent to write in the source's order."""

    entries: list = field(default_factory=list)

    def add(self, *entry: Any) -> None:
        self.entries.append(entry)


@dataclass
class _Source:
    """One source being fixed: its settings, and what its repairs did so far."""

    found: Located
    plan: Plan
    facts: Any
    derived: str | None
    enabled: list[Rule]
    stats: dict[str, RuleFix]
    journal: _Journal | _Entries
    droppable: set[str] = field(default_factory=set)
    rows: int = 0
    diff: bool = False
    diffs: list[DiffRow] = field(default_factory=list)


def _prepare(found: Located, plan: Plan) -> tuple[Any, str | None]:
    """The source's facts from its first rows, as `check` resolves them."""
    names = column_names(plan.columns)
    chunks, _ = read_located(found, names, plan.chunk_rows)
    try:
        prepared, _stream = engine.prepare(chunks, source=found.name, facts=plan.facts,
                                           rules=list(plan.rules), options=plan.options,
                                           missing_labels=plan.missing_labels)
    finally:
        chunks.close()
    return prepared.facts, plan.missing_labels if prepared.derived else None


def _droppable(src: _Source) -> set[str]:
    """Columns a repair may drop from this whole source: attention_mask when packed-with-
    attention-mask fires somewhere and the mask is all ones everywhere."""
    ll502 = next((r for r in src.enabled if r.code == "LL502"), None)
    if ll502 is None or not _may_hold(src, "attention_mask"):
        return set()
    names = column_names(src.plan.columns)
    chunks, _ = read_located(src.found, names, src.plan.chunk_rows)
    fires = False
    try:
        for chunk in chunks:
            if "attention_mask" not in chunk or "position_ids" not in chunk:
                return set()
            if not (chunk["attention_mask"][0] == 1).all():
                src.stats["LL502"].reason = ("attention_mask hides padding in some rows: "
                                             "dropping it would show them to the model")
                return set()
            if not fires:
                b = Working(dict(chunk), frozenset(chunk)).batch(src.facts, src.derived)
                fires = isinstance(hits(ll502, b, src.plan.options["LL502"]), np.ndarray)
    finally:
        chunks.close()
    return {"attention_mask"} if fires else set()


def _may_hold(src: _Source, column: str) -> bool:
    """Whether every data file may hold `column`: false when a table file's schema lacks it,
    known without reading a row."""
    theirs = column_names(src.plan.columns)[column]
    for path in src.found.files:
        kind = kind_of(src.found, Path(path))
        if kind != "jsonl" and theirs not in file_schema(Path(path), kind)[0].names:
            return False
    return True


def _hit_rows(rule: Rule, b: Any, mask: np.ndarray) -> int:
    if rule.per == "row":
        return int(np.count_nonzero(mask))
    return int(np.unique(b.rows_of(np.flatnonzero(mask))).size)


def _fix_chunk(src: _Source, chunk: dict, stored: set[str], row_start: int) -> Working:
    """Every enabled repair on one chunk, in order; the held-back ones only counted."""
    w = Working(dict(chunk), frozenset(c for c in chunk if c in stored))
    b = None
    for r in repair_order(list(src.plan.rules)):
        if b is None:
            b = w.batch(src.facts, src.derived)
        found = hits(r, b, src.plan.options[r.code])
        if not isinstance(found, np.ndarray):
            continue
        stat = src.stats[r.code]
        if r not in src.enabled:
            stat.held += _hit_rows(r, b, found)
            continue
        edit = r.repair.func(b, found)
        if any(c not in src.droppable for c in edit.drop_columns):
            edit = Edit(left=_hit_rows(r, b, found))
        # The strips are taken before the repair runs: it may write into the arrays b reads.
        before = strips_before(b, found, w.rows, DIFF_ROWS - stat.drawn, r.per == "row") \
            if src.diff and stat.drawn < DIFF_ROWS else None
        applied = w.apply(edit, b)
        _count(src, r, applied, row_start, before, w, edit.delete is not None and
               bool(np.size(edit.delete)))
        if applied.rows.size:
            b = None  # the next rule judges the chunk as this one left it
    return w


def _count(src: _Source, r: Rule, applied: Applied, row_start: int,
           before: dict[int, TokenWindow] | None, w: Working, deleted: bool) -> None:
    stat = src.stats[r.code]
    stat.rows += int(applied.rows.size)
    stat.tokens += applied.tokens
    stat.dropped += applied.dropped
    stat.left += applied.left
    src.journal.add(src.found.name, r.code, applied.rows + row_start, applied.positions,
                    applied.dropped > 0, applied.columns_dropped)
    if before and applied.rows.size:
        after = w.batch(src.facts, src.derived)
        for row, at in zip(applied.rows.tolist(), applied.positions):
            if row not in before or stat.drawn >= DIFF_ROWS:
                continue
            src.diffs.append(diff_row(r.code, row, row_start, at, before[row], after, w,
                                       deleted, applied.columns_dropped))
            stat.drawn += 1


def _tables(path: Path, kind: str, size: int,
            names: Mapping[str, str]) -> Iterator[tuple[Any, Any, dict]]:
    """The file's blocks: their lines (JSON Lines), every column, and the token columns."""
    if kind == "jsonl":
        blocks: Iterator[tuple[Any, Any]] = json_line_blocks(path)
    else:
        blocks = ((None, table) for table in whole_tables(path, kind, size))
    for lines, table in blocks:
        yield lines, table, table_to_chunk(table, names, str(path))


def _read_ahead(items: Iterator[Any]) -> Iterator[Any]:
    """`items`, the next one read in a thread while this one is repaired (Arrow's decoding
    releases the GIL); the reader's errors raised here, in order."""
    with ThreadPoolExecutor(1, thread_name_prefix="labellint-fix-reader") as pool:
        ahead = pool.submit(next, items, None)
        while (item := ahead.result()) is not None:
            ahead = pool.submit(next, items, None)
            yield item
            del item


def _fix_file(src: _Source, path: Path, target: Path) -> None:
    """One data file rewritten at `target` in its format, every column kept."""
    kind = kind_of(src.found, path)
    names = column_names(src.plan.columns)
    if kind == "jsonl":
        writer: Any = JsonLinesFile(target, like=path)
    else:
        schema, stream = file_schema(path, kind)
        for name in src.droppable & set(schema.names):
            schema = schema.remove(schema.get_field_index(name))
        writer = TableFile(target, kind, schema, stream=stream, compression=_compression(path,
                                                                                          kind))
    writer = WriteBehind(writer)
    try:
        for lines, table, chunk in _read_ahead(_tables(path, kind, src.plan.chunk_rows,
                                                       names)):
            stored = {ours for ours, theirs in names.items() if theirs in table.schema.names}
            w = _fix_chunk(src, chunk, stored, src.rows)
            src.rows += table.num_rows
            if lines is None:
                writer.write(fixed_table(table, w, names, src.droppable))
            else:
                writer.write_lines(fixed_lines(lines, table, w, names, src.droppable))
    finally:
        writer.close()


def _fix_files_forked(src: _Source, files: list[tuple[Path, Path]]) -> None:
    """Each data file fixed in a forked worker, then its counts, journal and strips taken in
    the files' order, renumbered: the same copy and journal, byte for byte, as one process
    writes."""

    def task(i: int) -> tuple[int, dict[str, RuleFix], list, list[DiffRow]]:
        part = _Source(src.found, src.plan, src.facts, src.derived, src.enabled,
                       {code: s.zeroed() for code, s in src.stats.items()}, _Entries(),
                       src.droppable, diff=src.diff)
        _fix_file(part, *files[i])
        assert isinstance(part.journal, _Entries)
        return part.rows, part.stats, part.journal.entries, part.diffs

    done = parallel.map_forked(task, len(files), jobs=src.plan.jobs,
                               name=lambda i: str(files[i][0]))
    for rows, stats, entries, diffs in done:
        for code, stat in stats.items():
            src.stats[code].add(stat)
        for name, code, changed, positions, dropped, columns in entries:
            src.journal.add(name, code, changed + src.rows, positions, dropped, columns)
        for d in diffs:
            stat = src.stats[d.code]
            if stat.drawn < DIFF_ROWS:
                src.diffs.append(d.shifted(src.rows))
                stat.drawn += 1
        src.rows += rows


def _compression(path: Path, kind: str) -> str | None:
    return parquet_compression(path) if kind == "parquet" else None


def _copy_beside(src: _Source, root: Path, tmp: Path, single: bool) -> None:
    """The files of the dataset's folders that are not rows: metadata copied (state.json with
    a new fingerprint, since its data changed), nothing read as data."""
    if single:
        return
    data = {Path(f) for f in src.found.files}
    folders = {Path(f).parent for f in src.found.files} | {Path(m).parent
                                                           for m in src.found.metadata}
    for folder in folders:
        for entry in sorted(folder.iterdir()):
            if entry in data or not entry.is_file() or entry.name.startswith("cache-"):
                continue
            if file_format(entry) in ("parquet", "arrow") or \
                    entry.suffix in (".jsonl", ".ndjson"):
                continue  # data this source does not read (another split's shards)
            target = tmp / os.path.relpath(entry, root)
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if entry.name == "state.json" and src.found.save_to_disk:
                state = read_json(entry)
                old = str(state.get("_fingerprint", ""))
                state["_fingerprint"] = hashlib.sha256(
                    f"{old} labellint fix".encode()).hexdigest()[:16]
                target.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
            else:
                shutil.copyfile(entry, target)


def _root(source: str) -> tuple[Path, bool]:
    """The folder output paths are made relative to, and whether the source is one file."""
    if GLOB.search(source) and not os.path.lexists(source):
        return Path(glob_root(source)), False
    if os.path.isdir(source):
        return Path(source), False
    return Path(source).parent, True


def _fix_source(src: _Source, root: Path, tmp: Path, single: bool,
                max_drop_fraction: float) -> None:
    src.droppable = _droppable(src)
    files = [(Path(p), tmp if single else tmp / os.path.relpath(p, root))
             for p in src.found.files]
    for _, target in files:
        target.parent.mkdir(parents=True, exist_ok=True)
    if src.plan.jobs > 1 and len(files) > 1 and parallel.can_fork():
        _fix_files_forked(src, files)
    else:
        for path, target in files:
            _fix_file(src, path, target)
    dropped = src.stats["LL101"].dropped if "LL101" in src.stats else 0
    if dropped > max_drop_fraction * src.rows:
        raise LabelLintError(
            f"{src.found.name}: LL101 would drop {dropped:,} of {src.rows:,} rows "
            f"({100 * dropped / max(src.rows, 1):.1f}%), over --max-drop-fraction "
            f"{max_drop_fraction}: fix the masking upstream, or raise the limit")
    _copy_beside(src, root, tmp, single)


def fix(source: str | os.PathLike, *, out: str | os.PathLike, plan: Plan | None = None,
        unsafe_fixes: bool = False, journal: str | os.PathLike | None = None,
        max_drop_fraction: float = 0.01, diff: bool = False, **settings: Any) -> FixReport:
    """Write a corrected copy of the dataset at `source` to `out`, then check `out`.

    Safe fixes run by default, unsafe ones with `unsafe_fixes`; `settings` are `check`'s
    keyword arguments (tokenizer, select, ignore, facts...), or give a `plan`. The journal
    (default: OUT + ".journal.json") lists every changed row. A fixed rule that still fires on
    `out` is a LabelLintError, and `out` is removed; so is a failure part-way (nothing is left
    half-written). Returns the FixReport: its `exit_code` is 0 when `out` is clean.
    """
    if not isinstance(source, (str, os.PathLike)):
        raise LabelLintError("fix reads a path (a file, folder or glob); save a Dataset with "
                             "save_to_disk first")
    if not isinstance(max_drop_fraction, (int, float)) or not 0 <= max_drop_fraction <= 1:
        raise LabelLintError(f"max_drop_fraction must be between 0 and 1, not "
                             f"{max_drop_fraction!r}")
    if plan is not None and settings:
        raise LabelLintError(f"give a plan or check's settings, not both ({', '.join(settings)})")
    source, out = _local(os.fspath(source), "the data"), Path(_local(os.fspath(out), "--out"))
    journal_path = Path(journal) if journal is not None else Path(f"{out}.journal.json")
    refuse_output(out, source)
    refuse_output(journal_path, source, "--journal")
    plan = (plan or Plan(**settings)).for_path(source)
    located = locate(Path(source))
    root, single = _root(source)
    if single and file_format(out) != file_format(Path(source)):
        raise LabelLintError(f"{out}: the copy of {source} is written in its format: name it "
                             f"with its suffix ({''.join(Path(source).suffixes)})")
    tmp = out.parent / f".{out.name}.labellint-{os.getpid()}.tmp"
    tmp_journal = journal_path.parent / f".{journal_path.name}.labellint-{os.getpid()}.tmp"
    stats = {r.code: RuleFix.of(r, unsafe_fixes) for r in repair_order(list(plan.rules))}
    log = _Journal(tmp_journal)
    diffs: list[DiffRow] = []
    try:
        if not single:
            tmp.mkdir()
        log.open({"input": source, "out": str(out), "unsafe_fixes": unsafe_fixes})
        rows = 0
        for found in located:
            facts, derived = _prepare(found, plan)
            enabled = [r for r in repair_order(list(plan.rules))
                       if r.repair.safe or unsafe_fixes]
            src = _Source(found, plan, facts, derived, enabled, stats, log, diff=diff)
            _fix_source(src, root, tmp, single, max_drop_fraction)
            rows += src.rows
            diffs += src.diffs
        os.rename(tmp, out)
    except BaseException:
        _remove(tmp)
        log.discard()
        raise
    if plan.tokenizer is not None:
        diffs = [d.decoded(plan.tokenizer) for d in diffs]
    return _recheck(plan, out, source, journal_path, tmp_journal, log, stats, rows, diffs)


def _recheck(plan: Plan, out: Path, source: str, journal_path: Path, tmp_journal: Path,
             log: _Journal, stats: dict[str, RuleFix], rows: int,
             diffs: list[DiffRow]) -> FixReport:
    """OUT checked with the same plan: a fixed rule that still fires removes it."""
    try:
        report = plan.run(out)
    except BaseException:
        _remove(out)
        log.discard()
        raise
    found = {}
    for f in report.findings:
        found.setdefault(f.code, [f.name, 0])[1] += f.count_rows
    still = [code for code, s in stats.items()
             if s.applied and s.rows and not s.left and not s.reason and code in found]
    if still:
        _remove(out)
        log.discard()
        raise LabelLintError(f"{', '.join(still)} still fire on the fixed copy; it was removed "
                             "(a bug in the fix: please report it with the data's shape)")
    remaining = [(code, name, n, stats[code].why() if code in stats else never_reason(code))
                 for code, (name, n) in sorted(found.items())]
    result = FixReport(source=source, out=out, journal=journal_path,
                       rules=list(stats.values()), remaining=remaining, rows=rows,
                       diffs=diffs, recheck=report)
    log.close(result.to_dict())
    os.replace(tmp_journal, journal_path)
    return result


def _remove(path: Path) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


def _local(path: str, what: str) -> str:
    """A local path (`file://` names one): fix writes its copy beside local files only."""
    if not is_url(path):
        return path
    local = local_path(path)
    if local is None:
        raise LabelLintError(f"{path}: fix reads and writes local data, and {what} is a URL; "
                             "copy the data here first (`labellint check` reads URLs)")
    return local
