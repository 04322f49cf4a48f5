"""The kinds gatewayctl manages in a cluster: API paths, apply order, which may be pruned.

Pure data and lookups over plain object dicts; imports no Kubernetes client and does no I/O.
The object helpers every layer shares (identity, ownership, stripping) are in
`gatewayctl.render.k8s.objects`.
"""

from __future__ import annotations

from dataclasses import dataclass

from gatewayctl.render.k8s.objects import KubeObject, identity


@dataclass(frozen=True)
class KindInfo:
    api_version: str
    kind: str
    plural: str
    namespaced: bool
    apply_order: int
    prunable: bool

    def collection_path(self, namespace: str | None) -> str:
        base = f"/api/{self.api_version}" if "/" not in self.api_version \
            else f"/apis/{self.api_version}"
        if self.namespaced:
            return f"{base}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{self.plural}"

    def object_path(self, namespace: str | None, name: str) -> str:
        return f"{self.collection_path(namespace)}/{name}"


# Apply order: what others depend on goes first (config before the pods that mount it).
KINDS: tuple[KindInfo, ...] = (
    KindInfo("v1", "Namespace", "namespaces", False, 0, prunable=False),
    KindInfo("v1", "ServiceAccount", "serviceaccounts", True, 1, prunable=True),
    KindInfo("v1", "Secret", "secrets", True, 2, prunable=False),
    KindInfo("v1", "ConfigMap", "configmaps", True, 3, prunable=True),
    KindInfo("apps/v1", "Deployment", "deployments", True, 4, prunable=True),
    KindInfo("v1", "Service", "services", True, 5, prunable=True),
    KindInfo("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", True, 6, prunable=True),
    KindInfo("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True, 7,
             prunable=True),
    KindInfo("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", True, 8,
             prunable=True),
    KindInfo("monitoring.coreos.com/v1", "PodMonitor", "podmonitors", True, 9, prunable=True),
    KindInfo("monitoring.coreos.com/v1", "PrometheusRule", "prometheusrules", True, 9,
             prunable=True),
)
LEASE = KindInfo("coordination.k8s.io/v1", "Lease", "leases", True, 99, prunable=False)
PRUNABLE_KINDS: tuple[KindInfo, ...] = tuple(k for k in KINDS if k.prunable)


def kind_info(obj: KubeObject) -> KindInfo:
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    for info in KINDS:
        if (info.api_version, info.kind) == (api_version, kind):
            return info
    raise ValueError(f"gatewayctl does not manage {api_version} {kind} objects")


def sort_for_apply(objects: list[KubeObject]) -> list[KubeObject]:
    return sorted(objects, key=lambda o: (kind_info(o).apply_order, identity(o)))
