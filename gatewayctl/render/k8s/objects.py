"""Pure helpers over plain Kubernetes object dicts: names, identity, ownership, stripping.

Shared by the renderer, the plan (which diffs objects) and the Kubernetes target (which sends
them). Imports no Kubernetes client and does no I/O; the table of kinds and their API paths
belongs to the Kubernetes target (`gatewayctl.targets.kubernetes.kinds`).
"""

from __future__ import annotations

import copy

from gatewayctl.render.k8s.meta import GATEWAY_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE
from gatewayctl.render.k8s.meta import KubeObject as KubeObject  # defined once, there

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

Identity = tuple[str, str, str, str]


def ref(obj: KubeObject) -> str:
    """`ConfigMap ai-gateway/gw-envoy`: how objects are named in messages."""
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {where}{meta.get('name')}"


def identity(obj: KubeObject) -> Identity:
    """(group, kind, namespace, name): the same object whatever API version names it."""
    meta = obj.get("metadata") or {}
    api_version = str(obj.get("apiVersion", ""))
    group = api_version.rpartition("/")[0]
    return (group, str(obj.get("kind")), meta.get("namespace") or "", meta.get("name") or "")


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
