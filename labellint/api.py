"""`check`: the Python entry point that ties sources, facts, rules and the engine together."""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterable, Mapping

from . import arguments, engine
from .catalog import resolve_options, select_rules
from .report import Report
from .sources import CHUNK_ROWS, open_sources
from .hf_facts import known_facts, load_tokenizer


def check(
    source: Any,
    tokenizer: Any = None,
    *,
    model: Any = None,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    columns: Mapping[str, str] | None = None,
    max_examples: int = 5,
    chunk_rows: int = CHUNK_ROWS,
    name: str | None = None,
    missing_labels: str = "padding",
    progress: Callable[[str, int, int, int | None], None] | None = None,
    trust_remote_code: bool = False,
    **facts: Any,
) -> Report:
    """Check training data for label, masking, shift and special-token mistakes.

    source: a batch dict (lists, numpy, torch, BatchEncoding), a list of row dicts, a
        `datasets.Dataset` or `DatasetDict`, an iterable of batches (a DataLoader), a pyarrow
        Table, or a path (parquet, arrow, jsonl, a `save_to_disk` folder).
    tokenizer: a transformers tokenizer or a local tokenizer folder; gives pad/bos/eos ids.
    model: a model, its config, or a local model folder; gives the embedding size.
    select, ignore: rule codes, code prefixes (`LL1`) or names.
    options: per-rule options, e.g. `{"LL105": {"min_tokens": 4}}`.
    columns: our column name -> yours, e.g. `{"input_ids": "tokens"}`.
    missing_labels: for a dataset without labels, the labels its collator will build:
        "padding" (input_ids, padding masked: TRL's collator), "pad-id" (every pad id masked:
        DataCollatorForLanguageModeling), or "skip" (skip the rules that need labels).
    progress: called as progress(source, rows, tokens, total_rows) after each chunk is checked.
    trust_remote_code: let a tokenizer folder run its own code (`auto_map`); off by default.
    facts: pad_id, bos_id, eos_id, vocab_size, ignore_index, label_shift, max_length, add_bos,
        end_of_turn_ids. Given facts beat the tokenizer's, which beat what the data suggests.
    """
    max_examples = arguments.whole_number(max_examples, "max_examples")
    chunk_rows = arguments.whole_number(chunk_rows, "chunk_rows", minimum=1)
    name = arguments.source_name(name)
    progress = arguments.callback(progress, "progress")
    rules = select_rules(select, ignore)
    resolved = resolve_options(rules, options)
    tokenizer = None if tokenizer is None else \
        load_tokenizer(tokenizer, trust_remote_code=trust_remote_code)
    base = known_facts(facts, tokenizer, model)
    results = []
    for s in open_sources(source, columns=columns, chunk_rows=chunk_rows, name=name):
        report = None if progress is None else \
            functools.partial(_report_progress, progress, s.name, s.total_rows)
        results.append(engine.run(
            s.chunks, source=s.name, facts=base, rules=rules, options=resolved,
            training_batches=s.training_batches, max_examples=max_examples,
            missing_labels=missing_labels, progress=report))
    if tokenizer is not None:
        # Example rows are decoded now, while the tokenizer is at hand: the report is not.
        from .view import decode_results

        results = decode_results(tokenizer, results)
    return Report(results)




def _report_progress(progress, source, total_rows, rows, tokens):
    progress(source, rows, tokens, total_rows)
