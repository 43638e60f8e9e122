"""Checks of the keyword arguments every entry point shares, run before any data is read."""

from __future__ import annotations

from typing import Any

from .errors import LabelLintError

# Token ids and counts are compared as int64: a value past that range could never match a token,
# and numpy would compare it as a float.
ID_LIMIT = 2**63


def describe(value: Any) -> str:
    """A value for a message: its repr when short, else its type."""
    text = repr(value)
    return text if len(text) <= 40 else f"a {type(value).__name__}"


def whole_number(value: Any, what: str, *, minimum: int = 0) -> int:
    """`value` as an int of at least `minimum` (a bool is not a number here)."""
    import numpy as np

    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum \
            or value >= ID_LIMIT:
        raise LabelLintError(f"{what} must be a whole number of {minimum} or more, "
                             f"not {describe(value)}")
    return int(value)


def source_name(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise LabelLintError(f"name must be a string naming the source, not {describe(value)}")
    return value


def callback(value: Any, what: str) -> Any:
    if value is not None and not callable(value):
        raise LabelLintError(f"{what} must be a function or None, not {describe(value)}")
    return value
