"""labellint check | fix | rules | rule | show | loss: exit 0 clean, 1 findings, 2 errors."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from rich.console import Console

from ..arguments import ID_LIMIT
from ..columns import SOURCE_COLUMNS
from ..config import Config, load_config, toml_value
from ..errors import LabelLintError
from ..plan import Plan

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _whole(low: int, what: str):
    """An argparse type: a whole number from `low` below 2**63 (what numpy compares ids as)."""
    span = f"a whole number from {low} up to 2**63 - 1" if low >= 0 else \
        "a whole number that fits in 64 bits"

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            value = None
        if value is None or not low <= value < ID_LIMIT:
            raise argparse.ArgumentTypeError(f"must be {what}{span}, not {text!r}")
        return value

    parse.__name__ = what or "int64"  # argparse names the type in some messages
    return parse


TOKEN_ID = _whole(0, "a token id, ")
POSITIVE = _whole(1, "a positive count, ")
COUNT = _whole(0, "a count, ")
INT64 = _whole(-ID_LIMIT, "")
FACT_TYPES = {"pad-id": TOKEN_ID, "bos-id": TOKEN_ID, "eos-id": TOKEN_ID,
              "vocab-size": POSITIVE, "max-length": POSITIVE, "ignore-index": INT64}


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error, with exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_ERROR, f"labellint: error: {message} (see labellint --help)\n")


def _data_arguments(c: argparse.ArgumentParser) -> None:
    """The settings `check` and `fix` share: tokenizer, model, rules, columns, facts."""
    c.add_argument("--tokenizer", metavar="DIR", help="a local tokenizer folder")
    c.add_argument("--model", metavar="DIR", help="a local model folder (for its vocab size)")
    c.add_argument("--select", type=_list, action="extend", metavar="RULES",
                   help="codes, prefixes or names (comma-separated, repeatable)")
    c.add_argument("--ignore", type=_list, action="extend", metavar="RULES",
                   help="codes, prefixes or names (comma-separated, repeatable)")
    c.add_argument("--option", action="append", metavar="RULE.NAME=VALUE", default=[],
                   help="a rule option, e.g. LL105.min_tokens=4 (repeatable)")
    c.add_argument("-j", "--jobs", type=POSITIVE, metavar="N",
                   help="worker processes (default: every core; 1 checks in this process)")
    c.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="ray: the parts checked by Ray Data workers (pip install 'labellint[ray]')")
    c.add_argument("--address", metavar="ADDR",
                   help="the Ray cluster to join with --engine ray (default: a local one)")
    c.add_argument("--trust-remote-code", action="store_true",
                   help="let a tokenizer folder run its own code (auto_map; off unless asked)")
    c.add_argument("--missing-labels", choices=("padding", "pad-id", "skip"),
                   help="a dataset without labels: check input_ids as labels with padding "
                        "masked (TRL's collator; the default), or every pad id masked "
                        "(DataCollatorForLanguageModeling), or skip the label rules")
    c.add_argument("--config", metavar="FILE",
                   help="settings file (default: the nearest pyproject.toml with "
                        "[tool.labellint])")
    c.add_argument("--isolated", action="store_true", help="ignore every configuration file")
    cols = c.add_argument_group("columns (for datasets that name them otherwise)")
    for column in SOURCE_COLUMNS:
        cols.add_argument(f"--{column.replace('_', '-')}-column", metavar="NAME",
                          dest=f"{column}_column")
    facts = c.add_argument_group("facts (override the tokenizer and what the data suggests)")
    for flag in ("pad-id", "bos-id", "eos-id", "vocab-size", "max-length", "ignore-index"):
        facts.add_argument(f"--{flag}", type=FACT_TYPES[flag], metavar="N")
    facts.add_argument("--label-shift", choices=("model", "dataset"))
    facts.add_argument("--add-bos", action=argparse.BooleanOptionalAction, default=None,
                       help="whether the tokenizer adds BOS (turns on missing-bos)")
    facts.add_argument("--assistant-only-loss", action=argparse.BooleanOptionalAction,
                       default=None, help="whether prompt turns are meant to be masked "
                       "(--no-assistant-only-loss: whole conversations trained on purpose)")


def _parser() -> argparse.ArgumentParser:
    from ..version import __version__

    p = _Parser(
        prog="labellint",
        description="A correctness linter for language-model training data.")
    p.add_argument("--version", action="version", version=f"labellint {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    c = sub.add_parser("check", help="check datasets for label and masking mistakes")
    c.add_argument("paths", nargs="+", metavar="PATH",
                   help="parquet, arrow, jsonl(.gz) files, save_to_disk folders, folders of "
                        "shards, quoted globs, or URLs of them (s3://, gs://, hf://, through "
                        "fsspec)")
    _data_arguments(c)
    c.add_argument("--format", choices=("text", "json", "github"))
    c.add_argument("--exit-zero", action="store_true", help="exit 0 even with findings")
    c.add_argument("--fail-on", choices=("warning", "error"),
                   help="the lowest severity that makes the exit code 1 (default: warning)")
    c.add_argument("--max-examples", type=COUNT, metavar="N", help="example rows per finding")
    c.add_argument("--no-progress", action="store_true",
                   help="no progress bar (it is shown only on a terminal)")

    f = sub.add_parser("fix", help="write a corrected copy of a dataset (safe fixes only, "
                                   "unless --unsafe-fixes), then check it")
    f.add_argument("path", metavar="PATH", help="a file, dataset folder, or quoted glob")
    f.add_argument("--out", required=True, metavar="OUT",
                   help="where the copy goes: a new path, never the input or inside it")
    _data_arguments(f)
    f.add_argument("--unsafe-fixes", action="store_true",
                   help="also apply the fixes that change what is trained (LL101, LL301, "
                        "LL302, LL403, LL603)")
    f.add_argument("--diff", action="store_true",
                   help="draw the first rows each fix changed as token strips, before and "
                        "after")
    f.add_argument("--journal", metavar="FILE",
                   help="the JSON list of every change (default: OUT.journal.json)")
    f.add_argument("--max-drop-fraction", type=float, default=0.01, metavar="F",
                   help="most rows LL101's fix may drop, as a share of a source (default 0.01)")
    f.add_argument("--format", choices=("text", "json"), default="text")

    r = sub.add_parser("rules", help="list the rules")
    r.add_argument("--format", choices=("text", "markdown", "json"), default="text")

    one = sub.add_parser("rule", help="explain one rule")
    one.add_argument("rule", metavar="CODE|NAME")

    lo = sub.add_parser("loss", help="recompute a model's loss on a dataset and compare")
    lo.add_argument("--model", required=True, metavar="DIR", help="a local model folder")
    lo.add_argument("--data", required=True, metavar="PATH",
                    help="parquet, arrow, jsonl or a save_to_disk folder")
    lo.add_argument("--tokenizer", metavar="DIR", help="a local tokenizer folder (pad id)")
    lo.add_argument("--batch-size", type=POSITIVE, default=8, metavar="N")
    lo.add_argument("--accumulation", type=POSITIVE, default=1, metavar="K",
                    help="micro-batches per optimizer step")
    lo.add_argument("--reported", type=float, metavar="LOSS",
                    help="the loss your training logged for the first step "
                         "(default: check the model's own loss)")
    lo.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    lo.add_argument("--at-init", action="store_true", help="the model is freshly initialised")
    lo.add_argument("--pad-id", type=TOKEN_ID, metavar="N")
    lo.add_argument("--ignore-index", type=INT64, default=-100, metavar="N")
    lo.add_argument("--label-shift", choices=("model", "dataset"), default="model")
    lo.add_argument("--trust-remote-code", action="store_true",
                    help="run the model folder's own code (off unless asked)")
    lo.add_argument("--select", type=_list, metavar="RULES", help="codes, prefixes or names")
    lo.add_argument("--ignore", type=_list, metavar="RULES", help="codes, prefixes or names")
    lo.add_argument("--format", choices=("text", "json"), default="text")
    lo.add_argument("--exit-zero", action="store_true", help="exit 0 even with findings")
    lo.add_argument("--fail-on", choices=("warning", "error"), default="warning")

    s = sub.add_parser("show", help="show one row: what is trained, masked, padding, hidden")
    s.add_argument("path", metavar="PATH", help="a parquet, arrow, jsonl file or dataset folder")
    s.add_argument("--row", type=int, required=True, metavar="N", help="the row index (from 0)")
    s.add_argument("--tokenizer", metavar="DIR", help="a local tokenizer folder (decodes tokens)")
    s.add_argument("--model", metavar="DIR", help="a local model folder (for its vocab size)")
    s.add_argument("--format", choices=("text", "html"), default="text")
    s.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    for flag in ("pad-id", "bos-id", "eos-id", "vocab-size", "max-length", "ignore-index"):
        s.add_argument(f"--{flag}", type=FACT_TYPES[flag], metavar="N")
    s.add_argument("--trust-remote-code", action="store_true",
                   help="let a tokenizer folder run its own code (auto_map; off unless asked)")
    s.add_argument("--label-shift", choices=("model", "dataset"))
    s.add_argument("--add-bos", action=argparse.BooleanOptionalAction, default=None)
    s.add_argument("--config", metavar="FILE", help="settings file (as for check)")
    s.add_argument("--isolated", action="store_true", help="ignore every configuration file")
    return p


FACT_FLAGS = ("pad_id", "bos_id", "eos_id", "vocab_size", "max_length", "ignore_index",
              "label_shift", "add_bos", "assistant_only_loss")


def _option(text: str) -> tuple[str, str, object]:
    """'LL105.min_tokens=4' -> ('LL105', 'min_tokens', 4); values are read as TOML values."""
    key, sep, raw = text.partition("=")
    rule, dot, name = key.partition(".")
    if not (sep and dot and rule and name):
        raise LabelLintError(f"--option {text!r} is not RULE.NAME=VALUE")
    return rule.strip(), name.strip().replace("-", "_"), toml_value(raw)


def _settings(args: argparse.Namespace) -> tuple[Plan, str, str]:
    """The plan of `labellint check`, its format and fail-on: flags over [tool.labellint] over
    defaults. The selection is checked and the tokenizer loaded here, once for every path."""
    config = Config() if args.isolated else load_config(args.config)
    options: dict[str, dict[str, object]] = {}
    for rule, name, value in map(_option, args.option):
        options.setdefault(rule, {})[name] = value
    columns = {c: getattr(args, f"{c}_column") for c in SOURCE_COLUMNS
               if getattr(args, f"{c}_column")}
    given = {k: getattr(args, k, None) for k in (*FACT_FLAGS, "tokenizer", "model",
                                                 "max_examples", "missing_labels", "jobs")}
    settings = config.check_kwargs(select=args.select, ignore=args.ignore, options=options,
                                   columns=columns, **given)
    format_ = args.format or config.get("format", "text")
    fail_on = getattr(args, "fail_on", None) or config.get("fail_on", "warning")
    if format_ not in ("text", "json", "github"):
        raise LabelLintError(f"format must be text, json or github, not {format_!r}")
    if fail_on not in ("warning", "error"):
        raise LabelLintError(f"fail-on must be warning or error, not {fail_on!r}")
    plan = Plan(config=config, trust_remote_code=args.trust_remote_code, engine=args.engine,
                address=args.address, **settings)
    return plan, format_, fail_on


def _check(args: argparse.Namespace, out: Console) -> int:
    from ..github import render_github
    from ..text_report import Report

    plan, format_, fail_on = _settings(args)
    show_progress = not args.no_progress and sys.stderr.isatty()
    reports = []
    with _progress(show_progress) as progress:
        for path in args.paths:
            one = plan.for_path(path)
            if not one.rules:
                print(f"labellint: {path}: every selected rule is ignored for it "
                      "(per-path-ignores); not checked", file=sys.stderr)
                continue
            reports.append(one.run(path, progress=progress))
    report = Report([s for r in reports for s in r.sources])
    if format_ == "json":
        print(report.to_json())
    elif format_ == "github":
        if report.findings:
            print(render_github(report))
    else:
        out.print(report)  # coloured strips on a terminal, bracketed states when piped
    failed = report.failed(fail_on)
    return EXIT_FINDINGS if failed and not args.exit_zero else EXIT_CLEAN


class _progress:
    """A progress bar on stderr while sources are read; nothing when off (not a terminal)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn)

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                            MofNCompleteColumn(), TextColumn("rows"),
                            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                            console=Console(stderr=True), transient=True)
        self.bar.start()
        return self

    def __call__(self, source: str, rows: int, tokens: int, total_rows: int | None) -> None:
        if source not in self.tasks:
            self.tasks[source] = self.bar.add_task(source, total=total_rows, rate="", tokens=0)
        task = self.tasks[source]
        t = self.bar.tasks[self.tasks[source]]
        seconds = max(t.elapsed or 0.0, 1e-9)
        done_tokens = t.fields["tokens"] + tokens
        self.bar.update(task, advance=rows, tokens=done_tokens,
                        rate=f"{done_tokens / seconds / 1e6:,.0f}M tokens/s")

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def _rules(args: argparse.Namespace, out: Console) -> int:
    from .. import pages
    from ..catalog import all_rules

    if args.format == "markdown":
        print(pages.index(), end="")
    elif args.format == "json":
        print(json.dumps([{"code": r.code, "name": r.name, "severity": r.severity,
                           "summary": r.summary, "options": dict(r.options)}
                          for r in all_rules()], indent=2))
    else:
        for r in all_rules():
            out.print(f"{r.code}  {r.name:<28} {r.severity:<8} {r.summary}", highlight=False)
    return EXIT_CLEAN


def _rule(args: argparse.Namespace, out: Console) -> int:
    from .. import pages
    from ..catalog import get_rule

    text = pages.read_page(get_rule(args.rule))
    if out.is_terminal:
        from rich.markdown import Markdown

        out.print(Markdown(text))
    else:
        print(text, end="")
    return EXIT_CLEAN


def _loss(args: argparse.Namespace, out: Console) -> int:
    from .loss import cli_check_loss

    report = cli_check_loss(args)
    if args.format == "json":
        print(report.to_json())
    else:
        out.print(report.render())
    failed = report.failed(args.fail_on)
    return EXIT_FINDINGS if failed and not args.exit_zero else EXIT_CLEAN


def _show(args: argparse.Namespace, out: Console) -> int:
    from ..show import WIDTH, row_index, show_row

    # The row is judged as `check` judges it: the same [tool.labellint] settings apply.
    config = Config() if args.isolated else load_config(args.config)
    settings = config.check_kwargs(**{k: getattr(args, k, None)
                                      for k in (*FACT_FLAGS, "tokenizer", "model")})
    settings["ignore"] += config.ignores_for(args.path)
    if args.output is not None:
        _refuse_writing_over_input(_local_output(args.output), args.path)  # before any work
    index = row_index(args.row)
    plan = Plan(config=config, trust_remote_code=args.trust_remote_code, **settings)
    row = show_row(plan, args.path, index)
    if args.output is None and args.format == "text":
        color = out.is_terminal and not out.no_color
        out.print(row.render(color=color, width=out.width if out.is_terminal else WIDTH))
        return EXIT_CLEAN
    text = row.to_html() if args.format == "html" else row.render().plain
    if args.output is None:
        print(text, end="")
        return EXIT_CLEAN
    target = _local_output(args.output)
    _refuse_writing_over_input(target, args.path)  # again: the data may have changed meanwhile
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as e:
        raise LabelLintError(f"{target}: cannot write it ({e.strerror or e})") from None
    return EXIT_CLEAN


def _fix(args: argparse.Namespace, out: Console) -> int:
    from ..fix import fix

    plan, _, _ = _settings(args)
    result = fix(args.path, out=args.out, plan=plan, unsafe_fixes=args.unsafe_fixes,
                 journal=args.journal, max_drop_fraction=args.max_drop_fraction,
                 diff=args.diff)
    if args.format == "json":
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(result.render())
    return EXIT_FINDINGS if result.exit_code else EXIT_CLEAN


def _local_output(output: str) -> Path:
    """`-o` is a local file (`file://` names one): labellint writes nothing behind a URL, so
    the remote data being shown is never written over either."""
    from ..sources.remote import is_url, local_path

    if not is_url(output):
        return Path(output)
    local = local_path(output)
    if local is None:
        raise LabelLintError(f"{output}: -o writes a local file, not a URL; write elsewhere")
    return Path(local)


def _refuse_writing_over_input(target: Path, path: str) -> None:
    """`-o` must not name any file the data is read from, however it is named: the path
    itself, a shard of the folder, a member of the glob, a hard or symbolic link to one (the
    same device and inode), nor a new data file inside a folder being read (the next read would
    take it for a shard)."""
    from ..sources.locate import file_format, input_files
    from ..sources.remote import is_url, local_path

    if is_url(path) and local_path(path) is None:
        return  # remote data: no local file is one of its files (and a URL -o is refused)
    inputs = input_files(local_path(path) if is_url(path) else path)
    try:
        st = os.stat(target)
    except OSError:
        st = None
    ids = set()
    for f in inputs:
        try:
            s = os.stat(f)
        except OSError:
            continue
        ids.add((s.st_dev, s.st_ino))
    resolved = {os.path.realpath(f) for f in inputs}
    if (st is not None and (st.st_dev, st.st_ino) in ids) or os.path.realpath(target) in resolved:
        raise LabelLintError(f"{target}: is a file of the data being shown ({path}); "
                             "write elsewhere")
    folders = {os.path.dirname(r) for r in resolved}
    if file_format(target) and os.path.dirname(os.path.realpath(target)) in folders:
        raise LabelLintError(f"{target}: would be read as data next to the files of {path}; "
                             "write elsewhere")


def _empty_path(args: argparse.Namespace) -> str | None:
    """The flag given an empty path, if any: "" is the current folder to the OS, which is
    never what an empty variable in a script meant."""
    for flag in ("paths", "path", "data", "tokenizer", "model", "config", "output", "out",
                 "journal"):
        value = getattr(args, flag, None)
        for v in (value if isinstance(value, list) else [value]):
            if v == "":
                return {"paths": "PATH", "path": "PATH"}.get(flag, f"--{flag}")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    empty = _empty_path(args)
    if empty:
        print(f"labellint: error: {empty} is an empty path (see labellint --help)",
              file=sys.stderr)
        return EXIT_ERROR
    out = Console(highlight=False, markup=False, soft_wrap=True)
    command = {"check": _check, "rules": _rules, "rule": _rule, "loss": _loss,
               "show": _show, "fix": _fix}[args.command]
    try:
        return command(args, out)
    except LabelLintError as e:
        print(f"labellint: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ERROR
    except Exception as e:  # a bug of ours: one line, the traceback on request
        if os.environ.get("LABELLINT_DEBUG"):
            raise
        print(f"labellint: internal error: {type(e).__name__}: {e} "
              "(set LABELLINT_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_ERROR
