"""Server-side apply through the Kubernetes target's client against the API fake."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatewayctl.render.k8s.objects import strip_server_fields
from gatewayctl.targets.kubernetes.api import KubeClient, Progress
from gatewayctl.targets.kubernetes.errors import (
    KubeApplyError,
    KubeConflict,
    KubeInvalid,
    KubeServerError,
    KubeTimeout,
)
from gatewayctl.targets.kubernetes.options import KubeOptions
from tests.fakes.kubeapi import FaultRule, KubeAPIServer
from tests.targets.kubernetes import APPLY_ORDER, NAMESPACE, gateway_objects


@pytest.fixture
def kube_options() -> dict[str, float]:
    """One more retry: the retry tests below count on it."""
    return {"request_timeout": 10, "retries": 2, "backoff": 0.01}


def test_apply_to_empty_namespace_creates_everything_in_dependency_order(
    server: KubeAPIServer, kube: KubeClient
) -> None:
    events: list[Progress] = []
    result = kube.apply_objects(gateway_objects(), on_progress=events.append)

    assert [a.ref for a in result.applied] == APPLY_ORDER
    assert {a.action for a in result.applied} == {"created"}
    assert [(e.action, e.ref) for e in events] == (
        [("validated", r) for r in APPLY_ORDER] + [("created", r) for r in APPLY_ORDER])
    writes = server.requests_matching("PATCH")
    assert [r.dry_run for r in writes] == [True] * 5 + [False] * 5
    assert {r.content_type for r in writes} == {"application/apply-patch+yaml"}
    assert {r.query["fieldManager"][0] for r in writes} == {"gatewayctl"}
    dump = server.dump()
    assert [o["metadata"]["name"] for o in dump["configmaps"]] == ["ai-gateway-envoy"]
    deployment = dump["deployments.apps"][0]
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    assert deployment["metadata"]["managedFields"][0]["manager"] == "gatewayctl"
    assert deployment["metadata"]["managedFields"][0]["operation"] == "Apply"


def test_dry_run_stores_nothing_and_returns_defaults(
    server: KubeAPIServer, kube: KubeClient
) -> None:
    before = server.dump()
    previews = kube.dry_run_apply(gateway_objects())

    assert server.dump() == before
    service = next(p for p in previews if p["kind"] == "Service")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "protocol": "TCP", "targetPort": 8080}]
    assert service["spec"]["sessionAffinity"] == "None"


def test_second_apply_shows_no_drift_and_changes_nothing(
    server: KubeAPIServer, kube: KubeClient
) -> None:
    kube.apply_objects(gateway_objects())
    stored = {o["kind"]: o for o in kube.read_managed("ai-gateway", NAMESPACE)}

    previews = kube.dry_run_apply(gateway_objects())
    for preview in previews:
        assert strip_server_fields(preview) == strip_server_fields(stored[preview["kind"]])
    result = kube.apply_objects(gateway_objects())

    assert {a.action for a in result.applied} == {"unchanged"}
    assert result.changed is False


def test_changed_object_is_reported_configured(kube: KubeClient) -> None:
    kube.apply_objects(gateway_objects())
    objects = gateway_objects()
    objects[3]["data"]["envoy.yaml"] = "static_resources: {listeners: []}\n"

    result = kube.apply_objects(objects)

    actions = {a.ref: a.action for a in result.applied}
    assert actions["ConfigMap ai-gateway/ai-gateway-envoy"] == "configured"
    assert actions["Deployment ai-gateway/ai-gateway"] == "unchanged"


def test_field_owned_by_another_manager_conflicts_and_force_takes_it(
    server: KubeAPIServer, kube: KubeClient
) -> None:
    server.seed({"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "ai-gateway-envoy", "namespace": NAMESPACE},
                 "data": {"envoy.yaml": "edited by hand\n"}},
                field_manager="kubectl-client-side-apply")

    with pytest.raises(KubeConflict) as caught:
        kube.apply_objects(gateway_objects())

    err = caught.value
    assert err.fields == (".data.envoy.yaml",)
    assert err.conflicts[0].manager == "kubectl-client-side-apply"
    assert "--force-conflicts" in (err.hint or "")
    assert 'conflict with "kubectl-client-side-apply" using v1: .data.envoy.yaml' in err.message
    assert server.requests_matching("PATCH", dry_run=False) == []

    kube.apply_objects(gateway_objects(), force_conflicts=True)

    cm = server.get_object("v1", "ConfigMap", NAMESPACE, "ai-gateway-envoy")
    assert cm is not None
    assert cm["data"] == {"envoy.yaml": "static_resources: {}\n"}
    owners = {e["manager"]: e["fieldsV1"] for e in cm["metadata"]["managedFields"]}
    assert "f:envoy.yaml" in owners["gatewayctl"]["f:data"]
    assert "f:data" not in owners.get("kubectl-client-side-apply", {})


def test_invalid_object_reports_the_field(kube: KubeClient) -> None:
    objects = gateway_objects()
    objects[2]["spec"]["template"]["spec"]["containers"][0]["image"] = ""

    with pytest.raises(KubeInvalid) as caught:
        kube.apply_objects(objects)

    assert caught.value.fields == ("spec.template.spec.containers[0].image",)
    assert caught.value.code == 422
    assert ('Deployment.apps "ai-gateway" is invalid: '
            "spec.template.spec.containers[0].image: Required value") in caught.value.message


def test_conflict_in_the_middle_reports_applied_and_not_applied(
    server: KubeAPIServer, kube: KubeClient
) -> None:
    server.inject(FaultRule("PATCH", r"/services/ai-gateway$", dry_run=False, status=409,
                            reason="Conflict",
                            message='Operation cannot be fulfilled on services "ai-gateway"'))

    with pytest.raises(KubeApplyError) as caught:
        kube.apply_objects(gateway_objects())

    err = caught.value
    assert isinstance(err.cause, KubeConflict)
    assert err.failed == "Service ai-gateway/ai-gateway"
    assert err.applied == tuple(APPLY_ORDER[:2])
    assert err.not_applied == tuple(APPLY_ORDER[2:])
    assert err.message.startswith(
        "apply stopped at Service ai-gateway/ai-gateway: apply Service ai-gateway/ai-gateway: "
        'conflict: Operation cannot be fulfilled on services "ai-gateway" (applied 2: ')
    assert len(server.requests_matching("PATCH", r"/services/", dry_run=False)) == 1
    assert server.get_object("v1", "Service", NAMESPACE, "ai-gateway") is None


def test_server_error_is_retried_then_reported(server: KubeAPIServer, kube: KubeClient) -> None:
    server.inject(FaultRule("PATCH", r"/deployments/", dry_run=False, status=500, times=None,
                            message="etcdserver: request timed out"))

    with pytest.raises(KubeApplyError) as caught:
        kube.apply_objects(gateway_objects())

    err = caught.value
    assert isinstance(err.cause, KubeServerError)
    assert err.applied == ("ConfigMap ai-gateway/ai-gateway-envoy",)
    assert err.not_applied == tuple(APPLY_ORDER[1:])
    assert "etcdserver: request timed out (after 3 attempts)" in err.message
    assert len(server.requests_matching("PATCH", r"/deployments/", dry_run=False)) == 3


def test_server_error_once_is_retried_transparently(
    server: KubeAPIServer, kube: KubeClient
) -> None:
    rule = server.inject(FaultRule("PATCH", r"/configmaps/", dry_run=False, status=503))

    result = kube.apply_objects(gateway_objects())

    assert rule.fired == 1
    assert [a.action for a in result.applied] == ["created"] * 5


def test_timeout_in_the_middle_reports_applied_and_not_applied(
    server: KubeAPIServer, tmp_path: Path
) -> None:
    server.inject(FaultRule("PATCH", r"/poddisruptionbudgets/", dry_run=False, sleep=1.5,
                            close=True, times=None))
    options = KubeOptions(kubeconfig=str(server.write_kubeconfig(tmp_path / "kubeconfig")),
                          request_timeout=0.5, retries=2, backoff=0.01)

    with KubeClient(options) as kube, pytest.raises(KubeApplyError) as caught:
        kube.apply_objects(gateway_objects())

    err = caught.value
    assert isinstance(err.cause, KubeTimeout)
    assert err.failed == "PodDisruptionBudget ai-gateway/ai-gateway"
    assert err.applied == tuple(APPLY_ORDER[:3])
    assert err.not_applied == tuple(APPLY_ORDER[3:])
    assert "did not answer within 0.5s" in err.message
