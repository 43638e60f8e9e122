"""The README's layout section is labellint's table of contents: it names every module, and its
order is the import order, each module importing only modules listed below it."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "labellint"


def _module(token: str, package: str | None = None) -> str:
    """`show.py` -> labellint.show, `loss/` -> labellint.loss, `loss/stats.py` -> loss.stats."""
    parts = [p for p in token.removesuffix(".py").split("/") if p and p != "__init__"]
    return ".".join(["labellint", *([package] if package else []), *parts])


def _layout_entries() -> list[set[str]]:
    """The modules each entry of the layout block names, top to bottom."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    lines = block.splitlines()
    start = lines.index("labellint/") + 1
    entries: list[set[str]] = []
    package = None
    for line in lines[start:]:
        if not line.startswith("  "):
            break  # the next top-level folder (tests/, examples/)
        words = line
        if line[2] != " ":  # a new entry: the names before its description
            head = re.match(r"  (\S+(?: \S+\.py)*)", line)
            names = head.group(1).split()
            entries.append({_module(n) for n in names})
            package = names[0].rstrip("/") if names[0].endswith("/") else None
            words = line[head.end():]
        # "show.py ...; html.py: ..." names a sibling in the entry (in a package's: a submodule)
        entries[-1] |= {_module(n, package) for n in re.findall(r"\b([\w/]+\.py)\b", words)}
    return entries


def _modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        parts = p.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every labellint module `name` imports, wherever the import statement sits."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom):
            base = name.split(".") if is_package else name.split(".")[:-1]
            if node.level:
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for a in node.names:
                sub = f"{module}.{a.name}"
                found.add(sub if sub in modules else module)
    return {m for m in found if m in modules and m != name}


def _entry_of(module: str, entries: list[set[str]]) -> int | None:
    """The entry naming the module; a package's entry holds the submodules no entry names."""
    for i, names in enumerate(entries):
        if module in names:
            return i
    for i, names in enumerate(entries):
        if any(module.startswith(n + ".") and (PACKAGE / n.split(".")[1]).is_dir()
               for n in names if n.count(".") == 1):
            return i
    return None


def test_the_layout_names_every_module_and_no_other():
    entries = _layout_entries()
    modules = _modules()
    unnamed = sorted(m for m in modules if _entry_of(m, entries) is None
                     and not m.endswith("__main__"))
    assert not unnamed, f"README layout does not name: {unnamed}"
    named = {n for names in entries for n in names}
    missing = sorted(n for n in named if n not in modules)
    assert not missing, f"README layout names modules that do not exist: {missing}"


def test_every_import_points_down_the_layout():
    entries = _layout_entries()
    modules = _modules()
    upward = []
    for name, path in modules.items():
        here = _entry_of(name, entries)
        if here is None:
            continue  # the test above names it
        for target in _imports(name, path, modules):
            there = _entry_of(target, entries)
            if there is not None and there < here:
                upward.append(f"{name} imports {target}, listed above it")
    assert not upward, "\n".join(sorted(upward))
