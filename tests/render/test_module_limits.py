"""The module's local limits (module/gw_limits.h) alone, built with the sanitizers
(tests/render/module/limits_driver.c): the LRU of consumers, several limits consumed slowest
first with the refusing one stopping the rest, a charge refused whole, invalid configs
refused, four threads admitting exactly a by-route limit's 1,000 through shared buckets
while 64 consumers churn through an LRU of 8 (address and undefined-behaviour checks on every
drop and remake), and the registry that keeps counts across configs: a new config adopts the
unchanged limits of the old (exhausted stays exhausted once the old is freed), a changed limit,
the same limit on another route and a limit removed then added back start full, a smaller
LRU capacity in the new config drops the least recently used consumers at adoption, and 50
reloads leave the live buckets bounded and none once every config is freed (leak checks)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.render import sanitized

DRIVER = Path(__file__).resolve().parent / "module" / "limits_driver.c"

pytestmark = pytest.mark.skipif(sanitized.compiler() is None, reason="no C compiler")


def test_the_limits_alone_under_sanitizers(tmp_path: Path) -> None:
    binary = sanitized.build(tmp_path, DRIVER, ("gw_limits.c", "gw_json.c"), "limits_driver")
    done = subprocess.run([str(binary)], capture_output=True, text=True, timeout=300,
                          env=sanitized.ENV, check=False)
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    assert "runtime error" not in done.stderr and "Sanitizer" not in done.stderr, done.stderr
    values = dict(line.split() for line in done.stdout.splitlines())
    assert values == {"lru": "1", "order": "1", "charge": "1", "wait": "1", "refused": "5",
                      "threads_admitted": "1000", "reload": "1", "capacity": "1",
                      "reloads_most": "7",
                      "live_after": "0"}
