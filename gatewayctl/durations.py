"""Durations: the one grammar of manifests (`timeout: 30s`) and command-line flags
(`--timeout 5m`, `--latency 150ms`), and the one way durations are printed.

A duration is one or more terms of a decimal number and a unit, written without spaces, as
Go's `time.ParseDuration` and Prometheus read them: `500ms`, `1.5s`, `10m`, `1h30m`. Units:
ms, s, m, h, d (24 h) and w (7 d); each use names the ones it takes (manifests: ms to h). A
plain number has no unit and is refused, unless the caller says which unit it means (a flag
documented in seconds). Bounds (at most 600 s, say) are the caller's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache

UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
            "w": 604_800_000}
MANIFEST_UNITS = ("ms", "s", "m", "h")
_NUMBER = re.compile(r"^[0-9]+(\.[0-9]+)?$")


def _alternatives(units: Sequence[str]) -> str:
    return "|".join(sorted(units, key=len, reverse=True))  # "ms" before "m"


def duration_pattern(units: Sequence[str] = MANIFEST_UNITS) -> str:
    """The grammar as a regular expression (JSON Schema `pattern`), for these units."""
    return rf"^([0-9]+(\.[0-9]+)?({_alternatives(units)}))+$"


DURATION_PATTERN = duration_pattern()


class DurationError(ValueError):
    """Text that is not a duration; the message says what would be."""


@cache
def _compiled(units: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    return (re.compile(duration_pattern(units)),
            re.compile(rf"([0-9]+(?:\.[0-9]+)?)({_alternatives(units)})"))


def _said(units: Sequence[str]) -> str:
    return ", ".join(units[:-1]) + " or " + units[-1]


def parse_duration_ms(text: str, *, units: Sequence[str] = MANIFEST_UNITS,
                      unitless: str | None = None) -> float:
    """Milliseconds in `text` ("1h30m" -> 5400000.0). `units`: those this use takes.
    `unitless`: the unit a plain number is in ("90" with "s" -> 90000.0); None refuses it."""
    raw = text.strip()
    if unitless is not None and _NUMBER.match(raw):
        return float(raw) * UNITS_MS[unitless]
    whole, term = _compiled(tuple(units))
    if not whole.match(raw):
        raise DurationError(f'"{text}" is not a duration; use a number and {_said(units)} '
                            f"(e.g. 30s)")
    return sum(float(number) * UNITS_MS[unit] for number, unit in term.findall(raw))


def format_duration_ms(ms: int) -> str:
    """The largest whole unit up to hours: 600000 -> "10m", 1500 -> "1500ms"."""
    for unit in ("h", "m", "s"):
        size = UNITS_MS[unit]
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
