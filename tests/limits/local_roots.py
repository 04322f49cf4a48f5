"""Roots and state for the tests of `gatewayctl up` in global limits scope (tests/limits and
tests/cache): the quickstart example with `limits.scope: global` and one default policy, and a
state folder that `down` clears after the test."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from gatewayctl.local.gateway import down
from gatewayctl.local.state import StateDir
from tests.conftest import REPO

GLOBAL_LIMITS = "  limits: {scope: global, redis: {address: redis.ai-gateway.svc:6379}}\n"
_IMAGE = "  image: envoyproxy/envoy:v1.40.0\n"


def global_quickstart(dest: Path, policy: str, policy_yaml: str) -> Path:
    """`dest/root`: the quickstart with global limits, `policy` (defined by `policy_yaml`, a
    YAML document appended to gateway.yaml) applying to every route."""
    root = dest / "root"
    shutil.copytree(REPO / "examples" / "quickstart", root)
    gateway = root / "gateway.yaml"
    text = gateway.read_text()
    assert _IMAGE in text
    gateway.write_text(
        text.replace(_IMAGE, f"{_IMAGE}  defaultPolicies: [{policy}]\n{GLOBAL_LIMITS}")
        + policy_yaml)
    return root


@contextlib.contextmanager
def local_state(path: Path) -> Iterator[StateDir]:
    """A state folder for `up`, named by GATEWAYCTL_STATE_DIR meanwhile; `down` on exit."""
    state = StateDir(path)
    old = os.environ.get("GATEWAYCTL_STATE_DIR")
    os.environ["GATEWAYCTL_STATE_DIR"] = str(state.path)
    try:
        yield state
    finally:
        down(state_dir=state.path)
        if old is None:
            del os.environ["GATEWAYCTL_STATE_DIR"]
        else:
            os.environ["GATEWAYCTL_STATE_DIR"] = old
