"""How durations are shown in plans ("30s", "10m", "1h", "250ms")."""

from __future__ import annotations


def format_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms / 1000:g}s" if ms >= 1000 else f"{ms}ms"
