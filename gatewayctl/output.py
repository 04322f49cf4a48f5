"""Terminal output conventions: colour only on a terminal and never with a non-empty NO_COLOR
(no-color.org: an empty NO_COLOR does not count)."""

from __future__ import annotations

import os
import sys
from typing import TextIO

_CODES = {"red": "31", "green": "32", "yellow": "33", "cyan": "36", "bold": "1", "dim": "2"}


def use_colour(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return hasattr(stream, "isatty") and stream.isatty()


def paint(text: str, colour: str, enabled: bool) -> str:
    return f"\033[{_CODES[colour]}m{text}\033[0m" if enabled else text
