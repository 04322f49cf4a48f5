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
    """Clients use the gateway's listener port; `admin` serves /stats/prometheus and /ready."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(ir, ir.name, PROXY),
        "spec": {
            "ports": [
                {
                    "appProtocol": "http",
                    "name": "http",
                    "port": ir.listener_port,
                    "protocol": "TCP",
                    "targetPort": "http",
                },
                {
                    "appProtocol": "http",
                    "name": "admin",
                    "port": layout.admin_port,
                    "protocol": "TCP",
                    "targetPort": "admin",
                },
            ],
            "selector": selector_labels(ir),
            "type": "ClusterIP",
        },
    }
