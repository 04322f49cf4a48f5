"""validate's deny-pattern check agrees with Envoy: what it accepts, Envoy accepts, and what
Envoy would reject (taking the whole listener with it), it rejects.

Each pattern is rendered into the guarded route of a real gateway configuration and the static
twin is run through `envoy --mode validate`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from gatewayctl.manifests.deny_patterns import MAX_PROGRAM_SIZE, envoy_problem
from gatewayctl.render.envoy import render_envoy
from tests.render import irs
from tests.render.conftest import needs_envoy
from tests.render.harness import validate

pytestmark = [needs_envoy, pytest.mark.envoy]

# A literal of n characters compiles, wrapped, to n + 18 instructions.
WRAP_OVERHEAD = 18

PATTERNS = {
    "guard": irs.GUARD_PATTERN,
    "hostile": irs.HOSTILE_PATTERN,
    "quoted-with-end": r"\Qa.b\E",
    "unterminated-quote": r"\Qfoo",
    "lookbehind": "(?<=secret)code",
    "literal-100k": "a" * 100_000,
    "at-the-limit": "a" * (MAX_PROGRAM_SIZE - WRAP_OVERHEAD),
    "one-over-the-limit": "a" * (MAX_PROGRAM_SIZE - WRAP_OVERHEAD + 1),
    "counted-repetitions": "x{1000}y{1000}z{1000}" * 4,
}


@pytest.mark.parametrize("pattern", PATTERNS.values(), ids=PATTERNS.keys())
def test_validate_agrees_with_envoy(tmp_path: Path, pattern: str) -> None:
    ir = irs.build_ir()
    guarded = ir.route("guarded")
    policy = replace(guarded.policy, deny_patterns=(pattern,))
    routes = tuple(replace(r, policy=policy) if r.name == "guarded" else r for r in ir.routes)
    config = tmp_path / "validate.yaml"
    config.write_text(render_envoy(replace(ir, routes=routes)).files()["validate.yaml"])
    result = validate(config)
    envoy_accepts = result.returncode == 0
    problem = envoy_problem(pattern)
    assert envoy_accepts == (problem is None), (problem, result.stdout[-500:], result.stderr[-500:])
