"""Scaffold a built-in rule: its page skeleton in rules/, its predicate stub in a family module.

    python scripts/add_rule.py LL110 some-bad-pattern --family labels

Writes rules/LL110-some-bad-pattern.md and appends a stub to labellint/rules/labels.py; refuses a
code or name already taken, a family module that does not exist, and an existing page. Then
follow CONTRIBUTING.md: fill in the predicate, the page's text and examples, regenerate the index.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

CODE = re.compile(r"^LL\d{3}$")
NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")

PAGE = """# {code} {name}

## What it does
TODO: what the rule finds, in one or two sentences.

## Why is this bad?
TODO: what training learns from it, with the producing code that makes the mistake.

## Example
```python
# expect: {code}
facts = dict(pad_id=0, bos_id=1, eos_id=2)
batch = {{
    "input_ids": [[1, 15, 16, 2]],
    "labels":    [[-100, 15, 16, 2]],  # TODO: plant the bad pattern
}}
```

## Use instead
```python
facts = dict(pad_id=0, bos_id=1, eos_id=2)
batch = {{
    "input_ids": [[1, 15, 16, 2]],
    "labels":    [[-100, 15, 16, 2]],
}}
```

## Options
None.

## References
- TODO: an issue thread or documentation page where this mistake is seen.
"""

STUB = '''

@rule(
    "{code}", "{name}", severity="warning", per="row",
    message="{{rows}} rows TODO ({{pct}}% of rows)",
    fix="TODO: what to change in the producing code",
)
def {func}(b: Batch):
    """TODO: one line saying what the bad pattern is."""
    return b.supervised_per_row < 0  # TODO: a row mask (per="row") or a token mask (per="token")
'''


def taken(root: Path) -> set[str]:
    """Every code and name the existing pages use: codes are never reused."""
    found = set()
    for page in (root / "rules").glob("LL*.md"):
        code, _, name = page.stem.partition("-")
        found |= {code, name}
    return found


def scaffold(root: Path, code: str, name: str, family: str) -> list[Path]:
    if not CODE.match(code):
        raise SystemExit(f"add_rule: {code!r} is not a code like LL110")
    if not NAME.match(name):
        raise SystemExit(f"add_rule: {name!r} is not a kebab-case name like labels-on-padding")
    module = root / "labellint" / "rules" / f"{family}.py"
    if not module.is_file():
        raise SystemExit(f"add_rule: no rule family {family!r} ({module} does not exist)")
    used = taken(root) & {code, name}
    if used:
        raise SystemExit(f"add_rule: {', '.join(sorted(used))} already taken")
    page = root / "rules" / f"{code}-{name}.md"
    page.write_text(PAGE.format(code=code, name=name))
    with module.open("a") as f:
        f.write(STUB.format(code=code, name=name, func=name.replace("-", "_")))
    return [page, module]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("code")
    p.add_argument("name")
    p.add_argument("--family", required=True, help="the module in labellint/rules/, e.g. labels")
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = p.parse_args(argv)
    for path in scaffold(args.root, args.code, args.name, args.family):
        print(f"wrote {path}")
    print("next: CONTRIBUTING.md, 'Adding a built-in rule' (predicate, page, index, tests)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
