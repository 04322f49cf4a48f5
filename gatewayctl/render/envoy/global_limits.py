"""Global limits (LimitsIR.scope "global"): Envoy's rate limit filter and its service.

One instance of `envoy.filters.http.ratelimit` in the listener. It asks the rate limit service
(`envoyproxy/ratelimit` on Kubernetes, the stand-in of `gatewayctl up`) over gRPC; the
service counts in Redis, so every replica shares one count per limit. What a request sends is
set per route, in the filter's own per-route `rate_limits` (RateLimitPerRoute): a route without
limits sends nothing and never waits for the service, so a failing service cannot touch it.

Per request, one call before it goes on, carrying every descriptor of the route, and one after
the stream is done (`apply_on_stream_done`, sent by Envoy when the stream ends and not waited
for) carrying what the response used. Each descriptor carries its own `hits_addend` (only the
per-route `rate_limits` of the filter send it; the route entry's `rate_limits` drop it in this
build):

- request limit i of route R: [(l<i>, R)] or [(l<i>, R), (consumer, C)] (by: consumer): the
  local limiter's own descriptors (ratelimit.py), read from the route and consumer the Lua
  filter records in dynamic metadata (gw.route, gw.consumer) rather than from its x-gw-*
  headers, because the router strips those before the upstream and the descriptors sent when
  the stream is done are built from the same request headers, after that. 1 hit.
- token limit i: [(t<i>, R)] or [(t<i>, R), (consumer, C)]: 0 hits when the request arrives
  (a check: admitted while the count is within the limit), then, when the stream is done, the
  tokens its usage says (gw.internal.tokens_used, set by the Lua filter from the response or
  the stream's usage). The one request whose own usage crosses the limit is let through, as in
  replica scope.
- an enforced budget: [(budget, C)] from gw.internal.budget, which the Lua filter sets only
  for a consumer whose budget is enforced: a check when the request arrives, then the
  response's cost in units (gw.internal.budget_units). A unit is budget_unit_usd(ir).

The descriptors charged when the stream is done read their first value from a key the Lua
filter sets only with something to charge (gw.internal.tokens_route: the route, with its
tokens; gw.internal.budget_consumer: the consumer, with its cost). A response without usage
(an error, a refusal) sets none: Envoy leaves those descriptors out (an absent metadata value
drops its descriptor silently, where a missing hits_addend would log "Invalid hits_addend")
and, with nothing left, makes no call.

The filter answers every refusal with `x-gateway-limit: global`; the Lua filter, which sees the
429 on its way out, asks the service which descriptor is over (one call with every hit 0, on
refusals only) and puts the kind of limit (`requests`, `tokens`, `budget`) in its place.
"""

from __future__ import annotations

import math
from typing import Any

from gatewayctl.ir import GatewayIR, LimitIR, RouteIR
from gatewayctl.render.envoy.names import (
    BUDGET_CHARGED_KEY,
    BUDGET_DESCRIPTOR,
    BUDGET_KEY,
    BUDGET_UNITS_KEY,
    CONSUMER_DESCRIPTOR,
    CONSUMER_KEY,
    GLOBAL_REFUSAL,
    INTERNAL_NS,
    LIMIT_RESPONSE_HEADER,
    METADATA_NS,
    REQUESTS_LIMIT,
    ROUTE_KEY,
    TOKENS_CHARGED_KEY,
    TOKENS_LIMIT,
    TOKENS_USED_KEY,
    TYPE_PREFIX,
)
from gatewayctl.render.envoy.options import EnvoyOptions

RATELIMIT_TYPE = TYPE_PREFIX + "envoy.extensions.filters.http.ratelimit.v3.RateLimit"
HTTP_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
HTTP_OPTIONS_TYPE = TYPE_PREFIX + HTTP_OPTIONS_KEY
RATELIMIT_CLUSTER = "gatewayctl_ratelimit"
# The rate limit service's gRPC port (envoyproxy/ratelimit's default GRPC_PORT).
RATELIMIT_GRPC_PORT = 8081

GLOBAL_FILTER = "gatewayctl.limits_global"
RATELIMIT_PER_ROUTE_TYPE = (
    TYPE_PREFIX + "envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute"
)
# An enforced budget's window: the service's `month`, 30 days from the Unix epoch.
BUDGET_WINDOW_S = 30 * 86400
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
    """The listener's rate limit filter; none in replica scope."""
    if not is_global(ir):
        return []
    return [
        {
            "name": GLOBAL_FILTER,
            "typed_config": {
                "@type": RATELIMIT_TYPE,
                "domain": ir.name,
                "timeout": f"{ir.limits.timeout_ms / 1000:g}s",
                "failure_mode_deny": ir.limits.failure_mode == "closed",
                "rate_limit_service": {
                    "grpc_service": {"envoy_grpc": {"cluster_name": RATELIMIT_CLUSTER}},
                    "transport_api_version": "V3",
                },
                "response_headers_to_add": [
                    {
                        "header": {"key": LIMIT_RESPONSE_HEADER, "value": GLOBAL_REFUSAL},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    }
                ],
            },
        }
    ]


def _metadata_entry(namespace: str, field: str, key: str) -> dict[str, Any]:
    """A descriptor entry from a dynamic-metadata string; absent: no descriptor (no call)."""
    path = [{"key": field}]
    return {"metadata": {"descriptor_key": key, "metadata_key": {"key": namespace, "path": path}}}


def _limit_actions(prefix: str, slot: int, limit: LimitIR,
                   route_from: tuple[str, str] = (METADATA_NS, ROUTE_KEY)) -> list[dict[str, Any]]:
    actions = [_metadata_entry(*route_from, f"{prefix}{slot}")]
    if limit.by == "consumer":
        actions.append(_metadata_entry(METADATA_NS, CONSUMER_KEY, CONSUMER_DESCRIPTOR))
    return actions


def _hits_from(key: str) -> dict[str, Any]:
    return {"format": f"%DYNAMIC_METADATA({INTERNAL_NS}:{key})%"}


def route_rate_limits(ir: GatewayIR, route: RouteIR) -> dict[str, Any] | None:
    """The route's typed_per_filter_config for the rate limit filter: what its requests send
    to the service, before and after; None without any global limit."""
    if not is_global(ir):
        return None
    before: list[dict[str, Any]] = []
    after: list[dict[str, Any]] = []
    for slot, limit in enumerate(route.policy.rate_limits):
        before.append({"actions": _limit_actions("l", slot, limit)})
    for slot, limit in enumerate(route.policy.token_limits):
        before.append({"actions": _limit_actions("t", slot, limit),
                       "hits_addend": {"number": 0}})
        # the same descriptor, its route read from the key set only with tokens to charge
        charged = _limit_actions("t", slot, limit, (INTERNAL_NS, TOKENS_CHARGED_KEY))
        after.append({"actions": charged, "apply_on_stream_done": True,
                      "hits_addend": _hits_from(TOKENS_USED_KEY)})
    if enforced_budgets(ir):
        budget = [_metadata_entry(INTERNAL_NS, BUDGET_KEY, BUDGET_DESCRIPTOR)]
        before.append({"actions": budget, "hits_addend": {"number": 0}})
        charged = [_metadata_entry(INTERNAL_NS, BUDGET_CHARGED_KEY, BUDGET_DESCRIPTOR)]
        after.append({"actions": charged, "apply_on_stream_done": True,
                      "hits_addend": _hits_from(BUDGET_UNITS_KEY)})
    if not before:
        return None
    return {"@type": RATELIMIT_PER_ROUTE_TYPE, "rate_limits": before + after}


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


def lua_global_data(ir: GatewayIR) -> dict[str, Any]:
    """What the Lua filter needs for global limits: the service (to learn which limit refused
    a request), which consumers' budgets are enforced, and the budget unit."""
    if not is_global(ir):
        return {}
    data: dict[str, Any] = {
        "ratelimit": {
            "cluster": RATELIMIT_CLUSTER,
            "domain": ir.name,
            "timeout_ms": ir.limits.timeout_ms,
        }
    }
    if enforced_budgets(ir):
        data["budgets"] = {name: True for name, _ in enforced_budgets(ir)}
        data["budget_unit_usd"] = budget_unit_usd(ir)
        data["budget_period"] = BUDGET_WINDOW_S
    return data


def lua_route_charges_tokens(ir: GatewayIR, route: RouteIR) -> bool | None:
    """Whether the Lua filter sets a route's token charge (a token limit in global scope)."""
    return True if is_global(ir) and route.policy.token_limits else None


def lua_route_limits(ir: GatewayIR, route: RouteIR) -> list[dict[str, Any]] | None:
    """The route's request and token limits as the service counts them (descriptor key, by,
    and the window, which bounds Retry-After when the service cannot be asked), in the order
    of the call before the request; None without any."""
    if not is_global(ir):
        return None
    out = [{"key": f"l{i}", "by": lim.by, "kind": REQUESTS_LIMIT, "period": lim.period_s}
           for i, lim in enumerate(route.policy.rate_limits)]
    out += [{"key": f"t{i}", "by": lim.by, "kind": TOKENS_LIMIT, "period": lim.period_s}
            for i, lim in enumerate(route.policy.token_limits)]
    return out or None
