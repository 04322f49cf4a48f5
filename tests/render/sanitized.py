"""Builds of the module's C under the sanitizers, for the fuzz harnesses (test_module_fuzz.py,
test_module_value_fuzz.py): the product's warnings and hardening flags, plus address and
undefined-behaviour checking that stops at the first report."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from gatewayctl.render.envoy.dynamic_module import CFLAGS, source_files

# The sanitizers' settings for running a harness: leaks reported, the first UB report fatal.
ENV = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
       "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}  # fmt: skip


def compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc")


def build(tmp_path: Path, harness: Path, sources: Iterable[str], name: str,
          replaced: dict[str, bytes] | None = None) -> Path:
    """The harness linked with the module's `sources` (some of them `replaced`), as `name`."""
    src = tmp_path / "src"
    src.mkdir()
    for file, content in {**source_files(), **(replaced or {})}.items():
        (src / file).write_bytes(content)
    out = tmp_path / name
    flags = [f for f in CFLAGS if f not in ("-shared", "-fPIC", "-O2")]
    cc = compiler()
    assert cc is not None
    subprocess.run(
        [cc, *flags, "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
         "-fno-omit-frame-pointer", "-I", str(src), "-o", str(out), str(harness),
         *(str(src / file) for file in sources), "-lm"],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return out
