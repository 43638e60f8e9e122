"""labellint check | rules | rule CODE — ruff's conventions: exit 0 clean, 1 findings, 2 errors."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from rich.console import Console

from .errors import LabelLintError

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error, with exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_ERROR, f"labellint: error: {message} (see labellint --help)\n")


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    p = _Parser(
        prog="labellint",
        description="A correctness linter for language-model training data.")
    p.add_argument("--version", action="version", version=f"labellint {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    c = sub.add_parser("check", help="check datasets for label and masking mistakes")
    c.add_argument("paths", nargs="+", metavar="PATH",
                   help="parquet, arrow, jsonl files or save_to_disk folders")
    c.add_argument("--tokenizer", metavar="DIR", help="a local tokenizer folder")
    c.add_argument("--model", metavar="DIR", help="a local model folder (for its vocab size)")
    c.add_argument("--select", type=_list, metavar="RULES", help="codes, prefixes or names")
    c.add_argument("--ignore", type=_list, metavar="RULES", help="codes, prefixes or names")
    c.add_argument("--format", choices=("text", "json", "github"), default="text")
    c.add_argument("--exit-zero", action="store_true", help="exit 0 even with findings")
    c.add_argument("--fail-on", choices=("warning", "error"), default="warning",
                   help="the lowest severity that makes the exit code 1 (default: warning)")
    c.add_argument("--max-examples", type=int, default=5, metavar="N")
    facts = c.add_argument_group("facts (override the tokenizer and what the data suggests)")
    for flag in ("pad-id", "bos-id", "eos-id", "vocab-size", "max-length"):
        facts.add_argument(f"--{flag}", type=int, metavar="N")
    facts.add_argument("--ignore-index", type=int, metavar="N")
    facts.add_argument("--label-shift", choices=("model", "dataset"))
    facts.add_argument("--add-bos", action=argparse.BooleanOptionalAction, default=None,
                       help="whether the tokenizer adds BOS (turns on missing-bos)")

    r = sub.add_parser("rules", help="list the rules")
    r.add_argument("--format", choices=("text", "markdown", "json"), default="text")

    one = sub.add_parser("rule", help="explain one rule")
    one.add_argument("rule", metavar="CODE|NAME")

    s = sub.add_parser("show", help="show one row: what is trained, masked, padding, hidden")
    s.add_argument("path", metavar="PATH", help="a parquet, arrow, jsonl file or dataset folder")
    s.add_argument("--row", type=int, required=True, metavar="N", help="the row index (from 0)")
    s.add_argument("--tokenizer", metavar="DIR", help="a local tokenizer folder (decodes tokens)")
    s.add_argument("--model", metavar="DIR", help="a local model folder (for its vocab size)")
    s.add_argument("--format", choices=("text", "html"), default="text")
    s.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    for flag in ("pad-id", "bos-id", "eos-id", "vocab-size", "max-length", "ignore-index"):
        s.add_argument(f"--{flag}", type=int, metavar="N")
    s.add_argument("--label-shift", choices=("model", "dataset"))
    s.add_argument("--add-bos", action=argparse.BooleanOptionalAction, default=None)
    return p


def _check(args: argparse.Namespace, out: Console) -> int:
    from .api import check
    from .report import Report, render_github
    from .tokenizer import load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else None
    facts = {name: getattr(args, name) for name in
             ("pad_id", "bos_id", "eos_id", "vocab_size", "max_length", "ignore_index",
              "label_shift", "add_bos")}
    reports = [
        check(path, tokenizer, model=args.model, select=args.select, ignore=args.ignore,
              max_examples=args.max_examples,
              **{k: v for k, v in facts.items() if v is not None})
        for path in args.paths
    ]
    report = Report([s for r in reports for s in r.sources])
    if args.format == "json":
        print(report.to_json())
    elif args.format == "github":
        if report.findings:
            print(render_github(report))
    else:
        out.print(report)  # coloured strips on a terminal, bracketed states when piped
    failed = report.failed(args.fail_on)
    return EXIT_FINDINGS if failed and not args.exit_zero else EXIT_CLEAN


def _rules(args: argparse.Namespace, out: Console) -> int:
    from . import pages
    from .registry import all_rules

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
    from . import pages
    from .registry import get_rule

    text = pages.read_page(get_rule(args.rule))
    if out.is_terminal:
        from rich.markdown import Markdown

        out.print(Markdown(text))
    else:
        print(text, end="")
    return EXIT_CLEAN


def _show(args: argparse.Namespace, out: Console) -> int:
    from pathlib import Path

    from .show import WIDTH, show

    facts = {name: getattr(args, name) for name in
             ("pad_id", "bos_id", "eos_id", "vocab_size", "max_length", "ignore_index",
              "label_shift", "add_bos")}
    row = show(args.path, row=args.row, tokenizer=args.tokenizer, model=args.model,
               **{k: v for k, v in facts.items() if v is not None})
    if args.output is None and args.format == "text":
        color = out.is_terminal and not out.no_color
        out.print(row.render(color=color, width=out.width if out.is_terminal else WIDTH))
        return EXIT_CLEAN
    text = row.to_html() if args.format == "html" else row.render().plain
    if args.output is None:
        print(text, end="")
        return EXIT_CLEAN
    target = Path(args.output)
    if target.exists() and target.resolve() == Path(args.path).resolve():
        raise LabelLintError(f"{target}: is the data being shown; write elsewhere")
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as e:
        raise LabelLintError(f"{target}: cannot write it ({e.strerror or e})") from None
    return EXIT_CLEAN


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = Console(highlight=False, markup=False, soft_wrap=True)
    command = {"check": _check, "rules": _rules, "rule": _rule, "show": _show}[args.command]
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
