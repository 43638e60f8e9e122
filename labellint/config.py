"""`[tool.labellint]` in pyproject.toml: the same settings as the command line, kept with the repo.

```toml
[tool.labellint]
select = ["LL1", "LL4"]
ignore = ["few-supervised-tokens"]
tokenizer = "artifacts/tokenizer"        # relative to this pyproject.toml
label-shift = "model"
max-examples = 5
jobs = 4                                 # worker processes; every core by default

[tool.labellint.columns]
input-ids = "tokens"

[tool.labellint.options.LL105]           # a rule's code or name
min-tokens = 4

[tool.labellint.per-path-ignores]        # data files have no comments to suppress in
"data/pretrain/**" = ["missing-eos", "LL402"]
```

Keys are kebab-case (snake_case is accepted too). An unknown key is an error that names it:
a misspelt setting silently ignored would be a check silently not run.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .arguments import ID_LIMIT, describe
from .columns import SOURCE_COLUMNS
from .errors import LabelLintError

FACTS = {"pad-id": int, "bos-id": int, "eos-id": int, "vocab-size": int, "max-length": int,
         "ignore-index": int, "label-shift": str, "add-bos": bool, "assistant-only-loss": bool}
SETTINGS: dict[str, Any] = {
    "select": list, "ignore": list, "tokenizer": str, "model": str, "max-examples": int,
    "fail-on": str, "format": str, "missing-labels": str, "jobs": int,
    "columns": dict, "options": dict, "per-path-ignores": dict, **FACTS,
}
FACT_KEYS = tuple(k.replace("-", "_") for k in FACTS)
PATHS = ("tokenizer", "model")
# Token ids and lengths are compared as int64; counts and lengths start where they make sense.
RANGES = {"pad-id": (0, ID_LIMIT), "bos-id": (0, ID_LIMIT), "eos-id": (0, ID_LIMIT),
          "vocab-size": (1, ID_LIMIT), "max-length": (1, ID_LIMIT),
          "max-examples": (0, ID_LIMIT), "jobs": (1, 4096), "ignore-index": (-ID_LIMIT, ID_LIMIT)}
CHOICES = {"fail-on": ("warning", "error"), "format": ("text", "json", "github"),
           "missing-labels": ("padding", "pad-id", "skip"), "label-shift": ("model", "dataset")}


@dataclass(frozen=True)
class Config:
    """Settings from one pyproject.toml (or none): keys in snake_case, paths made absolute."""

    path: Path | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    per_path_ignores: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def root(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def get(self, key: str, default: Any = None) -> Any:
        return self.settings.get(key, default)

    def check_kwargs(self, *, select: Any = None, ignore: Any = None,
                     options: Mapping[str, Mapping[str, Any]] | None = None,
                     columns: Mapping[str, str] | None = None, **given: Any) -> dict[str, Any]:
        """These settings as `check()` keyword arguments, with a caller's laid over them.

        The one merge, shared by the command line, the pytest fixture and the Trainer callback
        (as ruff lays flags over its table): `select` replaces the table's selection, `ignore`
        adds to its ignores, `options` merge option by option within a rule and `columns`
        column by column, and anything else given (facts, tokenizer, model, ...) replaces.
        Tokenizer and model from the table are paths.
        """
        from .catalog import options_mapping, selector_list

        select = None if select is None else selector_list(select, "select")
        ignore = None if ignore is None else selector_list(ignore, "ignore")
        options = options_mapping(options)
        if columns is not None and not isinstance(columns, Mapping):
            raise LabelLintError("columns must map labellint's column names to yours, e.g. "
                                 f'{{"input_ids": "tokens"}}, not {describe(columns)}')
        get = self.get
        table_options = get("options", {})
        merged_options = {rule: {**table_options.get(rule, {}), **(options or {}).get(rule, {})}
                          for rule in {**table_options, **(options or {})}}
        settings = dict(
            tokenizer=get("tokenizer"), model=get("model"),
            select=get("select") if select is None else list(select),
            ignore=[*get("ignore", []), *(ignore or [])],
            options=merged_options,
            columns={**get("columns", {}), **(columns or {})} or None,
            max_examples=get("max_examples", 5),
            missing_labels=get("missing_labels", "padding"),
            **{k: get(k) for k in (*FACT_KEYS, "jobs") if get(k) is not None})
        return settings | {k: v for k, v in given.items() if v is not None}

    def ignores_for(self, source: str | os.PathLike) -> list[str]:
        """The per-path ignores whose glob matches `source` (relative to the config's folder)."""
        path = Path(source)
        candidates = {path.as_posix(), str(source)}  # a URL as given: Path folds its `//`
        try:
            candidates.add(path.resolve().relative_to(self.root.resolve()).as_posix())
        except (ValueError, OSError, RuntimeError):
            # Outside the project, or unresolvable (a symbolic link loop: RuntimeError before
            # Python 3.13): only the path as given can match; reading it says what is wrong.
            pass
        return [code for pattern, codes in self.per_path_ignores
                if any(_matches(c, pattern) for c in candidates) for code in codes]


def _matches(path: str, pattern: str) -> bool:
    """`pattern` names the source, a folder holding it, or what a source folder holds.

    Sources are files and folders alike: "data/pretrain" and "data/pretrain/*" both cover the
    folder data/pretrain and every file in it. `*` crosses folders, as `**` does.
    """
    pattern = pattern.rstrip("/")
    return any(fnmatch.fnmatchcase(candidate, p)
               for candidate in (path, path.rstrip("/") + "/")
               for p in (pattern, pattern + "/*"))


def find_pyproject(start: Path | None = None) -> Path | None:
    """The nearest pyproject.toml with a [tool.labellint] table, from `start` upwards."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file() and _names_labellint(candidate):
            return candidate
    return None


def _names_labellint(file: Path) -> bool:
    """Whether `file` holds a [tool.labellint] table. Another project's broken pyproject in a
    folder above is none of our business; ours, broken, is an error that names it (a file that
    mentions labellint, as its table or a dependency, is taken to be ours)."""
    try:
        tool = _read(file).get("tool", {})
        if not isinstance(tool, dict):
            raise LabelLintError(f"{file}: [tool] must be a table, not {describe(tool)}")
        return "labellint" in tool
    except LabelLintError:
        try:
            mentions = "labellint" in file.read_text(errors="replace")
        except OSError:
            return False
        if mentions:
            raise
        return False


def load_config(path: str | os.PathLike | None = None, *, start: Path | None = None) -> Config:
    """The settings of `path` (a pyproject.toml, or a TOML file of labellint settings alone),
    or of the nearest pyproject.toml with a [tool.labellint] table; empty if there is none."""
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise LabelLintError(f"{file}: no such config file")
        data = _read(file)
        tool = data.get("tool", {})
        if not isinstance(tool, dict):
            raise LabelLintError(f"{file}: [tool] must be a table, not {describe(tool)}")
        table = tool.get("labellint") if file.name == "pyproject.toml" else \
            tool.get("labellint", data)
        if table is None:
            raise LabelLintError(f"{file}: no [tool.labellint] table")
    else:
        file = find_pyproject(start)
        if file is None:
            return Config()
        table = _read(file)["tool"]["labellint"]
    if not isinstance(table, dict):
        raise LabelLintError(f"{file}: [tool.labellint] must be a table, not {describe(table)}")
    return _parse(table, file)


if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def toml_value(text: str) -> Any:
    """A command-line value read as TOML (4, 0.5, true, ["a", "b"]); a bare word is a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _read(file: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise LabelLintError(f"{file}: not UTF-8 text, as TOML must be ({e.reason} at byte "
                             f"{e.start})") from None
    except OSError as e:
        raise LabelLintError(f"{file}: cannot read it ({e.strerror or e})") from None
    except tomllib.TOMLDecodeError as e:
        raise LabelLintError(f"{file}: not valid TOML ({e})") from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise LabelLintError(f"{file}: not valid TOML here (arrays or tables nested too "
                             "deeply to read)") from None


def _key(key: str) -> str:
    return key.replace("_", "-")


def _parse(table: Mapping[str, Any], file: Path) -> Config:
    where = f"{file}: [tool.labellint]"
    settings: dict[str, Any] = {}
    per_path: tuple[tuple[str, tuple[str, ...]], ...] = ()
    for raw, value in table.items():
        key = _key(raw)
        if key not in SETTINGS:
            raise LabelLintError(f"{where} has no setting {raw!r} "
                                 f"(settings: {', '.join(sorted(SETTINGS))})")
        kind = SETTINGS[key]
        if kind is list:
            value = _rule_names(value, f"{where} {raw}")
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise LabelLintError(f"{where} {raw} must be a {_type_name(kind)}, not {value!r}")
        if key in PATHS:
            if not value.strip():
                raise LabelLintError(f"{where} {raw} must be a folder path, not an empty string")
            value = str((file.parent / value).resolve()) if not Path(value).is_absolute() \
                else value
        elif key in RANGES and not RANGES[key][0] <= value < RANGES[key][1]:
            low, high = RANGES[key]
            raise LabelLintError(f"{where} {raw} must be a whole number from {low} up to "
                                 f"2**63 - 1, not {value!r}" if low >= 0 else
                                 f"{where} {raw} must fit in 64 bits, not {value!r}")
        elif key == "columns":
            value = _columns(value, f"{where}.columns")
        elif key == "options":
            value = _options(value, f"{where}.options")
        elif key == "per-path-ignores":
            per_path = tuple((pattern, tuple(_rule_names(codes, f"{where}.per-path-ignores "
                                                                f"{pattern!r}")))
                             for pattern, codes in value.items())
            continue
        elif key in ("fail-on", "format", "missing-labels", "label-shift") and \
                value not in CHOICES[key]:
            raise LabelLintError(f"{where} {raw} must be one of {', '.join(CHOICES[key])}, "
                                 f"not {value!r}")
        settings[key.replace("-", "_")] = value
    return Config(file, settings, per_path)


def _type_name(kind: type) -> str:
    return {int: "whole number", str: "string", bool: "true or false", dict: "table"}[kind]


def _names(value: Any, where: str) -> list[str]:
    # A string is refused, not taken as one selector: `select = "LL1"` reads as a list to
    # nobody, and the command line's `--select LL1,LL4` has no TOML counterpart to mimic.
    if isinstance(value, str):
        raise LabelLintError(f"{where} must be a list of rule codes or names, not the string "
                             f'{value!r} (write ["{value}"])')
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LabelLintError(f"{where} must be a list of rule codes or names, not "
                             f"{describe(value)}")
    return value


def _rule_names(value: Any, where: str) -> list[str]:
    """Rule selectors, each checked now: a misspelt one would leave a rule silently on."""
    from .catalog import check_selectors

    names = _names(value, where)
    try:
        check_selectors(names)
    except LabelLintError as e:
        raise LabelLintError(f"{where}: {e}") from None
    return names


def _columns(value: Mapping[str, Any], where: str) -> dict[str, str]:
    out = {}
    for raw, theirs in value.items():
        ours = raw.replace("-", "_")
        if ours not in SOURCE_COLUMNS:
            known = ", ".join(c.replace("_", "-") for c in SOURCE_COLUMNS)
            raise LabelLintError(f"{where} has no column {raw!r} (columns: {known})")
        if not isinstance(theirs, str) or not theirs:
            raise LabelLintError(f"{where} {raw} must be a column name, not {describe(theirs)}")
        out[ours] = theirs
    return out


def _options(value: Mapping[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """Options by rule, each checked against the rule now, so that the error names the file."""
    from .catalog import resolve_options

    out = {}
    for rule, opts in value.items():
        if not isinstance(opts, dict):
            raise LabelLintError(f"{where}.{rule} must be a table of options, not "
                                 f"{describe(opts)}")
        out[rule] = {k.replace("-", "_"): v for k, v in opts.items()}
    try:
        resolve_options([], out)
    except LabelLintError as e:
        raise LabelLintError(f"{where}: {e}") from None
    return out
