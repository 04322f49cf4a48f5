"""The ServiceAccount the pods run as and the Service in front of them."""

from __future__ import annotations

from gatewayctl.ir import GatewayIR
from gatewayctl.render.k8s.layout import EnvoyLayout
from gatewayctl.render.k8s.meta import PROXY, KubeObject, metadata, selector_labels


def render_service_account(ir: GatewayIR) -> KubeObject:
    # Envoy never talks to the Kubernetes API: no token in the pods.
    return {
        "apiVersion": "v1",
        "automountServiceAccountToken": False,
        "kind": "ServiceAccount",
        "metadata": metadata(ir, ir.name, PROXY),
    }


def render_service(ir: GatewayIR, layout: EnvoyLayout) -> KubeObject:
    """Clients use the gateway's listener port, and nothing else is published: Envoy's admin
    API stays on the pod's loopback, and Prometheus scrapes the pods' stats listener (a
    PodMonitor, not through this Service). Type and annotations: Gateway.spec.kubernetes."""
    meta = metadata(ir, ir.name, PROXY)
    if ir.kubernetes.service_annotations:
        meta["annotations"] = dict(
            sorted({**meta.get("annotations", {}), **ir.kubernetes.service_annotations}.items())
        )
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "ports": [
                {
                    "appProtocol": "http",
                    "name": "http",
                    "port": ir.listener_port,
                    "protocol": "TCP",
                    "targetPort": "http",
                },
            ],
            "selector": selector_labels(ir),
            "type": ir.kubernetes.service_type,
        },
    }
