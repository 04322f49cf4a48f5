"""Pruning and reading this gateway's objects: only what carries both ownership labels."""

from __future__ import annotations

from gatewayctl.targets.kubernetes.api import KubeClient
from tests.fakes.kubeapi import KubeAPIServer
from tests.targets.kubernetes import APPLY_ORDER, LABELS, NAMESPACE, gateway_objects


def _configmap(name: str, labels: dict[str, str]) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
            "data": {"k": "v"}}


def test_read_managed_lists_only_this_gateways_objects(
    server: KubeAPIServer, kube: KubeClient
) -> None:
    kube.apply_objects(gateway_objects())
    server.seed(_configmap("other-gateway", {**LABELS, "gatewayctl.dev/gateway": "other"}))
    server.seed(_configmap("unlabelled", {}))

    live = kube.read_managed("ai-gateway", NAMESPACE)

    assert [f'{o["kind"]} {o["metadata"]["namespace"]}/{o["metadata"]["name"]}'
            for o in live] == APPLY_ORDER
    assert all(o["apiVersion"] and o["metadata"]["uid"] for o in live)
    selectors = {r.query["labelSelector"][0] for r in server.requests_matching("GET")}
    assert selectors == {
        "app.kubernetes.io/managed-by=gatewayctl,gatewayctl.dev/gateway=ai-gateway"}


def test_removed_object_is_pruned(server: KubeAPIServer, kube: KubeClient) -> None:
    kube.apply_objects(gateway_objects())
    desired = [o for o in gateway_objects() if o["kind"] != "PodDisruptionBudget"]

    pruned = kube.prune(desired, "ai-gateway", NAMESPACE)

    assert pruned == ["PodDisruptionBudget ai-gateway/ai-gateway"]
    assert server.get_object("policy/v1", "PodDisruptionBudget", NAMESPACE, "ai-gateway") is None
    deletes = server.requests_matching("DELETE")
    assert [r.path for r in deletes] == [
        "/apis/policy/v1/namespaces/ai-gateway/poddisruptionbudgets/ai-gateway"]
    assert deletes[0].query["propagationPolicy"] == ["Background"]


def test_objects_without_both_labels_are_never_pruned(
    server: KubeAPIServer, kube: KubeClient
) -> None:
    kube.apply_objects(gateway_objects())
    server.seed(_configmap("unlabelled", {}))
    server.seed(_configmap("half-labelled", {"gatewayctl.dev/gateway": "ai-gateway"}))
    server.seed(_configmap("other-tool", {"app.kubernetes.io/managed-by": "helm",
                                          "gatewayctl.dev/gateway": "ai-gateway"}))
    server.seed(_configmap("other-gateway", {**LABELS, "gatewayctl.dev/gateway": "other"}))

    pruned = kube.prune([], "ai-gateway", NAMESPACE)

    assert sorted(pruned) == sorted(APPLY_ORDER)
    names = [o["metadata"]["name"] for o in server.dump()["configmaps"]]
    assert names == ["half-labelled", "other-gateway", "other-tool", "unlabelled"]


def test_prune_dry_run_deletes_nothing(server: KubeAPIServer, kube: KubeClient) -> None:
    kube.apply_objects(gateway_objects())

    pruned = kube.prune(gateway_objects()[:4], "ai-gateway", NAMESPACE, dry_run=True)

    assert pruned == ["PodDisruptionBudget ai-gateway/ai-gateway"]
    assert server.get_object("policy/v1", "PodDisruptionBudget", NAMESPACE,
                             "ai-gateway") is not None
