"""Health and metrics endpoints for Kubernetes: what kubelet and Prometheus may reach.

Envoy's admin API stays on loopback (options.admin_address): it can raise the log level (client
keys then reach the log), dump the configuration and stop Envoy, so no Service and no probe
uses it. Instead:

- readiness: `GET /healthz/ready` on the gateway listener itself, answered by Envoy's
  health_check filter (first in the chain, so no other filter runs for it). The answer comes
  from the listener actually serving: a fresh Envoy whose listener was rejected has nothing on
  the port (connection refused), so the pod is never ready; after `POST /healthcheck/fail`
  (the preStop hook) it answers 503 while draining.
- liveness: `GET /healthz/live` on the stats listener (a static listener in the bootstrap, so
  it exists whatever happens to the dynamic one): Envoy's workers answer. A rejected gateway
  listener does not make the pod restart forever: a restart would not fix the configuration.
- metrics: the stats listener routes `GET /stats/prometheus` (and nothing else) to the admin
  API through a loopback cluster; every other path or method is a 404.
"""

from __future__ import annotations

from typing import Any

from gatewayctl.render.envoy.names import HCM_TYPE, ROUTER_TYPE, TYPE_PREFIX
from gatewayctl.render.envoy.options import EnvoyOptions

READY_PATH = "/healthz/ready"
LIVE_PATH = "/healthz/live"
METRICS_PATH = "/stats/prometheus"
STATS_LISTENER = "stats"
ADMIN_CLUSTER = "admin"
HEALTH_CHECK_FILTER = "envoy.filters.http.health_check"
HEALTH_CHECK_TYPE = TYPE_PREFIX + "envoy.extensions.filters.http.health_check.v3.HealthCheck"


def render_health_check_filter() -> dict[str, Any]:
    """The gateway listener's first filter: answers GET /healthz/ready itself."""
    return {
        "name": HEALTH_CHECK_FILTER,
        "typed_config": {
            "@type": HEALTH_CHECK_TYPE,
            "pass_through_mode": False,
            "headers": [{"name": ":path", "string_match": {"exact": READY_PATH}}],
        },
    }


def _get(path: str) -> dict[str, Any]:
    return {"path": path, "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]}


def render_stats_listener(options: EnvoyOptions) -> dict[str, Any] | None:
    if options.stats_port is None:
        return None
    routes = [
        {
            "name": "metrics",
            "match": _get(METRICS_PATH),
            "route": {"cluster": ADMIN_CLUSTER, "timeout": "10s"},
        },
        {
            "name": "live",
            "match": _get(LIVE_PATH),
            "direct_response": {"status": 200, "body": {"inline_string": "live\n"}},
        },
        {
            "name": "nothing-else",
            "match": {"prefix": "/"},
            "direct_response": {"status": 404, "body": {"inline_string": "not found\n"}},
        },
    ]
    hcm = {
        "@type": HCM_TYPE,
        "stat_prefix": STATS_LISTENER,
        "route_config": {
            "name": STATS_LISTENER,
            "virtual_hosts": [{"name": STATS_LISTENER, "domains": ["*"], "routes": routes}],
        },
        "http_filters": [
            {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER_TYPE}}
        ],
    }
    return {
        "name": STATS_LISTENER,
        "address": {
            "socket_address": {"address": options.stats_address, "port_value": options.stats_port}
        },
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ]
            }
        ],
    }


def render_admin_cluster(options: EnvoyOptions) -> dict[str, Any] | None:
    """The stats listener's way to the admin API, over loopback."""
    if options.stats_port is None:
        return None
    address = "127.0.0.1" if options.admin_address in ("0.0.0.0", "") else options.admin_address
    endpoint = {
        "address": {"socket_address": {"address": address, "port_value": options.admin_port}}
    }
    return {
        "name": ADMIN_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": ADMIN_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": endpoint}]}],
        },
    }
