"""The `labellint` pytest fixture: check a collator's batches in a training repo's own tests.

Installed with labellint (a `pytest11` entry point), so any repo that has labellint installed
gets the fixture with no configuration; it reads the repo's `[tool.labellint]` table:

```python
def test_collator(labellint, tokenizer):
    batch = my_collator(rows)
    labellint.assert_clean(batch, tokenizer=tokenizer)   # fails with the text report
    report = labellint.check(batch, tokenizer=tokenizer)  # or inspect the Report

@pytest.mark.labellint(ignore=["LL403"], fail_on="error")  # this test's own settings
def test_packed(labellint, tokenizer): ...
```

pytest loads this module in every run of every repo that has labellint installed, so it imports
only pytest here; the checking code (numpy, and transformers for a tokenizer folder) is imported
when a test first uses the fixture.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import pytest

if TYPE_CHECKING:
    from ..config import Config
    from ..text_report import Report

GUTTER = 4  # pytest prints an exception's message with "E   " before each line


class DataCheckFailed(AssertionError):
    """`assert_clean` found problems; the message is labellint's text report.

    An AssertionError, so pytest counts the test as failed (not errored), whether or not
    assertion rewriting applies to the test module.
    """


# pytest's one-line summary starts with the exception's qualified name: keep it short.
DataCheckFailed.__module__ = "labellint"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A DataCheckFailed's line in pytest's short summary opens with the rule codes found.

    The summary line is cut to the terminal's width after the test's id; opening with the
    exception's name and "labellint found N problems" left no room for what was found.
    """
    report = yield
    crash = getattr(report.longrepr, "reprcrash", None)
    if call.excinfo is not None and isinstance(call.excinfo.value, DataCheckFailed) and crash:
        crash.message = call.excinfo.value.args[0].splitlines()[0]
    return report


class LabelLint:
    """The `labellint` fixture: `check` and `assert_clean` under the repo's [tool.labellint].

    Arguments given to a call override the table: `select` replaces its selection, `ignore`
    adds to its ignores, `options` and `columns` are merged over its own (per rule and per
    column), facts and the other settings replace its values.
    """

    def __init__(self, config: Config, *, color: bool = False, width: int | None = None,
                 marked: dict[str, Any] | None = None) -> None:
        self.config = config
        self.color = color
        self.width = width
        # A test's @pytest.mark.labellint(...) settings, laid over the table as a call's are,
        # and under the call's own.
        self.marked = dict(marked or {})
        self._tokenizers: dict[str, Any] = {}

    def marked_with(self, settings: dict[str, Any]) -> LabelLint:
        """This fixture under a test's marker settings (the loaded tokenizers shared)."""
        out = LabelLint(self.config, color=self.color, width=self.width, marked=settings)
        out._tokenizers = self._tokenizers
        return out

    def check(self, source: Any, tokenizer: Any = None, *,
              select: Iterable[str] | None = None, ignore: Iterable[str] | None = None,
              **kwargs: Any) -> Report:
        """`labellint.check(source, ...)` under the repo's settings; returns the Report.

        source: anything `labellint.check` takes: a collator's batch, a list of rows, a
            Dataset, a DataLoader, a path.
        tokenizer: a tokenizer or a local folder; default: the table's `tokenizer`.
        select: rules to run, replacing the table's `select` (a test that names its rules
            means those).
        ignore: rules to leave out, in addition to the table's `ignore` (and its
            per-path-ignores when `source` is a path).
        kwargs: any other `check` argument (model, options, columns, max_examples,
            missing_labels, name) and facts (pad_id, eos_id, max_length, ...).
        """
        __tracebackhide__ = True
        from ..errors import LabelLintError
        from ..plan import Plan

        try:
            arguments = self._arguments(source, tokenizer, select, ignore, kwargs)
            run = {k: arguments.pop(k) for k in ("name", "progress") if k in arguments}
            return Plan(config=self.config, **arguments).run(source, **run)
        except LabelLintError as e:
            # One line from the test's own frame, not a traceback through labellint's modules.
            raise LabelLintError(str(e)) from None

    def assert_clean(self, source: Any, tokenizer: Any = None, *, fail_on: str | None = None,
                     select: Iterable[str] | None = None, ignore: Iterable[str] | None = None,
                     **kwargs: Any) -> Report:
        """Fail the test, with the text report as its message, if `source` has problems.

        fail_on: "warning" (any finding fails) or "error" (only errors fail); default: the
            table's `fail-on`, else "warning". Returns the Report when clean enough, so that a
            test can go on to inspect warnings it allowed.
        The other arguments are those of `check`: `select` replaces the table's selection,
        `ignore` adds to the table's ignores.

        A bad argument (an unknown rule, a bad fail_on) raises LabelLintError, not a failure
        that would read as a finding in the data.
        """
        __tracebackhide__ = True
        from ..errors import LabelLintError
        from ..report import FAIL_ON

        if fail_on is None:
            fail_on = self.marked.get("fail_on", self.config.get("fail_on", "warning"))
        if fail_on not in FAIL_ON:
            raise LabelLintError(f"fail_on must be one of {', '.join(FAIL_ON)}, not {fail_on!r}")
        report = self.check(source, tokenizer, select=select, ignore=ignore, **kwargs)
        if report.failed(fail_on):
            raise DataCheckFailed(f"{_headline(report)}\n{self._render(report)}")
        return report

    def _arguments(self, source: Any, tokenizer: Any, select: Iterable[str] | None,
                   ignore: Iterable[str] | None, given: dict[str, Any]) -> dict[str, Any]:
        """The table's check() arguments with the marker's, then the call's, laid over them."""
        marked = {k: v for k, v in self.marked.items() if k != "fail_on"}
        marked_select = marked.pop("select", None)
        select = marked_select if select is None else select
        if "ignore" in marked:  # each validated as a list first: a string would splat
            from ..catalog import selector_list

            ignore = [*selector_list(marked.pop("ignore"), "the marker's ignore"),
                      *(() if ignore is None else selector_list(ignore, "ignore"))]
        tokenizer = marked.pop("tokenizer", None) if tokenizer is None else tokenizer
        given = {**marked, **given}
        arguments = self.config.check_kwargs(select=select, ignore=ignore, **given)
        if isinstance(source, (str, os.PathLike)):
            arguments["ignore"] += self.config.ignores_for(source)
        if tokenizer is not None:
            arguments["tokenizer"] = tokenizer
        if isinstance(arguments.get("tokenizer"), (str, os.PathLike)):
            arguments["tokenizer"] = self._tokenizer(arguments["tokenizer"])
        return arguments

    def _tokenizer(self, path: str | os.PathLike) -> Any:
        """A tokenizer folder loaded once per test session, not once per call."""
        from ..hf_facts import load_tokenizer

        key = str(Path(path).resolve())
        if key not in self._tokenizers:
            self._tokenizers[key] = load_tokenizer(path)
        return self._tokenizers[key]

    def _render(self, report: Report) -> str:
        if not self.color:
            return report.render().plain
        from ..printable import WIDTH

        return report.to_ansi(max((self.width or WIDTH) - GUTTER, 40))


def _headline(report: Report) -> str:
    """The message's first line, the one test summaries show: what was found, codes first."""
    found = report.findings
    names = ", ".join(dict.fromkeys(f"{f.code} {f.name}" for f in found))
    return f"{names} (labellint found {len(found)} problem{'s' * (len(found) != 1)})"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "labellint(**settings): the labellint fixture's settings for this test "
        "(select, ignore, fail_on, facts such as max_length, any check() argument), over "
        "[tool.labellint] and under a call's own arguments")


@pytest.fixture(scope="session")
def _labellint_by_folder() -> dict[Path, LabelLint]:
    return {}


@pytest.fixture
def labellint(request: pytest.FixtureRequest,
              _labellint_by_folder: dict[Path, LabelLint]) -> LabelLint:
    """labellint under the [tool.labellint] nearest the test file: `labellint.assert_clean(batch,
    tokenizer=tok)` fails the test with the text report; `labellint.check(...)` returns it.

    The table is found from the test file's folder upwards, as `labellint check` finds it from
    the working folder, so each project of a monorepo gets its own; it is read once per folder
    and session. A test's `@pytest.mark.labellint(...)` settings, then a call's arguments,
    override the table: `select` replaces its selection, `ignore` adds to its ignores. Token
    strips are coloured when pytest's output has colour.
    """
    __tracebackhide__ = True
    from ..config import load_config
    from ..errors import LabelLintError

    folder = Path(request.path).parent
    if folder not in _labellint_by_folder:
        try:
            config = load_config(start=folder)
        except LabelLintError as e:
            raise LabelLintError(str(e)) from None
        try:
            writer = request.config.get_terminal_writer()
            style = dict(color=writer.hasmarkup, width=writer.fullwidth)
        except AssertionError:  # no terminal reporter (-p no:terminal): plain text
            style = {}
        _labellint_by_folder[folder] = LabelLint(config, **style)
    marker = request.node.get_closest_marker("labellint")
    if marker is None:
        return _labellint_by_folder[folder]
    if marker.args:
        raise LabelLintError("@pytest.mark.labellint takes settings by name, such as "
                             "ignore=['LL403'], not positional arguments")
    return _labellint_by_folder[folder].marked_with(marker.kwargs)
