"""The value library (module/gw_value.h) under a seeded random harness
(tests/render/module/fuzz_value.c) built with -fsanitize=address,undefined: random and mutated
bodies through decode, encode, mutation, guard text, redaction and usage (whole and in random
chunks), some with a small arena bound; no input reads or writes out of bounds, leaks or hits
undefined behaviour (any sanitizer report fails the run). A few seconds in all."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gatewayctl.render.envoy.dynamic_module import VALUE_SOURCES, source_files
from tests.render import sanitized

HARNESS = Path(__file__).resolve().parent / "module" / "fuzz_value.c"
SEEDS = (1, 2, 3)
ITERATIONS = 1500

pytestmark = pytest.mark.skipif(
    sanitized.compiler() is None, reason="no C compiler"
)


def _build(tmp_path: Path, replaced: dict[str, bytes] | None = None) -> Path:
    return sanitized.build(tmp_path, HARNESS, VALUE_SOURCES, "fuzz_value", replaced)


ENV = sanitized.ENV


def test_random_bodies_under_sanitizers(tmp_path: Path) -> None:
    binary = _build(tmp_path)
    totals: dict[str, int] = {}
    for seed in SEEDS:
        done = subprocess.run([str(binary), str(seed), str(ITERATIONS)], capture_output=True,
                              text=True, timeout=600, env=ENV, check=False)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "runtime error" not in done.stderr and "Sanitizer" not in done.stderr, done.stderr
        for line in done.stdout.splitlines():
            name, value = line.split()
            totals[name] = totals.get(name, 0) + int(value)
    # every path was exercised
    assert totals["decoded"] > 300 and totals["refused"] > 300, totals
    for name in ("encoded", "redacted", "guarded", "usage_found", "streamed", "arena_failed"):
        assert totals[name] > 0, (name, totals)


def test_the_harness_catches_a_read_past_the_body(tmp_path: Path) -> None:
    """The sanitizers are on: a decoder that reads one byte past its input is caught."""
    source = source_files()["gw_value.c"]
    broken = source.replace(b"static int at(const reader *r, size_t pos) { return pos < r->n",
                            b"static int at(const reader *r, size_t pos) { return pos <= r->n")
    assert broken != source
    binary = _build(tmp_path, {"gw_value.c": broken})
    done = subprocess.run([str(binary), "1", "300"], capture_output=True, text=True,
                          timeout=600, env=ENV, check=False)  # fmt: skip
    assert done.returncode != 0
    assert "AddressSanitizer" in done.stderr
