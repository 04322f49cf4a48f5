"""The NetworkPolicy of the gateway's pods and the PodMonitor Prometheus scrapes them with.

NetworkPolicy (Gateway.spec.kubernetes.networkPolicy, on by default): ingress only to the
listener (clients, from anywhere the cluster lets reach the pods) and to the stats listener
(metrics and liveness); egress only to the providers' ports, to DNS and, with global limits,
to the rate limit service's pods (which get a policy of their own: gRPC in from the gateway's
pods, out to DNS and Redis) and, with a response cache too, to the cache store service's pods
(the same kind of policy, HTTP in). Envoy's admin port is
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
from gatewayctl.render.envoy.cache import CACHE_STORE_PORT, shared_store
from gatewayctl.render.envoy.global_limits import RATELIMIT_GRPC_PORT
from gatewayctl.render.envoy.probes import METRICS_PATH
from gatewayctl.render.k8s.cachestore import (
    CACHE_STORE,
    cache_store_name,
    cache_store_selector,
)
from gatewayctl.render.k8s.layout import EnvoyLayout
from gatewayctl.render.k8s.meta import MONITORING, PROXY, KubeObject, metadata, selector_labels
from gatewayctl.render.k8s.ratelimit import RATELIMIT, ratelimit_name, ratelimit_selector

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
    if ir.limits.scope == "global":
        # global limits: the rate limit service beside the gateway (ratelimit.py)
        egress.append(
            {
                "ports": [_tcp(RATELIMIT_GRPC_PORT)],
                "to": [{"podSelector": {"matchLabels": ratelimit_selector(ir)}}],
            }
        )
    if shared_store(ir):
        # the response cache's shared store (cachestore.py)
        egress.append(
            {
                "ports": [_tcp(CACHE_STORE_PORT)],
                "to": [{"podSelector": {"matchLabels": cache_store_selector(ir)}}],
            }
        )
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


def _redis_side_policy(ir: GatewayIR, name: str, component: str, pod_selector: dict[str, str],
                       port: int) -> KubeObject:
    """A service beside the gateway that keeps its state in Redis: `port` from the gateway's
    pods only; out to DNS and to the Redis port (Redis may be outside the cluster, so any
    address)."""
    redis_port = int((ir.limits.redis_address or ":6379").rpartition(":")[2])
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(ir, name, component),
        "spec": {
            "egress": [
                {"ports": [{"port": DNS_PORT, "protocol": "UDP"}, _tcp(DNS_PORT)]},
                {"ports": [_tcp(redis_port)]},
            ],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": selector_labels(ir)}}],
                    "ports": [_tcp(port)],
                }
            ],
            "podSelector": {"matchLabels": pod_selector},
            "policyTypes": ["Ingress", "Egress"],
        },
    }


def render_ratelimit_network_policy(ir: GatewayIR) -> KubeObject | None:
    """The rate limit service's pods: gRPC from the gateway's pods only, out to DNS and Redis."""
    if not ir.kubernetes.network_policy or ir.limits.scope != "global":
        return None
    return _redis_side_policy(ir, ratelimit_name(ir), RATELIMIT, ratelimit_selector(ir),
                              RATELIMIT_GRPC_PORT)


def render_cache_store_network_policy(ir: GatewayIR) -> KubeObject | None:
    """The cache store service's pods: HTTP from the gateway's pods only, out to DNS and Redis."""
    if not ir.kubernetes.network_policy or not shared_store(ir):
        return None
    return _redis_side_policy(ir, cache_store_name(ir), CACHE_STORE, cache_store_selector(ir),
                              CACHE_STORE_PORT)


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
