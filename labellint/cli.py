"""labellint check | rules | rule CODE | loss: exit 0 clean, 1 findings, 2 errors (as ruff)."""

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

    lo = sub.add_parser("loss", help="recompute a model's loss on a dataset and compare")
    lo.add_argument("--model", required=True, metavar="DIR", help="a local model folder")
    lo.add_argument("--data", required=True, metavar="PATH",
                    help="parquet, arrow, jsonl or a save_to_disk folder")
    lo.add_argument("--tokenizer", metavar="DIR", help="a local tokenizer folder (pad id)")
    lo.add_argument("--batch-size", type=int, default=8, metavar="N")
    lo.add_argument("--accumulation", type=int, default=1, metavar="K",
                    help="micro-batches per optimizer step")
    lo.add_argument("--reported", type=float, metavar="LOSS",
                    help="the loss your training logged for the first step "
                         "(default: check the model's own loss)")
    lo.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    lo.add_argument("--at-init", action="store_true", help="the model is freshly initialised")
    lo.add_argument("--pad-id", type=int, metavar="N")
    lo.add_argument("--ignore-index", type=int, default=-100, metavar="N")
    lo.add_argument("--label-shift", choices=("model", "dataset"), default="model")
    lo.add_argument("--trust-remote-code", action="store_true",
                    help="run the model folder's own code (off unless asked)")
    lo.add_argument("--select", type=_list, metavar="RULES", help="codes, prefixes or names")
    lo.add_argument("--ignore", type=_list, metavar="RULES", help="codes, prefixes or names")
    lo.add_argument("--format", choices=("text", "json"), default="text")
    lo.add_argument("--exit-zero", action="store_true", help="exit 0 even with findings")
    lo.add_argument("--fail-on", choices=("warning", "error"), default="warning")
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
        out.print(report.render())
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


def _loss(args: argparse.Namespace, out: Console) -> int:
    from .loss import cli_check_loss

    report = cli_check_loss(args)
    if args.format == "json":
        print(report.to_json())
    else:
        out.print(report.render())
    failed = report.failed(args.fail_on)
    return EXIT_FINDINGS if failed and not args.exit_zero else EXIT_CLEAN


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = Console(highlight=False, markup=False, soft_wrap=True)
    command = {"check": _check, "rules": _rules, "rule": _rule, "loss": _loss}[args.command]
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
