"""Short text forms of counts, words, positions: shared by every renderer."""

from __future__ import annotations

import re
from typing import Iterable


def short_count(n: int) -> str:
    """1234567 -> '1.2M'."""
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def counted(count: int, word: str) -> str:
    """(1234, 'row') -> '1,234 rows'; (1, 'row') -> '1 row'."""
    return f"{count:,} {word}{'s' * (count != 1)}"


def ranges(positions: Iterable[int]) -> str:
    """1,2,3,7 -> '1-3, 7'."""
    runs: list[list[int]] = []
    for p in positions:
        if runs and p == runs[-1][1] + 1:
            runs[-1][1] = p
        else:
            runs.append([p, p])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def plural(text: str) -> str:
    """'1 rows' -> '1 row': messages are written for counts, and a count can be one."""
    return re.sub(r"(?<![\d.,])1 (row|token|label|batche|input id|supervised label|target)s\b",
                  lambda m: "1 " + ("batch" if m.group(1) == "batche" else m.group(1)), text)
