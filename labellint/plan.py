"""Plan: the settings of a check resolved once, run over any number of sources."""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from . import arguments, engine, parallel, ray_engine
from .allocator import keep_freed_memory
from .config import Config
from .errors import LabelLintError
from .facts import Facts
from .hf_facts import known_facts, load_tokenizer
from .catalog import resolve_options, select_rules, selector_list
from .registry import Rule
from .report import SourceResult
from .text_report import Report
from .sources import CHUNK_ROWS, Source, column_names, open_sources
from .sources.locate import Located, locate


class Plan:
    """What `check` runs, settled before any data is read: the selected rules, their options,
    the facts known from the arguments, tokenizer and model, the loaded tokenizer, the columns.

    Every surface (check, show, the command line, the Trainer callback, the pytest fixture)
    builds one and runs it; they differ only in where the settings come from. The constructor
    is where the arguments are checked, once: a source is read only after they all passed.

    Attributes: rules (selected, in code order), options (code -> option values, resolved),
    facts (given over the model's over the tokenizer's), given (the facts as given), tokenizer
    (loaded, or None), model, columns, max_examples, chunk_rows, missing_labels, select and
    ignore (the selectors as lists, for the loss rules and per-path ignores), raw_options (the
    options as given, keyed by code or name), trust_remote_code, config (the [tool.labellint]
    settings the surface read; empty when it read none), engine ("local": this machine, in
    forked workers; "ray": Ray Data workers) and address (the Ray cluster's; None: the one
    joined already, else a local one).
    """

    def __init__(
        self,
        tokenizer: Any = None,
        *,
        model: Any = None,
        select: Iterable[str] | None = None,
        ignore: Iterable[str] | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        columns: Mapping[str, str] | None = None,
        max_examples: int = 5,
        chunk_rows: int = CHUNK_ROWS,
        missing_labels: str = "padding",
        trust_remote_code: bool = False,
        config: Config | None = None,
        jobs: int | None = None,
        engine: str = "local",
        address: str | None = None,
        **facts: Any,
    ) -> None:
        # Before anything is loaded: without Ray installed, --engine ray is a usage error.
        self.engine = ray_engine.require(engine)
        self.address = address
        self.max_examples = arguments.whole_number(max_examples, "max_examples")
        self.jobs = parallel.default_jobs() if jobs is None else \
            arguments.whole_number(jobs, "jobs", minimum=1)
        self.chunk_rows = arguments.whole_number(chunk_rows, "chunk_rows", minimum=1)
        # Lists, not the iterators a caller may pass: they are read again per path and for
        # the loss rules.
        self.select = None if select is None else selector_list(select, "select")
        self.ignore = None if ignore is None else selector_list(ignore, "ignore")
        self.rules: tuple[Rule, ...] = tuple(select_rules(self.select, self.ignore))
        self.options = resolve_options(list(self.rules), options)
        self.raw_options = options
        column_names(columns)  # its errors now, before a tokenizer loads or a source opens
        self.columns = columns
        self.missing_labels = missing_labels
        self.trust_remote_code = trust_remote_code
        self.config = Config() if config is None else config
        self._settle(tokenizer, model, facts)

    def _settle(self, tokenizer: Any, model: Any, given: Mapping[str, Any]) -> None:
        """The objects and the facts known from them, which `with_objects` may replace."""
        self.tokenizer = None if tokenizer is None else \
            load_tokenizer(tokenizer, trust_remote_code=self.trust_remote_code)
        self.model = model
        self.given = dict(given)
        self.facts: Facts = known_facts(self.given, self.tokenizer, model)

    @classmethod
    def from_config(cls, config: Config, **given: Any) -> Plan:
        """A plan from a `[tool.labellint]` table with a caller's settings laid over it
        (`Config.check_kwargs`: given None means not given)."""
        return cls(config=config, **config.check_kwargs(**given))

    def with_objects(self, *, tokenizer: Any = None, model: Any = None, **facts: Any) -> Plan:
        """This plan with a tokenizer, a model or facts replaced (None keeps this plan's), and
        the facts known from them read again; the rules and options stand as checked."""
        other = copy.copy(self)
        other._settle(self.tokenizer if tokenizer is None else tokenizer,
                      self.model if model is None else model,
                      {**self.given, **{k: v for k, v in facts.items() if v is not None}})
        return other

    def ignoring(self, selectors: Iterable[str]) -> Plan:
        """This plan without the rules `selectors` name (already-checked selectors, such as a
        table's per-path ignores); it may be left with no rule, which `rules` then says."""
        wanted = [s.strip() for s in selectors if s.strip()]
        if not wanted:
            return self
        other = copy.copy(self)
        other.rules = tuple(r for r in self.rules if not _named(r, wanted))
        other.options = {r.code: self.options[r.code] for r in other.rules}
        return other

    def for_path(self, path: Any) -> Plan:
        """The plan for one source: without the rules its table ignores for that path."""
        if not isinstance(path, (str, os.PathLike)):
            return self
        return self.ignoring(self.config.ignores_for(path))

    def run(self, source: Any, *, name: str | None = None,
            progress: Callable[[str, int, int, int | None], None] | None = None) -> Report:
        """Check `source` (anything `check` reads) under this plan; one SourceResult per split.

        progress: called as progress(source, rows, tokens, total_rows) after each chunk.
        """
        name = arguments.source_name(name)
        progress = arguments.callback(progress, "progress")
        results = []
        located = self._ray_sources(source)
        for i, s in enumerate(open_sources(source, columns=self.columns,
                                           chunk_rows=self.chunk_rows, name=name)):
            report = None if progress is None else \
                functools.partial(_report_progress, progress, s.name, s.total_rows)
            results.append(self._run_source(s, report, None if located is None else located[i]))
        if self.tokenizer is not None:
            # Example rows are decoded now, while the tokenizer is at hand: the report is not.
            from .decode import decode_results

            results = decode_results(self.tokenizer, results)
        return Report(results)

    def _ray_sources(self, source: Any) -> list[Located] | None:
        """The located files of each source `--engine ray` checks; None for the local engine."""
        if self.engine != "ray":
            return None
        if not isinstance(source, (str, os.PathLike)):
            raise LabelLintError("--engine ray checks paths (parquet, Arrow, save_to_disk), not "
                                 f"a {type(source).__name__}; --engine local checks it")
        return locate(Path(source))

    def _run_source(self, s: Source, report: Callable[[int, int], None] | None,
                    located: Located | None = None) -> SourceResult:
        """One source: its facts from its first rows, then its parts by Ray Data workers
        (`located`: --engine ray), in worker processes when it has several and jobs allow, or
        in one pass in this process."""
        if not s.training_batches:
            keep_freed_memory()  # chunk-sized scratch arrays: the allocator keeps them for reuse
        prepared, stream = engine.prepare(
            s.chunks, source=s.name, facts=self.facts, rules=list(self.rules),
            options=self.options, training_batches=s.training_batches,
            max_examples=self.max_examples, missing_labels=self.missing_labels)
        if located is not None:
            _close(stream, s)
            return engine.finish(prepared, ray_engine.check_located(
                prepared, located, names=column_names(self.columns), size=self.chunk_rows,
                address=self.address, progress=report))
        parts = None
        if self.jobs > 1 and s.parts is not None and parallel.can_fork() and \
                (s.total_rows is None or s.total_rows > self.chunk_rows):
            parts = s.parts()
        if parts is None or len(parts) < 2:
            return engine.finish(prepared, engine.check_part(prepared, stream, progress=report))
        _close(stream, s)
        return engine.finish(prepared, parallel.check_parts(prepared, parts, jobs=self.jobs,
                                                            progress=report))


def _close(stream: Any, s: Source) -> None:
    """The sample's chunks, its reader and read-ahead thread go before the workers start."""
    stream.close()
    close = getattr(s.chunks, "close", None)
    if close is not None:
        close()


def _named(r: Rule, selectors: list[str]) -> bool:
    return any(s.upper() == "ALL" or r.matches(s) or r.matches(s.upper()) for s in selectors)


def _report_progress(progress, source, total_rows, rows, tokens):
    progress(source, rows, tokens, total_rows)
