"""Names, labels and annotation keys shared by every Kubernetes object gatewayctl renders.

Owns the naming scheme (`<gateway>`, `<gateway>-bootstrap`, `<gateway>-config`,
`<gateway>-config-clusters`, `<gateway>-ir`)
and the label sets. The Helm chart in `charts/gatewayctl-gateway` follows the same scheme, so
a chart release named after the gateway deploys objects with the same names and selectors.
"""

from __future__ import annotations

import re
from typing import Any

from gatewayctl.errors import GatewayctlError
from gatewayctl.ir import GatewayIR

# A Kubernetes object as plain JSON data: what gatewayctl renders, diffs, sends and reads back.
KubeObject = dict[str, Any]

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "gatewayctl"
GATEWAY_LABEL = "gatewayctl.dev/gateway"
NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
COMPONENT_LABEL = "app.kubernetes.io/component"
APP_NAME = "gatewayctl-gateway"

# Components: the Envoy pods and what serves or scales them; the configuration they read;
# the alerting rules.
PROXY = "proxy"
CONFIG = "config"
MONITORING = "monitoring"

IR_SHA256 = "gatewayctl.dev/ir-sha256"
IR_VERSION_ANNOTATION = "gatewayctl.dev/ir-version"
RESTART_CHECKSUM = "gatewayctl.dev/restart-checksum"

_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class KubernetesRenderError(GatewayctlError):
    """The gateway cannot be expressed as valid Kubernetes objects (a name, a size limit)."""


def check_gateway_name(ir: GatewayIR) -> None:
    """The gateway name becomes a Service name and a label value: a DNS-1035 label."""
    if len(ir.name) > 63 or not _DNS1035_LABEL.match(ir.name):
        raise KubernetesRenderError(
            f"gateway name {ir.name!r} cannot name a Kubernetes Service",
            hint="use at most 63 lowercase letters, digits and '-', starting with a letter",
        )


def bootstrap_configmap_name(ir: GatewayIR) -> str:
    return f"{ir.name}-bootstrap"


def config_configmap_name(ir: GatewayIR) -> str:
    return f"{ir.name}-config"


def config_clusters_configmap_name(ir: GatewayIR) -> str:
    """Only when the config is packed: `cds.json.gz`, beside `<gateway>-config`'s LDS."""
    return f"{ir.name}-config-clusters"


def ir_configmap_name(ir: GatewayIR) -> str:
    return f"{ir.name}-ir"


def selector_labels(ir: GatewayIR) -> dict[str, str]:
    """The Deployment's (immutable) pod selector; also the Service's and the PDB's."""
    return {NAME_LABEL: APP_NAME, INSTANCE_LABEL: ir.name, COMPONENT_LABEL: PROXY}


def labels(ir: GatewayIR, component: str) -> dict[str, str]:
    """gatewayctl's labels, after the Gateway's extra ones (which may not name these)."""
    return {
        **ir.kubernetes.labels,
        NAME_LABEL: APP_NAME,
        INSTANCE_LABEL: ir.name,
        COMPONENT_LABEL: component,
        MANAGED_BY_LABEL: MANAGED_BY_VALUE,
        GATEWAY_LABEL: ir.name,
    }


def metadata(
    ir: GatewayIR, name: str, component: str, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": ir.namespace,
        "labels": dict(sorted(labels(ir, component).items())),
    }
    merged = {**ir.kubernetes.annotations, **(annotations or {})}
    if merged:
        meta["annotations"] = dict(sorted(merged.items()))
    return meta


def container_security(uid: int) -> dict[str, Any]:
    """A side service's container: its image's own non-root user, nothing more."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def side_deployment(
    ir: GatewayIR,
    name: str,
    component: str,
    selector: dict[str, str],
    replicas: int,
    container: dict[str, Any],
    volumes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The Deployment of a service beside the gateway (the rate limit service, the cache
    store): one container, no service account token, non-root pods."""
    meta = metadata(ir, name, component)
    pod_labels = {**meta["labels"], **selector}
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "containers": [container],
        "securityContext": {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if volumes:
        pod_spec["volumes"] = volumes
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": dict(sorted(pod_labels.items()))},
                "spec": pod_spec,
            },
        },
    }
