"""Durations: the one grammar of manifests (`timeout: 30s`) and command-line flags
(`--timeout 5m`, `--latency 150ms`), and the one way durations are printed.

A duration is one or more terms of a decimal number and a unit, ms, s, m or h, written
without spaces, as Go's `time.ParseDuration` and Prometheus read them: `500ms`, `1.5s`, `10m`,
`1h30m`. A plain number has no unit and is refused, unless the caller says which unit it
means (a flag documented in seconds). Bounds (at most 600 s, say) are the caller's.
"""

from __future__ import annotations

import re

UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_TERM = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_DURATION = re.compile(DURATION_PATTERN)
_NUMBER = re.compile(r"^[0-9]+(\.[0-9]+)?$")


class DurationError(ValueError):
    """Text that is not a duration; the message says what would be."""


def parse_duration_ms(text: str, *, unitless: str | None = None) -> float:
    """Milliseconds in `text` ("1h30m" -> 5400000.0). `unitless`: the unit a plain number is
    in ("90" with "s" -> 90000.0); None refuses plain numbers."""
    raw = text.strip()
    if unitless is not None and _NUMBER.match(raw):
        return float(raw) * UNITS_MS[unitless]
    if not _DURATION.match(raw):
        raise DurationError(
            f'"{text}" is not a duration; use a number and ms, s, m or h (e.g. 30s)')
    return sum(float(number) * UNITS_MS[unit] for number, unit in _TERM.findall(raw))


def format_duration_ms(ms: int) -> str:
    """The largest whole unit: 600000 -> "10m", 1500 -> "1500ms"."""
    for unit in ("h", "m", "s"):
        size = UNITS_MS[unit]
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
