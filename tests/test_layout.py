"""The package layout held to its rules: every check here reads the package as a whole.

The import graph counts every import a module holds, wherever it sits (module level, inside a
function, under TYPE_CHECKING): a circle held off by a deferred import is still a circle. It
also counts the package a submodule import runs first (`from ..loss.report import X` runs
loss/__init__.py), since that edge closes circles at run time as much as a written import does.
"""

from __future__ import annotations

import ast
import os
import pathlib
import subprocess
import sys

import labellint

PACKAGE = pathlib.Path(labellint.__file__).parent
MAX_LINES = 500
HEAVY = ("torch", "transformers", "datasets")


def modules() -> dict[str, pathlib.Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _targets(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool,
             known: dict[str, pathlib.Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        module = ".".join(base + ([node.module] if node.module else []))
    else:
        module = node.module or ""
    # `from pkg import name` imports the submodule pkg.name when there is one, else pkg itself.
    return [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]


def import_graph(known: dict[str, pathlib.Path] | None = None) -> dict[str, set[str]]:
    """Module -> the package modules it imports (written imports plus the packages they run)."""
    known = modules() if known is None else known
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(node, name, path.name == "__init__.py", known):
                parts = target.split(".")
                # The target and each package above it that the importer is not already inside.
                for i in range(2, len(parts) + 1):
                    up = ".".join(parts[:i])
                    if up in known and up != name and not name.startswith(up + "."):
                        deps.add(up)
        graph[name] = deps
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def describe_circles(graph: dict[str, set[str]], found: list[list[str]]) -> str:
    lines = []
    for component in found:
        lines.append("circle: " + ", ".join(component))
        for m in component:
            lines.append(f"    {m} -> {', '.join(sorted(graph[m] & set(component)))}")
    return "\n".join(lines)


def test_the_graph_sees_every_kind_of_import(tmp_path):
    # The checker itself must fail on what it is meant to catch, or test_no_import_circle proves
    # nothing: a function-level import, a TYPE_CHECKING import, a package run by a submodule import.
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from . import b\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from .a import f\n")
    (pkg / "c.py").write_text("from .sub.leaf import x\n")
    (pkg / "sub" / "__init__.py").write_text("from ..c import y\nfrom . import leaf\n")
    (pkg / "sub" / "leaf.py").write_text("from . import other\n")
    (pkg / "sub" / "other.py").write_text("")
    known = {}
    for path in sorted(pkg.rglob("*.py")):
        parts = path.relative_to(tmp_path).with_suffix("").parts
        known[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = import_graph(known)
    assert graph["pkg.c"] == {"pkg.sub", "pkg.sub.leaf"}
    assert graph["pkg.sub.leaf"] == {"pkg.sub.other"}  # its own package is already running
    assert circles(graph) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.sub"]]


def test_no_import_circle():
    graph = import_graph()
    found = circles(graph)
    assert not found, "import circles among labellint modules:\n" + describe_circles(graph, found)


def importable() -> list[str]:
    """The modules to import: all but __main__, which runs the command line when imported."""
    return [name for name in sorted(modules()) if not name.endswith(".__main__")]


# Run in a child interpreter that has loaded the third-party libraries every module needs but no
# labellint module; it forks once per module, so each import starts from a labellint-free state
# (what a fresh interpreter gives) without paying an interpreter start-up per module.
FORK_EACH = """
import importlib, os, sys
import numpy, pyarrow, rich  # noqa: F401
assert not any(m == "labellint" or m.startswith("labellint.") for m in sys.modules)
children = {}
for name in sys.argv[1:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(name)
            os._exit(0)
        except BaseException as e:
            os.write(write, f"{type(e).__name__}: {e}".encode()[:2000])
            os._exit(1)
    os.close(write)
    children[pid] = (name, read)
for pid, (name, read) in children.items():
    _, status = os.waitpid(pid, 0)
    why = os.read(read, 4096).decode(errors="replace")
    if status:
        print(f"{name}: {why or status}")
"""


def test_every_module_imports_alone_in_a_fresh_interpreter():
    # No module may lean on another having been imported first.
    names = importable()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if hasattr(os, "fork"):
        out = subprocess.run([sys.executable, "-c", FORK_EACH, *names], env=env, text=True,
                             capture_output=True, timeout=300)
        assert out.returncode == 0, out.stderr
        failed = out.stdout.strip()
    else:  # one interpreter per module, launched together
        children = {name: subprocess.Popen([sys.executable, "-c", f"import {name}"], env=env,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                           text=True) for name in names}
        failed = "\n".join(f"{name}: {err.strip().splitlines()[-1]}" for name, child in
                           children.items() if (err := child.communicate(timeout=300)[1])
                           and child.returncode)
    assert not failed, f"modules that fail to import alone:\n{failed}"


def test_the_fresh_import_check_fails_on_an_order_bug(tmp_path):
    # A module that works only once another has been imported: the check must name it.
    pkg = tmp_path / "orderbug"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "first.py").write_text("import orderbug\norderbug.READY = True\n")
    (pkg / "second.py").write_text("import orderbug\nassert orderbug.READY\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    code = FORK_EACH.replace('m == "labellint" or m.startswith("labellint.")', "False")
    out = subprocess.run([sys.executable, "-c", code, "orderbug.first", "orderbug.second"],
                         env=env, text=True, capture_output=True, timeout=60)
    assert out.stdout.strip() == "orderbug.second: AttributeError: module 'orderbug' has no " \
        "attribute 'READY'", out.stderr


def test_every_module_imports_after_all_the_others():
    import importlib

    for name in importable():
        importlib.import_module(name)


def test_no_module_is_over_the_line_limit():
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: " + ", ".join(
        f"{name} ({n})" for name, n in sorted(long.items()))


def docstring_problem(source: str) -> str | None:
    """Why a module's docstring does not open with one line that names one thing, or None."""
    doc = ast.get_docstring(ast.parse(source))
    if not doc or not doc.strip():
        return "no docstring"
    first = doc.strip().split("\n\n")[0]
    if "\n" in first:
        return "first line runs on to a second line"
    if " and " in f" {first} ":
        return f"first line has 'and': {first!r}"
    return None


def test_the_docstring_check_fails_on_what_it_should():
    assert docstring_problem('"""Ragged columns as (values, offsets)."""') is None
    assert docstring_problem('"""One line.\n\nMore, and more."""') is None
    assert docstring_problem("x = 1") == "no docstring"
    assert docstring_problem('"""Rule, the decorator,\nand more."""').startswith("first line runs")
    assert docstring_problem('"""Rules and options."""').startswith("first line has 'and'")


def test_every_module_docstring_opens_with_one_line_without_and():
    bad = {name: why for name, path in modules().items()
           if (why := docstring_problem(path.read_text()))}
    assert not bad, "module docstrings to fix:\n" + "\n".join(
        f"    {name}: {why}" for name, why in sorted(bad.items()))


def test_import_labellint_loads_no_heavy_library():
    code = ("import sys, labellint; "
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "", f"`import labellint` loads {out.strip()}"


def test_public_names_load_on_first_use():
    # The package imports its names lazily: every name in __all__ resolves, `show` stays the
    # function once the submodule of that name has loaded, and nothing heavy loads before.
    code = ("import sys, labellint; "
            "assert not any(m in sys.modules for m in ('numpy', 'pyarrow', 'rich')); "
            "import labellint.show, labellint.fix; "
            "assert callable(labellint.show) and labellint.show.__name__ == 'show'; "
            "assert callable(labellint.fix) and labellint.fix.__name__ == 'fix'; "
            "assert all(getattr(labellint, n) is not None for n in labellint.__all__); "
            "assert set(labellint.__all__) <= set(dir(labellint)); "
            "from labellint import check, Report; print(check.__module__, Report.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["labellint.api", "labellint.text_report"]
