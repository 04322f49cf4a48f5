"""Request and token limits: two local_ratelimit filters, configured per route.

Requests: `envoy.filters.http.local_ratelimit`; each LimitIR is one descriptor (by consumer:
one bucket per value of the x-gw-consumer header the Lua filter sets; by route: one bucket).
Token limits: a second local_ratelimit instance (`gatewayctl.token_limit`) whose descriptors
charge `hits_addend` from a header the Lua filter sets per request: 1 for the request itself
plus the tokens that earlier responses used beyond their own 1 (see docs/data-plane.md).
Buckets live in the Envoy process (shared by its workers), one set per route and replica.
Descriptors are embedded in the filter config's own `rate_limits` (the route-level form is
announced for removal).
"""

from __future__ import annotations

from typing import Any

from gatewayctl.ir import LimitIR, RouteIR
from gatewayctl.render.envoy.names import (
    CONSUMER_HEADER,
    LIMIT_RESPONSE_HEADER,
    LOCAL_RATELIMIT_TYPE,
    REQUEST_LIMIT_FILTER,
    TOKEN_CHARGE_HEADER,
    TOKEN_LIMIT_FILTER,
)

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


def _limiter(
    stat_prefix: str, kind: str, limits: tuple[LimitIR, ...], charge_tokens: bool
) -> dict[str, Any]:
    rate_limits: list[dict[str, Any]] = []
    descriptors: list[dict[str, Any]] = []
    for i, limit in enumerate(limits):
        key = f"{kind[0]}{i}"
        if limit.by == "consumer":
            actions = [{"request_headers": {"header_name": CONSUMER_HEADER, "descriptor_key": key}}]
            entries = [{"key": key}]  # no value: one bucket per consumer
        else:
            actions = [{"generic_key": {"descriptor_key": key, "descriptor_value": "route"}}]
            entries = [{"key": key, "value": "route"}]
        entry: dict[str, Any] = {"actions": actions}
        if charge_tokens:
            entry["hits_addend"] = {"format": f"%REQ({token_charge_header(i)})%"}
        rate_limits.append(entry)
        descriptors.append({"entries": entries, "token_bucket": _bucket(limit)})
    return {
        "@type": LOCAL_RATELIMIT_TYPE,
        "stat_prefix": stat_prefix,
        "token_bucket": dict(_UNLIMITED),
        "filter_enabled": _ALWAYS,
        "filter_enforced": _ALWAYS,
        "always_consume_default_token_bucket": False,
        "max_dynamic_descriptors": MAX_DYNAMIC_DESCRIPTORS,
        "rate_limits": rate_limits,
        "descriptors": descriptors,
        "response_headers_to_add": [
            {
                "header": {"key": LIMIT_RESPONSE_HEADER, "value": kind},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ],
    }


def render_ratelimit_filters() -> list[dict[str, Any]]:
    """The HCM entries: pass-through until a route configures a bucket."""
    return [
        {
            "name": name,
            "typed_config": {"@type": LOCAL_RATELIMIT_TYPE, "stat_prefix": prefix},
        }
        for name, prefix in ((REQUEST_LIMIT_FILTER, "requests"), (TOKEN_LIMIT_FILTER, "tokens"))
    ]


def render_route_ratelimits(route: RouteIR) -> dict[str, Any]:
    """typed_per_filter_config entries for one route."""
    out: dict[str, Any] = {}
    if route.policy.rate_limits:
        out[REQUEST_LIMIT_FILTER] = _limiter(
            f"requests_{route.name}", "requests", route.policy.rate_limits, charge_tokens=False
        )
    if route.policy.token_limits:
        out[TOKEN_LIMIT_FILTER] = _limiter(
            f"tokens_{route.name}", "tokens", route.policy.token_limits, charge_tokens=True
        )
    return out


def token_limit_data(route: RouteIR) -> list[dict[str, Any]]:
    """What the Lua filter needs to carry token debt for this route's limits."""
    return [
        {"key": f"t{i}", "by": limit.by, "max": limit.amount, "header": token_charge_header(i)}
        for i, limit in enumerate(route.policy.token_limits)
    ]


def token_charge_headers(routes: tuple[RouteIR, ...]) -> list[str]:
    count = max((len(r.policy.token_limits) for r in routes), default=0)
    return [token_charge_header(i) for i in range(count)]
