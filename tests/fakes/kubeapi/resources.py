"""The kinds the fake API server serves, and the discovery documents describing them.

Owns the static type table only; it holds no state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    has_generation: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified_resource(self) -> str:
        """`configmaps` or `deployments.apps`, as the server names them in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        """`ConfigMap` or `Deployment.apps`, as used in Invalid messages."""
        return f"{self.kind}.{self.group}" if self.group else self.kind


RESOURCE_TYPES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "Namespace", "namespaces", namespaced=False, short_names=("ns",)),
    ResourceType("", "v1", "ConfigMap", "configmaps", short_names=("cm",)),
    ResourceType("", "v1", "Secret", "secrets"),
    ResourceType("", "v1", "Service", "services", short_names=("svc",)),
    ResourceType("", "v1", "ServiceAccount", "serviceaccounts", short_names=("sa",)),
    ResourceType(
        "apps", "v1", "Deployment", "deployments", short_names=("deploy",), has_generation=True
    ),
    ResourceType("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers",
                 short_names=("hpa",)),
    ResourceType("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets",
                 short_names=("pdb",), has_generation=True),
    ResourceType("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies",
                 short_names=("netpol",), has_generation=True),
    ResourceType("monitoring.coreos.com", "v1", "PodMonitor", "podmonitors",
                 short_names=("pmon",), has_generation=True),
    ResourceType("monitoring.coreos.com", "v1", "PrometheusRule", "prometheusrules",
                 short_names=("promrule",), has_generation=True),
    ResourceType("coordination.k8s.io", "v1", "Lease", "leases"),
)


def find_type(group: str, version: str, plural: str) -> ResourceType | None:
    for rt in RESOURCE_TYPES:
        if (rt.group, rt.version, rt.plural) == (group, version, plural):
            return rt
    return None


def find_type_by_kind(api_version: str, kind: str) -> ResourceType | None:
    for rt in RESOURCE_TYPES:
        if (rt.api_version, rt.kind) == (api_version, kind):
            return rt
    return None


def group_versions() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for rt in RESOURCE_TYPES:
        if rt.group and rt.version not in out.setdefault(rt.group, []):
            out[rt.group].append(rt.version)
    return out


def api_versions_doc(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_group_list_doc() -> dict[str, Any]:
    groups = []
    for group, versions in group_versions().items():
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        groups.append({"name": group, "versions": gvs, "preferredVersion": gvs[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_resource_list_doc(group: str, version: str) -> dict[str, Any] | None:
    types = [rt for rt in RESOURCE_TYPES if (rt.group, rt.version) == (group, version)]
    if not types:
        return None
    resources: list[dict[str, Any]] = []
    for rt in types:
        entry: dict[str, Any] = {
            "name": rt.plural,
            "singularName": rt.kind.lower(),
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": VERBS,
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        resources.append(entry)
        if rt.kind in ("Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                       "Namespace", "Service"):
            resources.append({
                "name": f"{rt.plural}/status", "singularName": "", "namespaced": rt.namespaced,
                "kind": rt.kind, "verbs": ["get", "patch", "update"],
            })
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


VERSION_DOC: dict[str, str] = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0-fake",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T00:00:00Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}
