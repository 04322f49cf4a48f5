"""Pure helpers over plain Kubernetes object dicts: kinds, paths, order, ownership, stripping.

Owns the table of kinds gatewayctl manages. Imports no Kubernetes client and does no I/O.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "gatewayctl"
GATEWAY_LABEL = "gatewayctl.dev/gateway"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

KubeObject = dict[str, Any]


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
    KindInfo("monitoring.coreos.com/v1", "PrometheusRule", "prometheusrules", True, 8,
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


def ref(obj: KubeObject) -> str:
    """`ConfigMap ai-gateway/gw-envoy`: how objects are named in messages."""
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {where}{meta.get('name')}"


def identity(obj: KubeObject) -> tuple[str, str, str, str]:
    """(group, kind, namespace, name): the same object whatever API version names it."""
    meta = obj.get("metadata") or {}
    api_version = str(obj.get("apiVersion", ""))
    group = api_version.rpartition("/")[0]
    return (group, str(obj.get("kind")), meta.get("namespace") or "", meta.get("name") or "")


def sort_for_apply(objects: list[KubeObject]) -> list[KubeObject]:
    return sorted(objects, key=lambda o: (kind_info(o).apply_order, identity(o)))


def ownership_labels(gateway_name: str) -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY_VALUE, GATEWAY_LABEL: gateway_name}


def ownership_selector(gateway_name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in ownership_labels(gateway_name).items())


def is_owned_by(obj: KubeObject, gateway_name: str) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in ownership_labels(gateway_name).items())


_SERVER_METADATA = (
    "uid", "resourceVersion", "creationTimestamp", "managedFields", "generation", "selfLink",
    "deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences", "finalizers",
)


def strip_server_fields(obj: KubeObject) -> KubeObject:
    """A copy without what the server populates, so that two reads of one object compare
    equal and a plan never shows server bookkeeping as drift."""
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for key in _SERVER_METADATA:
            meta.pop(key, None)
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            annotations.pop(LAST_APPLIED, None)
            annotations.pop("deployment.kubernetes.io/revision", None)
            if not annotations:
                meta.pop("annotations", None)
    if out.get("kind") == "Service":
        spec = out.get("spec") or {}
        for key in ("clusterIP", "clusterIPs"):
            spec.pop(key, None)
    return out
