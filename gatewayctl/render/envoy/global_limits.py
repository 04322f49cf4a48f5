"""Global limits (LimitsIR.scope "global"): Envoy's rate limit filter and its service.

Three instances of `envoy.filters.http.ratelimit` in the listener, one per kind of limit
(stage 0 requests, 1 tokens, 2 budget), each answering its 429 with its own
`x-gateway-limit` value. They ask the rate limit service (`envoyproxy/ratelimit` on
Kubernetes, the stand-in of `gatewayctl up`) over gRPC; it counts in Redis, so every replica
shares one count per limit. What a request sends is set per route, in the route entry's
`rate_limits`: a route without limits sends nothing and never waits for the service, so a
failing service cannot touch it.

Descriptors (the service's configuration, render/ratelimit_config.py, matches them):

- request limit i of route R: [(l<i>, R)] or [(l<i>, R), (consumer, C)] (by: consumer): the
  local limiter's own descriptors (ratelimit.py), read from the route and consumer the Lua
  filter records in dynamic metadata (gw.route, gw.consumer) rather than from its x-gw-*
  headers, because the router strips those before the upstream and the descriptors sent when
  the stream is done are built from the same request headers, after that.
- token limit i: [(t<i>, R)] or [(t<i>, R), (consumer, C)]: 1 hit when the request arrives
  (it is admitted while the count is within the limit), then, when the response is done, the
  tokens its usage says beyond that 1, charged by the Lua filter (lua/ratelimit.lua: a
  ShouldRateLimit call it does not wait for, because Envoy 1.40's rate limit filter sends no
  per-descriptor hits from `apply_on_stream_done` entries). The one request whose own usage
  crosses the limit is let through, as in replica scope; streams are charged at their end.
- an enforced budget: [(budget, C)] from gw.internal.budget, which the Lua filter sets only
  for a consumer whose budget is enforced: 1 unit when the request arrives, then the
  response's cost in units, less that 1, charged the same way. A unit is budget_unit_usd(ir).
"""

from __future__ import annotations

import math
from typing import Any

from gatewayctl.ir import GatewayIR, LimitIR, RouteIR
from gatewayctl.render.envoy.names import (
    BUDGET_DESCRIPTOR,
    BUDGET_KEY,
    BUDGET_LIMIT,
    CONSUMER_DESCRIPTOR,
    CONSUMER_KEY,
    INTERNAL_NS,
    LIMIT_RESPONSE_HEADER,
    METADATA_NS,
    ROUTE_KEY,
    TYPE_PREFIX,
)
from gatewayctl.render.envoy.options import EnvoyOptions

RATELIMIT_TYPE = TYPE_PREFIX + "envoy.extensions.filters.http.ratelimit.v3.RateLimit"
HTTP_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
HTTP_OPTIONS_TYPE = TYPE_PREFIX + HTTP_OPTIONS_KEY
RATELIMIT_CLUSTER = "gatewayctl_ratelimit"
# The rate limit service's gRPC port (envoyproxy/ratelimit's default GRPC_PORT).
RATELIMIT_GRPC_PORT = 8081

# (filter name, stage, x-gateway-limit value)
STAGES: tuple[tuple[str, int, str], ...] = (
    ("gatewayctl.limit_requests", 0, "requests"),
    ("gatewayctl.limit_tokens", 1, "tokens"),
    ("gatewayctl.limit_budget", 2, BUDGET_LIMIT),
)
# The service counts in unsigned 32-bit integers: a budget is counted in the smallest unit of
# 10^-k USD (k <= 6) that keeps the largest enforced budget below this.
_MAX_COUNT = 2**32 - 1


def is_global(ir: GatewayIR) -> bool:
    return ir.limits.scope == "global"


def enforced_budgets(ir: GatewayIR) -> list[tuple[str, float]]:
    return [
        (c.name, c.budget_usd_per_month)
        for c in ir.consumers
        if c.budget_enforce and c.budget_usd_per_month
    ]


def budget_unit_usd(ir: GatewayIR) -> float:
    """USD per counted unit of budget: 1e-6 (a micro-dollar) unless a budget would not fit."""
    largest = max((amount for _, amount in enforced_budgets(ir)), default=0.0)
    exponent = 6
    while exponent > 0 and largest * 10**exponent > _MAX_COUNT:
        exponent -= 1
    return float(10**-exponent)


def budget_units(ir: GatewayIR, usd: float) -> int:
    return math.ceil(round(usd / budget_unit_usd(ir), 6))


def ratelimit_address(ir: GatewayIR, options: EnvoyOptions) -> tuple[str, int]:
    """Where Envoy finds the rate limit service: the options' override (the local stand-in),
    else the Service gatewayctl renders beside the gateway (render/k8s/ratelimit.py)."""
    if options.ratelimit_address:
        host, _, port = options.ratelimit_address.rpartition(":")
        return host, int(port)
    return f"{ir.name}-ratelimit.{ir.namespace}.svc.cluster.local", RATELIMIT_GRPC_PORT


def render_global_filters(ir: GatewayIR) -> list[dict[str, Any]]:
    """The listener's rate limit filters, in stage order; none in replica scope."""
    if not is_global(ir):
        return []
    timeout = f"{ir.limits.timeout_ms / 1000:g}s"
    return [
        {
            "name": name,
            "typed_config": {
                "@type": RATELIMIT_TYPE,
                "domain": ir.name,
                "stage": stage,
                "timeout": timeout,
                "failure_mode_deny": ir.limits.failure_mode == "closed",
                "rate_limit_service": {
                    "grpc_service": {"envoy_grpc": {"cluster_name": RATELIMIT_CLUSTER}},
                    "transport_api_version": "V3",
                },
                "response_headers_to_add": [
                    {
                        "header": {"key": LIMIT_RESPONSE_HEADER, "value": kind},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    }
                ],
            },
        }
        for name, stage, kind in STAGES
    ]


def _metadata_entry(namespace: str, field: str, key: str) -> dict[str, Any]:
    """A descriptor entry from a dynamic-metadata string; absent: no descriptor (no call)."""
    path = [{"key": field}]
    return {"metadata": {"descriptor_key": key, "metadata_key": {"key": namespace, "path": path}}}


def _limit_actions(prefix: str, slot: int, limit: LimitIR) -> list[dict[str, Any]]:
    actions = [_metadata_entry(METADATA_NS, ROUTE_KEY, f"{prefix}{slot}")]
    if limit.by == "consumer":
        actions.append(_metadata_entry(METADATA_NS, CONSUMER_KEY, CONSUMER_DESCRIPTOR))
    return actions


def route_rate_limits(ir: GatewayIR, route: RouteIR) -> list[dict[str, Any]]:
    """The route entry's `rate_limits`: what its requests send to the service."""
    if not is_global(ir):
        return []
    out: list[dict[str, Any]] = []
    for slot, limit in enumerate(route.policy.rate_limits):
        out.append({"stage": 0, "actions": _limit_actions("l", slot, limit)})
    for slot, limit in enumerate(route.policy.token_limits):
        out.append({"stage": 1, "actions": _limit_actions("t", slot, limit)})
    if enforced_budgets(ir):
        budget = [_metadata_entry(INTERNAL_NS, BUDGET_KEY, BUDGET_DESCRIPTOR)]
        out.append({"stage": 2, "actions": budget})
    return out


def render_ratelimit_cluster(ir: GatewayIR, options: EnvoyOptions) -> list[dict[str, Any]]:
    """The gRPC cluster of the rate limit service (HTTP/2); none in replica scope."""
    if not is_global(ir):
        return []
    host, port = ratelimit_address(ir, options)
    endpoint = {"address": {"socket_address": {"address": host, "port_value": port}}}
    return [
        {
            "name": RATELIMIT_CLUSTER,
            "type": "STRICT_DNS",
            "connect_timeout": "0.25s",
            "typed_extension_protocol_options": {
                HTTP_OPTIONS_KEY: {
                    "@type": HTTP_OPTIONS_TYPE,
                    "explicit_http_config": {"http2_protocol_options": {}},
                }
            },
            "load_assignment": {
                "cluster_name": RATELIMIT_CLUSTER,
                "endpoints": [{"lb_endpoints": [{"endpoint": endpoint}]}],
            },
        }
    ]


# How long the Lua filter's charge may take (nobody waits for it).
CHARGE_TIMEOUT_MS = 1000


def lua_global_data(ir: GatewayIR) -> dict[str, Any]:
    """What the Lua filter needs to charge the service: where it is, which consumers' budgets
    are enforced, and the budget unit."""
    if not is_global(ir):
        return {}
    data: dict[str, Any] = {
        "ratelimit": {
            "cluster": RATELIMIT_CLUSTER,
            "domain": ir.name,
            "timeout_ms": CHARGE_TIMEOUT_MS,
        }
    }
    if enforced_budgets(ir):
        data["budgets"] = {name: True for name, _ in enforced_budgets(ir)}
        data["budget_unit_usd"] = budget_unit_usd(ir)
    return data


def lua_token_limits(ir: GatewayIR, route: RouteIR) -> list[dict[str, Any]] | None:
    """The route's token limits as the Lua filter charges them; None without any."""
    if not is_global(ir) or not route.policy.token_limits:
        return None
    return [{"key": f"t{i}", "by": lim.by} for i, lim in enumerate(route.policy.token_limits)]
