"""The NetworkPolicy of the gateway's pods and the PodMonitor Prometheus scrapes them with.

NetworkPolicy (Gateway.spec.kubernetes.networkPolicy, on by default): ingress only to the
listener (clients, from anywhere the cluster lets reach the pods) and to the stats listener
(metrics and liveness); egress only to the providers' ports and to DNS. Envoy's admin port is
never opened: it listens on the pod's loopback anyway. Providers are outside the cluster and
named by DNS, which a NetworkPolicy cannot match, so their ports are open to any address.
kubelet's probes are not subject to NetworkPolicy.

PodMonitor (Gateway.spec.kubernetes.podMonitor, off by default: it needs the Prometheus
Operator's CRDs): scrapes /stats/prometheus on each pod's `metrics` port, the stats listener
that routes nothing else to admin.
"""

from __future__ import annotations

from typing import Any

from gatewayctl.ir import GatewayIR
from gatewayctl.render.envoy.probes import METRICS_PATH
from gatewayctl.render.k8s.layout import EnvoyLayout
from gatewayctl.render.k8s.meta import MONITORING, PROXY, KubeObject, metadata, selector_labels

DNS_PORT = 53


def _tcp(port: int) -> dict[str, Any]:
    return {"port": port, "protocol": "TCP"}


def render_network_policy(ir: GatewayIR, layout: EnvoyLayout) -> KubeObject | None:
    if not ir.kubernetes.network_policy:
        return None
    inbound = [_tcp(layout.listener_port)]
    if layout.stats_port is not None:
        inbound.append(_tcp(layout.stats_port))
    provider_ports = sorted({p.port for p in ir.providers})
    egress: list[dict[str, Any]] = [
        {"ports": [{"port": DNS_PORT, "protocol": "UDP"}, _tcp(DNS_PORT)]},
    ]
    if provider_ports:
        egress.append({"ports": [_tcp(port) for port in provider_ports]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(ir, ir.name, PROXY),
        "spec": {
            "egress": egress,
            "ingress": [{"ports": inbound}],
            "podSelector": {"matchLabels": selector_labels(ir)},
            "policyTypes": ["Ingress", "Egress"],
        },
    }


def render_pod_monitor(ir: GatewayIR, layout: EnvoyLayout) -> KubeObject | None:
    if not ir.kubernetes.pod_monitor or layout.stats_port is None:
        return None
    meta = metadata(ir, ir.name, MONITORING)
    meta["labels"] = dict(sorted({**ir.kubernetes.pod_monitor_labels, **meta["labels"]}.items()))
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": meta,
        "spec": {
            "podMetricsEndpoints": [
                {
                    "interval": ir.kubernetes.pod_monitor_interval,
                    "path": METRICS_PATH,
                    "port": "metrics",
                }
            ],
            "selector": {"matchLabels": selector_labels(ir)},
        },
    }
