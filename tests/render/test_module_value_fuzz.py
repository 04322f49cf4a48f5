"""The value library (module/gw_value.h) under a seeded random harness
(tests/render/module/fuzz_value.c) built with -fsanitize=address,undefined: random and mutated
bodies through decode, encode, mutation, guard text, redaction and usage (whole and in random
chunks), some with a small arena bound; no input reads or writes out of bounds, leaks or hits
undefined behaviour (any sanitizer report fails the run). A few seconds in all."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gatewayctl.render.envoy.dynamic_module import CFLAGS, VALUE_SOURCES, source_files

HARNESS = Path(__file__).resolve().parent / "module" / "fuzz_value.c"
SEEDS = (1, 2, 3)
ITERATIONS = 1500

pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler"
)


def _build(tmp_path: Path, replaced: dict[str, bytes] | None = None) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for name, content in {**source_files(), **(replaced or {})}.items():
        (src / name).write_bytes(content)
    out = tmp_path / "fuzz_value"
    flags = [f for f in CFLAGS if f not in ("-shared", "-fPIC", "-O2")]
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc is not None
    subprocess.run(
        [cc, *flags, "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
         "-fno-omit-frame-pointer", "-I", str(src), "-o", str(out), str(HARNESS),
         *(str(src / name) for name in VALUE_SOURCES), "-lm"],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return out


ENV = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
       "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}  # fmt: skip


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
