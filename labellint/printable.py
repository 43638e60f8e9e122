"""Printable: what draws itself as rich Text prints plain, or coloured on a terminal."""

from __future__ import annotations

import io
import os
import sys
from typing import Any, Iterable

from rich.text import Text

WIDTH = 100   # where drawings fold when the text is not for a terminal
SEVERITY_STYLE = {"error": "bold red", "warning": "yellow"}


class Printable:
    """`print(x)` and rich printing of something drawn by `render(color=, width=)`: coloured on
    a terminal (unless NO_COLOR), plain text otherwise."""

    def render(self, *, color: bool = False, width: int = WIDTH) -> Text:
        raise NotImplementedError

    def __str__(self) -> str:
        if not (sys.stdout.isatty() and "NO_COLOR" not in os.environ):
            return self.render().plain
        return self.to_ansi()

    def to_ansi(self, width: int | None = None) -> str:
        """The coloured drawing as text with ANSI codes, `width` columns wide (default: the
        terminal's)."""
        from rich.console import Console

        buffer = io.StringIO()
        console = Console(file=buffer, width=width, force_terminal=True, soft_wrap=True,
                          highlight=False)
        console.print(self.render(color=True, width=console.width), end="")
        return buffer.getvalue()

    def __rich_console__(self, console: Any, options: Any) -> Iterable[Text]:
        color = console.color_system is not None and not console.no_color
        yield self.render(color=color, width=options.max_width if console.is_terminal else WIDTH)
