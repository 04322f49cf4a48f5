"""apply --live kubernetes against the fake API server: prune safety, stale plans, the Lease,
and a 409, a 500 and a timeout in the middle of an apply."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gatewayctl.errors import GatewayctlError
from gatewayctl.orchestrate import apply_root, desired_state, load_desired_ir
from gatewayctl.render.k8s import Provenance
from gatewayctl.targets import parse_target
from gatewayctl.targets.base import ApplyOptions
from gatewayctl.targets.kubernetes.errors import (
    KubeApplyError,
    KubeConflict,
    KubeServerError,
    KubeTimeout,
)
from gatewayctl.targets.kubernetes.options import KubeOptions
from tests.fakes.kubeapi import FaultRule, KubeAPIServer
from tests.plan.conftest import GATEWAY, NAMESPACE, Cli, set_rollout_step
from tests.plan.test_kubernetes_plan import cli_apply, plan_kube

LABELS = {"app.kubernetes.io/managed-by": "gatewayctl", "gatewayctl.dev/gateway": GATEWAY}


def configmap(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NAMESPACE}
    if labels is not None:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"}}


def names(server: KubeAPIServer, plural: str = "configmaps") -> list[str]:
    return sorted(o["metadata"]["name"] for o in server.dump().get(plural, []))


def apply_lib(root: Path, options: KubeOptions, timeout: float = 5.0) -> None:
    ir, warnings = load_desired_ir(root)
    live = parse_target("kubernetes", root, options)
    try:
        apply_root(desired_state(ir, live, Provenance(), warnings), live,
                   confirm=lambda _p: True, options=ApplyOptions(timeout=timeout))
    finally:
        live.close()


def test_prune_deletes_only_this_gateways_objects(
    cli: Cli, root: Path, kubeconfig: Path, kube_server: KubeAPIServer,
    kube_options: KubeOptions,
) -> None:
    kube_server.seed(configmap("someone-elses"))  # no labels at all
    kube_server.seed(configmap("other-gateway", {**LABELS, "gatewayctl.dev/gateway": "other"}))
    kube_server.seed(configmap("only-managed-by", {"app.kubernetes.io/managed-by": "gatewayctl"}))
    kube_server.seed(configmap("ai-gateway-leftover", dict(LABELS)))  # ours, no longer rendered

    plan = plan_kube(root, kube_options)
    deletes = [c.address for c in plan.pending("resource") if c.action == "delete"]
    assert deletes == ["ConfigMap ai-gateway/ai-gateway-leftover"]

    cli_apply(cli, root, kubeconfig)

    assert names(kube_server) == ["ai-gateway-bootstrap", "ai-gateway-config", "ai-gateway-ir",
                                  "only-managed-by", "other-gateway", "someone-elses"]
    deleted = [r.path.rsplit("/", 1)[-1] for r in kube_server.requests_matching("DELETE")]
    assert deleted == ["ai-gateway-leftover"]


def test_stale_saved_plan_is_refused(
    cli: Cli, root: Path, kubeconfig: Path, kube_server: KubeAPIServer, tmp_path: Path
) -> None:
    cli_apply(cli, root, kubeconfig)
    set_rollout_step(root, 2)
    saved = tmp_path / "plan.json"
    result = cli("plan", str(root), "--kubeconfig", str(kubeconfig), "--out", str(saved))
    assert result.exit_code == 0, result.output
    # Someone edits a field gatewayctl manages after the plan was made.
    config = kube_server.get_object("v1", "ConfigMap", NAMESPACE, "ai-gateway-config")
    assert config is not None
    config["data"]["lds.json"] = "{}"
    kube_server.replace(config)
    kube_server.clear_requests()

    result = cli("apply", str(saved), "--kubeconfig", str(kubeconfig))

    assert result.exit_code == 1
    assert "the saved plan is stale" in result.stderr
    assert "nothing was applied" in result.stderr
    assert "run `gatewayctl plan` again" in result.stderr
    assert kube_server.requests_matching("PATCH", dry_run=False) == []


def test_fresh_saved_plan_applies_and_ignores_fields_owned_by_others(
    cli: Cli, root: Path, kubeconfig: Path, kube_server: KubeAPIServer, tmp_path: Path
) -> None:
    cli_apply(cli, root, kubeconfig)
    set_rollout_step(root, 2)
    saved = tmp_path / "plan.json"
    assert cli("plan", str(root), "--kubeconfig", str(kubeconfig), "--out",
               str(saved)).exit_code == 0
    assert json.loads(saved.read_text())["format_version"] == "2.0"
    # The autoscaler scaling the Deployment touches no field gatewayctl sets.
    deployment = kube_server.get_object("apps/v1", "Deployment", NAMESPACE, GATEWAY)
    assert deployment is not None
    deployment["spec"]["replicas"] = 5
    kube_server.replace(deployment, field_manager="horizontal-pod-autoscaler")

    result = cli("apply", str(saved), "--kubeconfig", str(kubeconfig))

    assert result.exit_code == 0, result.output
    assert "[1/2] configured ConfigMap ai-gateway/ai-gateway-config" in result.stdout
    assert "[2/2] configured ConfigMap ai-gateway/ai-gateway-ir" in result.stdout
    assert "Apply complete: 0 created, 2 changed, 0 deleted." in result.stdout
    again = cli("apply", str(saved), "--kubeconfig", str(kubeconfig))
    assert again.exit_code == 1 and "stale" in again.stderr


def test_concurrent_apply_is_refused_while_the_lease_is_held(
    cli: Cli, root: Path, kubeconfig: Path, kube_server: KubeAPIServer
) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    kube_server.seed({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                      "metadata": {"name": f"gatewayctl-{GATEWAY}", "namespace": NAMESPACE},
                      "spec": {"holderIdentity": "https://gitlab.example/jobs/41",
                               "leaseDurationSeconds": 600, "acquireTime": now,
                               "renewTime": now}})

    result = cli("apply", str(root), "--kubeconfig", str(kubeconfig), "--auto-approve")

    assert result.exit_code == 1
    assert "another apply is in progress" in result.stderr
    assert "https://gitlab.example/jobs/41" in result.stderr
    assert kube_server.requests_matching("PATCH") == []


def test_lease_is_taken_during_apply_and_released_after(
    root: Path, kube_server: KubeAPIServer, kube_options: KubeOptions
) -> None:
    apply_lib(root, kube_options)

    lease = kube_server.get_object("coordination.k8s.io/v1", "Lease", NAMESPACE,
                                   f"gatewayctl-{GATEWAY}")
    assert lease is not None
    assert "holderIdentity" not in lease["spec"]  # released
    writes = [r.method for r in kube_server.requests if "/leases" in r.path and r.method != "GET"]
    assert writes == ["POST", "PUT"]  # taken, then given up


def _fail_deployment(server: KubeAPIServer, **fault: Any) -> None:
    server.inject(FaultRule("PATCH", r"/deployments/", dry_run=False, **fault))


@pytest.mark.parametrize(
    ("fault", "error", "says"),
    [
        ({"status": 409, "message": "Operation cannot be fulfilled: the object has been "
                                    "modified", "reason": "Conflict"},
         KubeConflict, "conflict"),
        ({"status": 500, "message": "etcdserver: request timed out", "times": None},
         KubeServerError, "(after 2 attempts)"),
        ({"sleep": 1.0, "times": None}, KubeTimeout, "did not answer within 0.5s"),
    ],
    ids=["409", "500", "timeout"],
)
def test_failure_in_the_middle_reports_applied_and_not_applied(
    root: Path, kube_server: KubeAPIServer, kube_options: KubeOptions,
    fault: dict[str, Any], error: type[Exception], says: str,
) -> None:
    _fail_deployment(kube_server, **fault)
    if "sleep" in fault:  # a server slower than the client waits
        kube_options = dataclasses.replace(kube_options, request_timeout=0.5)

    with pytest.raises(KubeApplyError) as caught:
        apply_lib(root, kube_options)

    err = caught.value
    assert isinstance(err.cause, error)
    assert err.failed == "Deployment ai-gateway/ai-gateway"
    assert err.applied == ("ServiceAccount ai-gateway/ai-gateway",
                           "ConfigMap ai-gateway/ai-gateway-bootstrap",
                           "ConfigMap ai-gateway/ai-gateway-config")
    assert err.not_applied[0] == "Deployment ai-gateway/ai-gateway"
    assert err.not_applied[-1] == "ConfigMap ai-gateway/ai-gateway-ir"  # the record comes last
    assert says in err.message
    assert "not applied 7:" in err.message
    # The IR record was not written, so the next plan still shows the whole change.
    assert "ai-gateway-ir" not in names(kube_server)
    lease = kube_server.get_object("coordination.k8s.io/v1", "Lease", NAMESPACE,
                                   f"gatewayctl-{GATEWAY}")
    assert lease is not None and "holderIdentity" not in lease["spec"]


def test_transient_500_is_retried_and_the_apply_completes(
    root: Path, kube_server: KubeAPIServer, kube_options: KubeOptions
) -> None:
    _fail_deployment(kube_server, status=503, message="try again", times=1)

    apply_lib(root, kube_options)

    assert GATEWAY in names(kube_server, "deployments.apps")
    assert plan_kube(root, kube_options).has_changes is False


def test_failure_message_on_the_command_line_is_one_clear_message(
    cli: Cli, root: Path, kubeconfig: Path, kube_server: KubeAPIServer
) -> None:
    _fail_deployment(kube_server, status=422, message='Deployment.apps "ai-gateway" is '
                     "invalid: spec.template.spec.containers[0].image: Required value",
                     reason="Invalid")

    result = cli("apply", str(root), "--kubeconfig", str(kubeconfig), "--auto-approve")

    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: apply stopped at Deployment ai-gateway/ai-gateway: ")
    assert "spec.template.spec.containers[0].image" in lines[0]
    assert "(applied 3: ServiceAccount ai-gateway/ai-gateway" in lines[0]
    assert "Traceback" not in result.output


def test_rollout_timeout_says_everything_was_applied(
    root: Path, kube_server: KubeAPIServer, kube_options: KubeOptions
) -> None:
    kube_server.rollout.mode = "never"

    with pytest.raises(GatewayctlError) as caught:
        apply_lib(root, kube_options, timeout=0.3)

    assert caught.value.message.startswith("every object was applied (10 applied, 0 pruned), "
                                           "but deployment ai-gateway/ai-gateway did not "
                                           "finish rolling out within 0.3s")


def test_apply_without_a_terminal_needs_auto_approve(
    cli: Cli, root: Path, kubeconfig: Path, kube_server: KubeAPIServer
) -> None:
    result = cli("apply", str(root), "--kubeconfig", str(kubeconfig))

    assert result.exit_code == 1
    assert "--auto-approve" in result.stderr
    assert kube_server.requests_matching("PATCH", dry_run=False) == []


def test_saved_plan_is_not_applied_to_another_cluster(
    cli: Cli, root: Path, kubeconfig: Path, kube_server: KubeAPIServer, tmp_path: Path
) -> None:
    # Two clusters in the same state (here: both empty) have the same fingerprint, so only the
    # recorded API server tells a plan for one from a plan for the other.
    saved = tmp_path / "plan.json"
    result = cli("plan", str(root), "--kubeconfig", str(kubeconfig), "--out", str(saved))
    assert result.exit_code == 0, result.output
    assert json.loads(saved.read_text())["target"]["where"] == kube_server.url
    with KubeAPIServer(namespaces=(NAMESPACE,)) as other:
        other_config = other.write_kubeconfig(tmp_path / "other-kubeconfig")

        result = cli("apply", str(saved), "--kubeconfig", str(other_config))

        assert result.exit_code == 1
        assert f"computed against the cluster at {kube_server.url}" in result.stderr
        assert f"would go to {other.url}; nothing was applied" in result.stderr
        assert "--kubeconfig/--context" in result.stderr
        # Refused before the apply lock: nothing at all was written to the other cluster.
        assert [r for r in other.requests if r.method != "GET"] == []
    assert cli("apply", str(saved), "--kubeconfig", str(kubeconfig)).exit_code == 0


def test_saved_plan_without_a_recorded_target_still_applies(
    cli: Cli, root: Path, kubeconfig: Path, tmp_path: Path
) -> None:
    # Plans saved before the target was recorded carry only the source and fingerprint.
    saved = tmp_path / "plan.json"
    assert cli("plan", str(root), "--kubeconfig", str(kubeconfig), "--out",
               str(saved)).exit_code == 0
    data = json.loads(saved.read_text())
    del data["target"]["where"]
    saved.write_text(json.dumps(data))
    result = cli("apply", str(saved), "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 0, result.output


def test_a_config_envoy_rejects_never_reaches_the_cluster_or_a_bundle(
    root: Path, kube_server: KubeAPIServer, kube_options: KubeOptions, tmp_path: Path
) -> None:
    import dataclasses

    from gatewayctl.local.process import EnvoyRejected

    ir, _ = load_desired_ir(root)
    chat = ir.routes[0]
    broken = dataclasses.replace(ir, routes=(dataclasses.replace(
        chat, policy=dataclasses.replace(chat.policy, deny_patterns=("(unclosed",))),
        *ir.routes[1:]))
    for spec, options in (("kubernetes", kube_options), (f"dir:{tmp_path / 'out'}", None)):
        target = parse_target(spec, root, options)
        try:
            with pytest.raises(EnvoyRejected):
                apply_root(desired_state(broken, target, Provenance()), target,
                           confirm=lambda _p: True)
        finally:
            target.close()
    assert kube_server.writes() == []
    assert kube_server.requests_matching("PATCH") == []
    assert not (tmp_path / "out").exists()
