"""Convergence: after `apply`, the plan is empty, on every writing target alike.

Random sequences of manifest mutations (rollout step, state, header and thresholds, limits,
allow lists, timeouts, retries, fallbacks, a required prompt variable, prices) are applied to
the plan fixture root. After each, the root is applied to a target and planned again: no
change may remain, on a `dir:` bundle, on the Kubernetes API fake and on a real local gateway.
On `dir:`, the plan before the apply is empty exactly when the rendered files are identical.
Bounded: a few dozen examples on the fast targets, a handful on the local gateway.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatewayctl.orchestrate import apply_root, compute_plan, desired_state, load_desired_ir
from gatewayctl.plan.model import Plan
from gatewayctl.render.bundle import render_files
from gatewayctl.render.k8s import Provenance
from gatewayctl.targets import parse_target
from gatewayctl.targets.base import ApplyOptions, Target
from gatewayctl.targets.kubernetes.options import KubeOptions
from tests.fakes.kubeapi import KubeAPIServer
from tests.plan.conftest import FIXTURE_ROOT, NAMESPACE

Edit = Callable[[Path, int], None]
EXAMPLES = {"dir": 0, "kubernetes": 0, "local": 0}


def _sub(file: str, pattern: str, repl: str) -> Edit:
    def edit(root: Path, _n: int) -> None:
        path = root / file
        path.write_text(re.sub(pattern, repl, path.read_text(), count=1))
    return edit


def _field(key: str, values: list[str]) -> Edit:
    """Set a Rollout field, adding it on first use and replacing it after."""
    def edit(root: Path, n: int) -> None:
        path = root / "routes.yaml"
        text, line = path.read_text(), f"  {key}: {values[n % len(values)]}\n"
        if f"  {key}:" in text:
            text = re.sub(rf"  {key}: .*\n", line, text, count=1)
        else:
            text = text.replace("  state:", line + "  state:", 1)
        path.write_text(text)
    return edit


def _choice(file: str, pattern: str, values: list[str]) -> Edit:
    def edit(root: Path, n: int) -> None:
        _sub(file, pattern, values[n % len(values)])(root, n)
    return edit


EDITS: dict[str, Edit] = {
    "rollout step": _choice("routes.yaml", r"step: \d+", ["step: 0", "step: 2", "step: 3"]),
    "rollout state": _choice("routes.yaml", r"state: \w+",
                             ["state: paused", "state: aborted", "state: completed"]),
    "canary header": _field("canaryHeader", ["x-a", "x-b"]),
    "thresholds": _field("analysis", ["{metrics: [{name: error-rate, max: 0.05}]}",
                                      "{metrics: [{name: latency-p95, max: 2s}]}"]),
    "pause": _choice("routes.yaml", r"pause: 30m", ["pause: 1h", "pause: 5m"]),
    "rate limit": _choice("policies.yaml", r"requests: \d+, per: \w+",
                          ["requests: 20, per: second", "requests: 1200, per: minute",
                           "requests: 100, per: hour"]),
    "allow list": _choice("policies.yaml", r"allow: \{[^}]*\}",
                          ["allow: {consumers: [search-app]}",
                           "allow: {teams: [search, support]}",
                           "allow: {consumers: [helpdesk], teams: [search]}"]),
    "timeout": _choice("routes.yaml", r"timeout: 120s", ["timeout: 60s", "timeout: 300s"]),
    "retries": _choice("routes.yaml", r"attempts: \d+", ["attempts: 0", "attempts: 3"]),
    "fallback": _choice("routes.yaml", r"fallback: \[gpt-4o-mini\]",
                        ["fallback: []", "fallback: [gpt-4o-mini, gpt-4o-2024-08-06]"]),
    "required variable": _sub(
        "routes.yaml", r"\{\{ product \}\}\.\\nAnswer politely\.\"\n      variables: "
        r"\{product: \{required: true\}\}",
        "{{ product }}.\\\\nAnswer in {{ language }}.\"\n      variables: "
        "{product: {required: true}, language: {required: true}}"),
    "price": _choice("gateway.yaml", r"inputPerMillion: 2\.50",
                     ["inputPerMillion: 3.00", "inputPerMillion: 1.25"]),
}

mutations = st.lists(st.tuples(st.sampled_from(sorted(EDITS)), st.integers(0, 5)),
                     max_size=4)


def mutated_root(base: Path, steps: list[tuple[str, int]]) -> Path:
    root = Path(tempfile.mkdtemp(dir=base)) / "root"
    shutil.copytree(FIXTURE_ROOT, root)
    for name, n in steps:
        EDITS[name](root, n)
    return root


def apply_and_replan(root: Path, target: Target) -> tuple[Plan, Plan]:
    ir, _ = load_desired_ir(root)
    desired = desired_state(ir, target, Provenance())
    before, _ = apply_root(desired, target, confirm=lambda _p: True,
                           options=ApplyOptions(timeout=10))
    return before, compute_plan(desired_state(ir, target, Provenance()), target)


def pending(plan: Plan) -> list[str]:
    return [f"{c.address}: {[d.field for d in c.details]}" for c in plan.pending()]


def bounded(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def test_dir_converges_and_plans_exactly_the_render_difference(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    @bounded(25)
    @given(steps=mutations)
    def prop(steps: list[tuple[str, int]]) -> None:
        EXAMPLES["dir"] += 1
        work = tmp_path_factory.mktemp("dir")
        out = work / "bundle"
        first, second = mutated_root(work, []), mutated_root(work, steps)
        apply_and_replan(first, parse_target(f"dir:{out}", first))

        ir_first, ir_second = load_desired_ir(first)[0], load_desired_ir(second)[0]
        target = parse_target(f"dir:{out}", second)
        plan = compute_plan(desired_state(ir_second, target, Provenance()), target)
        same_render = render_files(ir_first) == render_files(ir_second)
        assert plan.has_changes == (not same_render), (steps, pending(plan))

        _, after = apply_and_replan(second, target)
        assert pending(after) == [], steps

    prop()
    assert EXAMPLES["dir"] >= 25


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeOptions]:
    with KubeAPIServer(namespaces=(NAMESPACE,)) as server:
        config = server.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")
        yield KubeOptions(kubeconfig=str(config), request_timeout=2, retries=1,
                          backoff=0.01)


def test_kubernetes_converges(tmp_path_factory: pytest.TempPathFactory,
                              kube: KubeOptions) -> None:
    @bounded(25)
    @given(steps=mutations)
    def prop(steps: list[tuple[str, int]]) -> None:
        EXAMPLES["kubernetes"] += 1
        root = mutated_root(tmp_path_factory.mktemp("kube-root"), steps)
        target = parse_target("kubernetes", root, kube)
        try:
            _, after = apply_and_replan(root, target)
        finally:
            target.close()
        assert pending(after) == [], steps

    prop()
    assert EXAMPLES["kubernetes"] >= 25


@pytest.fixture(scope="module")
def local_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from gatewayctl.local.gateway import down, up
    from gatewayctl.local.process import free_port

    state = tmp_path_factory.mktemp("state")
    patch = pytest.MonkeyPatch()
    patch.setenv("GATEWAYCTL_STATE_DIR", str(state))
    base = tmp_path_factory.mktemp("local-root") / "root"
    shutil.copytree(FIXTURE_ROOT, base)
    up(base, listener_port=free_port(), admin_port=free_port())
    try:
        yield base
    finally:
        down()
        patch.undo()


@pytest.mark.envoy
@pytest.mark.slow
def test_the_local_gateway_converges(tmp_path_factory: pytest.TempPathFactory,
                                     local_gateway: Path) -> None:
    @bounded(6)
    @given(steps=mutations)
    def prop(steps: list[tuple[str, int]]) -> None:
        EXAMPLES["local"] += 1
        root = mutated_root(tmp_path_factory.mktemp("local"), steps)
        _, after = apply_and_replan(root, parse_target("local", root))
        assert pending(after) == [], steps

    prop()
    assert EXAMPLES["local"] >= 6
