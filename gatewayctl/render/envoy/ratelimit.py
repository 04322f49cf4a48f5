"""Request and token limits: two local_ratelimit filters in the listener, one bucket set per route.

Requests: `envoy.filters.http.local_ratelimit`; token limits: a second instance
(`gatewayctl.token_limit`) whose descriptors charge `hits_addend` from a header the Lua filter
sets per request: 1 for the request itself plus the tokens that earlier responses used beyond
their own 1 (see docs/data-plane.md).

Both are configured once, at the listener, not per route: the i-th limit of a route is the
descriptor [(l<i>, <route>)] (by: route) or [(l<i>, <route>), (consumer, *)] (by: consumer;
the empty value is a wildcard: one bucket per consumer), built from the x-gw-route and
x-gw-consumer headers the Lua filter sets. Each route still has its own buckets and a limit
applies separately on each route its policy is attached to, but a route costs one descriptor
per limit (about 130 bytes) instead of a whole filter config. Buckets live in the Envoy
process (shared by its workers), per replica. Descriptors are embedded in the filter config's
own `rate_limits` (the route-level form is announced for removal).

On gateways the compiled filters serve (`dataPlaneFilters: module`), the module's `limits`
filter enforces the same limits instead (module/gw_limits.h: the same buckets, refill, LRU,
charge and reply): on the routes the compiled body filter serves (body_module.py) from the body
filter's per-request state, on the routes the Lua body filter serves from the same headers the
Lua sets for Envoy's filters (x-gw-route, x-gw-consumer, x-gw-token-charge-<n>). Envoy's two
filters then leave the listener; only a route with more limits of a kind than the module takes
(MODULE_MAX_LIMITS) keeps them, switched off on the others (`module_routes` below).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from gatewayctl.ir import GatewayIR, LimitIR, RouteIR
from gatewayctl.render.envoy.names import (
    CONSUMER_HEADER,
    LIMIT_RESPONSE_HEADER,
    LOCAL_RATELIMIT_TYPE,
    REQUEST_LIMIT_FILTER,
    ROUTE_HEADER,
    TOKEN_CHARGE_HEADER,
    TOKEN_LIMIT_FILTER,
)

# Consumers tracked per consumer-keyed limit (LRU beyond); the filter-wide cap is this times
# the number of such limits.
MAX_DYNAMIC_DESCRIPTORS = 10000
# The default bucket only applies to a request that matches no descriptor, which the Lua
# filter prevents (it always sets x-gw-consumer); it is effectively unlimited.
_UNLIMITED = {"max_tokens": 1_000_000_000, "tokens_per_fill": 1_000_000_000, "fill_interval": "1s"}
_ALWAYS = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}


def token_charge_header(index: int) -> str:
    return TOKEN_CHARGE_HEADER.format(index=index)


def _bucket(limit: LimitIR) -> dict[str, Any]:
    return {
        "max_tokens": limit.amount,
        "tokens_per_fill": limit.amount,
        "fill_interval": f"{limit.period_s}s",
    }


def _route_entry(slot: int) -> dict[str, Any]:
    return {"request_headers": {"header_name": ROUTE_HEADER, "descriptor_key": f"l{slot}"}}


_CONSUMER_ENTRY = {
    "request_headers": {"header_name": CONSUMER_HEADER, "descriptor_key": "consumer"}
}


def _capacity(per_consumer: int) -> int:
    """max_dynamic_descriptors of a limiter with `per_consumer` limits by consumer: what Envoy
    keeps per such limit (each has an LRU of this size)."""
    return MAX_DYNAMIC_DESCRIPTORS * max(1, per_consumer)


def _limiter(
    stat_prefix: str,
    kind: str,
    limits: list[tuple[str, tuple[LimitIR, ...]]],
    charge_tokens: bool,
) -> dict[str, Any]:
    """One filter config for every route's limits of one kind (requests or tokens)."""
    descriptors: list[dict[str, Any]] = []
    used: set[tuple[int, str]] = set()
    for route, route_limits in limits:
        for slot, limit in enumerate(route_limits):
            entries: list[dict[str, str]] = [{"key": f"l{slot}", "value": route}]
            if limit.by == "consumer":
                entries.append({"key": "consumer"})  # no value: one bucket per consumer
            descriptors.append({"entries": entries, "token_bucket": _bucket(limit)})
            used.add((slot, limit.by))
    rate_limits: list[dict[str, Any]] = []
    for slot, by in sorted(used):
        actions = [_route_entry(slot)] + ([_CONSUMER_ENTRY] if by == "consumer" else [])
        entry: dict[str, Any] = {"actions": actions}
        if charge_tokens:
            entry["hits_addend"] = {"format": f"%REQ({token_charge_header(slot)})%"}
        rate_limits.append(entry)
    config: dict[str, Any] = {"@type": LOCAL_RATELIMIT_TYPE, "stat_prefix": stat_prefix}
    per_consumer = sum(1 for d in descriptors if len(d["entries"]) > 1)
    config.update(
        {
            "token_bucket": dict(_UNLIMITED),
            "filter_enabled": _ALWAYS,
            "filter_enforced": _ALWAYS,
            "always_consume_default_token_bucket": False,
            "max_dynamic_descriptors": _capacity(per_consumer),
            "rate_limits": rate_limits,
            "descriptors": descriptors,
            "response_headers_to_add": [
                {
                    "header": {"key": LIMIT_RESPONSE_HEADER, "value": kind},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }
            ],
        }
    )
    return config


def _local_routes(ir: GatewayIR) -> tuple[RouteIR, ...]:
    """The routes whose limits this Envoy counts itself: all in replica scope, none in global
    scope (global_limits.py then sends them to the rate limit service)."""
    return ir.routes if ir.limits.scope == "replica" else ()


def render_ratelimit_filters(
    ir: GatewayIR, module_routes: Collection[str] = ()
) -> list[dict[str, Any]]:
    """The HCM entries: every route's request limits, then every route's token limits; a
    kind no route limits here has no filter, nor one that only routes in `module_routes`
    (whose limits the module enforces) limit. A filter's config is the same either way."""
    ordered = sorted(_local_routes(ir), key=lambda r: r.name)
    requests = [(r.name, r.policy.rate_limits) for r in ordered if r.policy.rate_limits]
    tokens = [(r.name, r.policy.token_limits) for r in ordered if r.policy.token_limits]
    present = local_limiters(ir, module_routes)
    out = []
    if present[0]:
        out.append(
            {
                "name": REQUEST_LIMIT_FILTER,
                "typed_config": _limiter("requests", "requests", requests, charge_tokens=False),
            }
        )
    if present[1]:
        out.append(
            {
                "name": TOKEN_LIMIT_FILTER,
                "typed_config": _limiter("tokens", "tokens", tokens, charge_tokens=True),
            }
        )
    return out


def local_limiters(ir: GatewayIR, module_routes: Collection[str] = ()) -> tuple[bool, bool]:
    """Whether the listener has the request limiter and the token limiter: a route outside
    `module_routes` limits requests, or tokens."""
    routes = [r for r in _local_routes(ir) if r.name not in module_routes]
    return any(r.policy.rate_limits for r in routes), any(r.policy.token_limits for r in routes)


def limit_route_configs(
    ir: GatewayIR, route: RouteIR, present: tuple[bool, bool], module: bool = False
) -> dict[str, Any]:
    """typed_per_filter_config of a route: each limiter the listener has (`present`, from
    local_limiters) and the route does not use, switched off, and both on a route whose limits
    the module enforces (`module`). A per-route LocalRateLimit replaces the listener's for the
    route; without `filter_enabled` it lets every request through at once, without building
    descriptors (Envoy wants a token bucket in it all the same)."""
    local = ir.limits.scope == "replica" and not module
    out: dict[str, Any] = {}
    for (name, prefix), has_filter, used in (
        ((REQUEST_LIMIT_FILTER, "requests"), present[0], local and bool(route.policy.rate_limits)),
        ((TOKEN_LIMIT_FILTER, "tokens"), present[1], local and bool(route.policy.token_limits)),
    ):
        if has_filter and not used:
            out[name] = {
                "@type": LOCAL_RATELIMIT_TYPE,
                "stat_prefix": prefix,
                "token_bucket": dict(_UNLIMITED),
            }
    return out


def reads_consumer_header(ir: GatewayIR, route: RouteIR) -> bool:
    """Whether a limiter may read the route's x-gw-consumer: in replica scope only a limit of
    the route by consumer does (its descriptor entry); in global scope the rate limit filters
    are taken as reading it."""
    if ir.limits.scope != "replica":
        return True
    return any(limit.by == "consumer"
               for limit in (*route.policy.rate_limits, *route.policy.token_limits))


def token_limit_data(ir: GatewayIR, route: RouteIR) -> list[dict[str, Any]]:
    """What the Lua filter needs to carry token debt for this route's limits, and the period
    of each (its bound on Retry-After, request_limit_data)."""
    if ir.limits.scope != "replica":
        return []
    return [
        {"key": f"t{i}", "by": limit.by, "max": limit.amount, "header": token_charge_header(i),
         "period": limit.period_s}
        for i, limit in enumerate(route.policy.token_limits)
    ]


def request_limit_data(ir: GatewayIR, route: RouteIR) -> list[dict[str, Any]] | None:
    """The route's local request limits as the Lua filter bounds a refusal's Retry-After by
    them (Envoy's local_ratelimit tells it nothing of its buckets): each refills its one token
    in period / max seconds. None without any."""
    if ir.limits.scope != "replica" or not route.policy.rate_limits:
        return None
    return [{"max": limit.amount, "period": limit.period_s} for limit in route.policy.rate_limits]


def token_charge_headers(ir: GatewayIR) -> list[str]:
    count = max((len(r.policy.token_limits) for r in _local_routes(ir)), default=0)
    return [token_charge_header(i) for i in range(count)]


# The most limits of one kind per route the module enforces (module/gw_limits.h GL_MAX_LIMITS);
# a route with more keeps Envoy's filters.
MODULE_MAX_LIMITS = 8


def _module_limit(limit: LimitIR) -> dict[str, Any]:
    # the bucket _bucket() renders: max_tokens = tokens_per_fill = amount per fill_interval
    return {"max": limit.amount, "fill_ms": limit.period_s * 1000,
            "by_consumer": limit.by == "consumer"}


def module_limit_data(ir: GatewayIR, served: Collection[str]) -> dict[str, dict[str, Any]]:
    """The local limits the module's `limits` filter enforces, by route: those of the routes in
    `served` (the body module's, for its config; or the Lua's, for the `limits` filter's own)
    that have any, in the order of the descriptors above (the token limits in
    token_limit_data's order, whose charge headers the Lua sets by position)."""
    out: dict[str, dict[str, Any]] = {}
    for route in _local_routes(ir):
        requests, tokens = route.policy.rate_limits, route.policy.token_limits
        if (route.name not in served or not (requests or tokens)
                or max(len(requests), len(tokens)) > MODULE_MAX_LIMITS):
            continue
        out[route.name] = {"requests": [_module_limit(limit) for limit in requests],
                           "tokens": [_module_limit(limit) for limit in tokens]}
    return out


def module_limit_capacity(ir: GatewayIR) -> dict[str, int]:
    """Consumers kept per limit by consumer, per kind: each limiter's max_dynamic_descriptors
    (counted over every route, as rendered, whichever filter enforces the route)."""
    routes = _local_routes(ir)
    return {
        "requests": _capacity(sum(1 for r in routes for limit in r.policy.rate_limits
                                  if limit.by == "consumer")),
        "tokens": _capacity(sum(1 for r in routes for limit in r.policy.token_limits
                                if limit.by == "consumer")),
    }
