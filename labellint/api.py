"""`check`: the Python entry point, a Plan built from keyword arguments then run."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from .plan import Plan
from .sources import CHUNK_ROWS
from .text_report import Report


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
    jobs: int | None = None,
    engine: str = "local",
    address: str | None = None,
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
    jobs: worker processes for a path, Dataset or Table (its parts: row groups, record
        batches, files): every core by default on Linux, 1 to check in this process. The
        report is the same whatever the number.
    engine: "local" (this machine), or "ray": a path's parts checked by Ray Data workers
        (`pip install 'labellint[ray]'`), on the cluster at `address` (None: the one this
        process joined, else a local one). The report is the local engine's.
    facts: pad_id, bos_id, eos_id, vocab_size, ignore_index, label_shift, max_length, add_bos,
        end_of_turn_ids. Given facts beat the tokenizer's, which beat what the data suggests.
    """
    plan = Plan(tokenizer, model=model, select=select, ignore=ignore, options=options,
                columns=columns, max_examples=max_examples, chunk_rows=chunk_rows,
                missing_labels=missing_labels, trust_remote_code=trust_remote_code, jobs=jobs,
                engine=engine, address=address,
                **facts)
    return plan.run(source, name=name, progress=progress)
