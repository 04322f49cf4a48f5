"""`plan --live kubernetes` with an identity that may only get and list (RBAC on the API fake).

A server-side-apply dry run is authorised as a write, so the read-only identity's plan previews
server-side apply client-side. Over a corpus of changes (each then applied by the writing
identity, so that later ones start from what apply left, dropped fields included), its plans
equal the dry-run plans, and the fake records no write from it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gatewayctl.plan.model import Change, Plan
from gatewayctl.targets.kubernetes.kinds import PRUNABLE_KINDS
from gatewayctl.targets.kubernetes.options import KubeOptions
from tests.fakes.kubeapi import KubeAPIServer, Rule
from tests.plan.conftest import FAST_KUBE, NAMESPACE, Cli, edit
from tests.plan.test_kubernetes_plan import cli_apply, plan_kube

PLANNER = "system:serviceaccount:ci:gatewayctl-plan"
# get and list on the kinds gatewayctl owns, and nothing else
READ_ONLY = Rule(("get", "list"), tuple(k.plural for k in PRUNABLE_KINDS))


@pytest.fixture
def read_only(kube_server: KubeAPIServer, tmp_path: Path) -> Iterator[KubeOptions]:
    kube_server.add_identity("plan-token", PLANNER, [READ_ONLY])
    config = kube_server.write_kubeconfig(tmp_path / "ro-kubeconfig", token="plan-token")
    yield KubeOptions(kubeconfig=str(config), **FAST_KUBE)  # type: ignore[arg-type]


def _consumer(root: Path, name: str) -> None:
    (root / f"consumer-{name}.yaml").write_text(
        f"apiVersion: gatewayctl.dev/v1alpha1\nkind: Consumer\n"
        f"metadata: {{name: {name}}}\nspec:\n  team: search\n"
        f"  apiKeySecretRef: {{name: {name}-key, key: key}}\n")


def _drop_consumer(root: Path, name: str) -> None:
    (root / f"consumer-{name}.yaml").unlink()


CORPUS: list[tuple[str, Callable[[Path], None]]] = [
    ("weight", lambda r: edit(r, "routes.yaml", "step: 1", "step: 2")),
    ("image", lambda r: edit(r, "gateway.yaml", "envoy:v1.40.0", "envoy:v1.40.1")),
    ("replicas", lambda r: edit(r, "gateway.yaml", "min: 2, max: 10", "min: 3, max: 12")),
    ("listener port", lambda r: edit(r, "gateway.yaml", "port: 8080", "port: 9090")),
    ("new consumer (a Secret mounted)", lambda r: _consumer(r, "analytics")),
    ("consumer removed (a volume dropped)", lambda r: _drop_consumer(r, "analytics")),
    ("limit", lambda r: edit(r, "policies.yaml", "requests: 600", "requests: 20")),
    ("rollout aborted", lambda r: edit(r, "routes.yaml", "state: progressing",
                                       "state: aborted")),
    ("port back", lambda r: edit(r, "gateway.yaml", "port: 9090", "port: 8080")),
]


def comparable(plan: Plan) -> list[tuple[Any, ...]]:
    def one(c: Change) -> tuple[Any, ...]:
        updates = (c.before, c.after) if c.action == "update" else ()
        return (c.layer, c.kind, c.name, c.action, c.details, c.warnings, updates)
    return [one(c) for c in plan.changes]


def test_a_read_only_identity_plans_what_the_dry_run_plans(
    cli: Cli, root: Path, kubeconfig: Path, kube_server: KubeAPIServer,
    kube_options: KubeOptions, read_only: KubeOptions,
) -> None:
    cli_apply(cli, root, kubeconfig)
    compared = 0
    for label, change in CORPUS:
        change(root)
        kube_server.clear_requests()

        with_dry_run = plan_kube(root, kube_options)
        without = plan_kube(root, read_only)

        assert with_dry_run.has_changes, label
        assert comparable(without) == comparable(with_dry_run), label
        assert any(w.startswith("read-only plan:") for w in without.warnings), label
        assert f"the referenced Secrets were not checked: {PLANNER} may not get secrets" \
            in without.warnings
        assert not any(w.startswith("read-only plan:") for w in with_dry_run.warnings)
        assert kube_server.writes(PLANNER) == []
        planner = [r for r in kube_server.requests if r.user == PLANNER]
        assert {r.method for r in planner if r.status == 200} == {"GET"}
        cli_apply(cli, root, kubeconfig)
        compared += 1
    assert compared == len(CORPUS)


def test_the_read_only_plan_needs_no_dry_run_request_with_the_option(
    root: Path, cli: Cli, kubeconfig: Path, kube_server: KubeAPIServer,
    read_only: KubeOptions,
) -> None:
    from dataclasses import replace

    cli_apply(cli, root, kubeconfig)
    edit(root, "routes.yaml", "step: 1", "step: 2")
    kube_server.clear_requests()

    plan = plan_kube(root, replace(read_only, read_only=True))

    assert plan.has_changes
    assert [r.method for r in kube_server.requests if r.user == PLANNER] and all(
        r.method == "GET" for r in kube_server.requests if r.user == PLANNER)


def test_the_read_only_plan_from_the_command_line(
    cli: Cli, root: Path, kubeconfig: Path, kube_server: KubeAPIServer,
    read_only: KubeOptions,
) -> None:
    cli_apply(cli, root, kubeconfig)
    edit(root, "routes.yaml", "step: 1", "step: 2")
    assert read_only.kubeconfig is not None

    result = cli("plan", str(root), "--live", "kubernetes", "--kubeconfig",
                 read_only.kubeconfig, "--detailed-exitcode")

    assert result.exit_code == 2, result.output
    assert "~ Route chat" in result.stdout and "read-only plan:" in result.stdout
    assert kube_server.writes(PLANNER) == []
    assert NAMESPACE in result.stdout
