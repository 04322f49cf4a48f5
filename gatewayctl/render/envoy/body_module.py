"""The compiled body filter (the module's `body`, module/gw_body*.c): which routes it serves,
its config, and the per-route switch that keeps the Lua body filter off those routes.

It serves a route whose request and response paths it has ported: routing on `model`, the
body limit, access, prompts, the guard text, redaction, the upstream model, a pinned route's
target, local token limits (their debt per worker), usage, cost, the prompt-version header,
the guardrail mark and the provider's 401/403, and (with the module's `limits` filter after RBAC)
the local request and token limits. Routes that need more stay with the Lua body
filter (gateway.lua), which follows it in the chain and takes every request the module
leaves: routes with a native provider (translation checks), a response cache, output
guardrails, global limits or more local request limits than the module's `limits` filter
takes, and every route of a gateway with enforced budgets. On the
routes the module serves, the Lua filter is switched off (LuaPerRoute `disabled`): the
module sets x-gw-route and clears the route cache before the Lua filter's turn, so the Lua
runs neither the request nor the response of those requests.

The config is the Lua filter's data table (listener.gateway_lua_data) cut to what the module
reads: the endpoints, every public model (a model of a route it does not serve is left to the
Lua), its routes with their policies, the providers, the prices (as decimal strings: the
module's config reader takes integers only), the secret TTL, and the names. A config the
module's bounded reader could not take (module/gw_json.h: 1 MiB, 65,536 values, no NUL in a
string) serves no route: the Lua serves them all, as without the module. Owns no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from gatewayctl.render.envoy.names import (
    LUA_FILTER,
    LUA_NAMES,
    LUA_PER_ROUTE_TYPE,
    MODULE_LIMITED_KEY,
)
from gatewayctl.render.envoy.ratelimit import MODULE_MAX_LIMITS

BODY_FILTER_NAME = "body"  # the module's filter_name
# The names module/gw_body_config.c reads (names.py's LUA_NAMES).
BODY_MODULE_NAMES = (
    "metadata_ns", "internal_ns", "route_header", "consumer_header", "body_model_header",
    "principal_header", "reply_header", "client_key_headers", "route_key", "consumer_key",
    "guard_set_key", "guard_text_key", "model_response_header", "prompt_version_header",
    "limit_response_header", "guardrail_response_header", "rbac_filter", "prompt_tokens_key",
    "completion_tokens_key", "cost_key",
)  # fmt: skip
# module/gw_json.h's bounds, with room for the envelope (abi, names).
MAX_CONFIG_BYTES = (1 << 20) - 4096
MAX_CONFIG_VALUES = 65536 - 256
MAX_TOKEN_LIMITS = 8  # module/gw_body_config.h GB_MAX_TOKEN_LIMITS


def _served(route: Mapping[str, Any], policy: Mapping[str, Any]) -> bool:
    return (
        route.get("native") is None
        and policy.get("cache") is None
        and policy.get("outguard") is None
        and policy.get("global") is None
        and not policy.get("global_tokens")
        and len(policy.get("token_limits") or ()) <= MAX_TOKEN_LIMITS
        # more request limits than the module's `limits` filter takes: Envoy's limiter keeps
        # them, whose 429 gets its Retry-After from the Lua
        and len(policy.get("request_limits") or ()) <= MODULE_MAX_LIMITS
        and "\\u0000" not in json.dumps(route)  # the config reader refuses NUL in a string
    )


def served_routes(lua_data: Mapping[str, Any]) -> list[str]:
    """The routes the module serves, by name (sorted), from the Lua filter's data."""
    if lua_data.get("budgets"):
        return []
    policies = lua_data["policies"]
    return sorted(name for name, route in lua_data["routes"].items()
                  if _served(route, policies[route["policy"]]))


def _values(value: Any) -> int:
    if isinstance(value, Mapping):
        return 1 + sum(_values(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return 1 + sum(_values(v) for v in value)
    return 1


def body_module_data(lua_data: Mapping[str, Any],
                     no_consumer_header: Collection[str] = (),
                     limits: Mapping[str, Any] | None = None,
                     limit_capacity: Mapping[str, int] | None = None,
                     logger_only: Collection[str] = (),
                     counted: Mapping[str, Collection[str]] | None = None
                     ) -> dict[str, Any] | None:
    """The module body filter's config data, or None when it would serve no route.
    `no_consumer_header`: routes whose x-gw-consumer nothing reads (no limit by consumer
    Envoy enforces): the module does not set it there (`consumer_header: false`; a header
    write costs ~1.2k instructions). `limits`: the local limits the module's `limits` filter
    enforces, by route (ratelimit.module_limit_data), with `limit_capacity`
    (ratelimit.module_limit_capacity); this filter's config references their buckets, which
    are module-global and outlive it for every limit the next config keeps (gw_limits.h).
    `logger_only`: the `gw` keys only the compiled access logger reads on the module's routes
    (it takes them from the module's stream): left out of Envoy's metadata there (`log_only`),
    but for the keys `counted` names for a route (its per-backend counters read them)."""
    names = served_routes(lua_data)
    if not names:
        return None
    limits = limits or {}
    counted = counted or {}
    routes = {name: {**lua_data["routes"][name],
                     **({"consumer_header": False} if name in no_consumer_header else {}),
                     **({"limits": limits[name]} if name in limits else {}),
                     **({"metadata_keys": {k: True for k in sorted(counted[name])}}
                        if counted.get(name) else {})}
              for name in names}
    used = {route["policy"] for route in routes.values()}
    data = {
        "endpoints": lua_data["endpoints"],
        "models": lua_data["models"],
        "routes": routes,
        "policies": {pid: p for pid, p in lua_data["policies"].items() if pid in used},
        "providers": lua_data["providers"],
        "prices": {model: [repr(float(p)) for p in prices]
                   for model, prices in lua_data["prices"].items()},
        "secret_ttl_s": lua_data["secret_ttl_s"],
        "names": {key: LUA_NAMES[key] for key in BODY_MODULE_NAMES},
        **({"limit_capacity": dict(limit_capacity)}
           if limit_capacity is not None and any(n in limits for n in names) else {}),
        **({"log_only": {k: True for k in sorted(logger_only)}} if logger_only else {}),
    }
    return data if fits_module_config(data) else None


def fits_module_config(data: Mapping[str, Any]) -> bool:
    """Whether the module's bounded config reader takes `data` (module/gw_json.h)."""
    return (len(json.dumps(data, separators=(",", ":"))) <= MAX_CONFIG_BYTES
            and _values(data) <= MAX_CONFIG_VALUES)


def limits_module_data(lua_limits: Mapping[str, Any] | None = None,
                       limit_capacity: Mapping[str, int] | None = None,
                       charge_headers: Sequence[str] = (),
                       body_filter: bool = True) -> dict[str, Any]:
    """The module's `limits` filter's config (module/gw_limits.h): the names it answers with
    and reads, whether the module's body filter is in the chain (`body_filter`), and the local
    limits of the routes the Lua body filter serves (`lua_limits`,
    ratelimit.module_limit_data), enforced from the Lua's x-gw-route, x-gw-consumer and
    token-charge headers (`charge_headers`, by limit position), with `limit_capacity`; the
    module's own routes' limits and their buckets are the body filter's."""
    names = ("limit_response_header", "internal_ns", "route_header", "consumer_header")
    data: dict[str, Any] = {"names": {**{key: LUA_NAMES[key] for key in names},
                                      "limited_key": MODULE_LIMITED_KEY},
                            "body_filter": body_filter}
    if lua_limits:
        data.update(routes=dict(lua_limits), limit_capacity=dict(limit_capacity or {}),
                    token_charge_headers=list(charge_headers))
    return data


def module_limited_routes(data: Mapping[str, Any] | None) -> frozenset[str]:
    """The routes whose local limits the module enforces, from the body filter's data."""
    if data is None:
        return frozenset()
    return frozenset(name for name, route in data["routes"].items() if "limits" in route)


def lua_route_disabled() -> dict[str, Any]:
    """The per-route config that switches the Lua body filter off on a route the module serves."""
    return {LUA_FILTER: {"@type": LUA_PER_ROUTE_TYPE, "disabled": True}}
