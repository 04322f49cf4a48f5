"""The response cache: an exact-match store of answers inside a Lua filter, per Envoy worker.

Owns the cache filter (`gatewayctl.cache`: cache.lua with the store module cache_store.lua),
its data, the switch that turns it on per route, and what the body filter needs to compute the
key (cache_request.lua). The filter sits after the limits and guardrails, before the router,
so a hit has passed every check a request passes and never reaches a provider. It has no
default source: only routes whose policy has a cache name its source (LuaPerRoute), so other
routes run no Lua in it (Envoy looks up the route's filter config, and continues). Nothing
here renders on a gateway without a cache.

Stores: one per distinct set of route policies with a cache (routes with the same policies
share one, bounded by the policy's maxBytes), per worker: each Envoy worker runs its own Lua
state, so N workers keep N independent stores (docs/data-plane.md, response cache).
Why not Envoy's cache filter: it looks up GET and HEAD only, and its in-memory store has no
size bound.

In `limits.scope: global` the stores are shared instead: every replica's cache filter looks
up and stores through the cache store service (local/cachestore/: HTTP/1.1 in front of the
gateway's Redis), the cluster CACHE_STORE_CLUSTER. The lookup waits at most the limits'
timeout (`limits.timeout`, the rate limit service's too); a store call is sent once the answer
is complete and not waited for. A store that fails or is late is a miss, never a failed request.
"""

from __future__ import annotations

from typing import Any

from gatewayctl.ir import GatewayIR, RouteIR
from gatewayctl.render.envoy.global_limits import HTTP_OPTIONS_KEY, HTTP_OPTIONS_TYPE
from gatewayctl.render.envoy.lua import assemble
from gatewayctl.render.envoy.names import (
    CACHE_FILTER,
    CACHE_HEADER,
    LUA_PER_ROUTE_TYPE,
    LUA_TYPE,
)
from gatewayctl.render.envoy.options import EnvoyOptions

# The filter's one named source (a disabled Lua filter is switched on by naming a source).
CACHE_SOURCE = "cache"
STORE_MODULE = (("store", "cache_store.lua"),)


def cache_routes(ir: GatewayIR) -> tuple[RouteIR, ...]:
    return tuple(r for r in ir.routes if r.policy.cache is not None)


def has_cache(ir: GatewayIR) -> bool:
    return any(r.policy.cache is not None for r in ir.routes)


def _store_names(ir: GatewayIR) -> dict[tuple[str, ...], str]:
    """A store per distinct policy list among the cache routes, named s0, s1, ... in order."""
    keys = sorted({r.policy.sources for r in cache_routes(ir)})
    return {k: f"s{i}" for i, k in enumerate(keys)}


def route_cache_data(route: RouteIR) -> dict[str, Any] | None:
    """The body filter's view of a route's cache (gateway.lua, cache_request.lua)."""
    cache = route.policy.cache
    if cache is None:
        return None
    return {"shared": cache.by == "route", "on_request": cache.mode == "on-request"}


# The shared store (global scope): the service's cluster and port (render/k8s/cachestore.py).
CACHE_STORE_CLUSTER = "gatewayctl_cache_store"
CACHE_STORE_PORT = 8090
# How long a store call may take before Envoy gives up on it (nobody waits for it).
STORE_TIMEOUT_MS = 2000


def shared_store(ir: GatewayIR) -> bool:
    """Whether the gateway's cache routes share one store through Redis (global scope)."""
    return ir.limits.scope == "global" and has_cache(ir)


def cache_store_service(ir: GatewayIR) -> str:
    """The Kubernetes Service of the cache store (render/k8s/cachestore.py names it too)."""
    return f"{ir.name}-cache-store"


def cache_store_text(ir: GatewayIR) -> str:
    """Where the gateway's cache lives, in users' words (explain, plan)."""
    if ir.limits.scope == "global":
        return (f"shared by every replica: Redis {ir.limits.redis_address} through the cache "
                f"store service {cache_store_service(ir)} (a miss when it fails or takes longer "
                f"than {ir.limits.timeout_ms} ms)")
    return "per Envoy worker (each worker of each replica keeps its own entries)"


def cache_store_address(ir: GatewayIR, options: EnvoyOptions) -> tuple[str, int]:
    """Where Envoy finds the cache store service: the options' override (the local gateway's
    child process), else the Service rendered beside the gateway."""
    if options.cache_store_address:
        host, _, port = options.cache_store_address.rpartition(":")
        return host, int(port)
    return f"{cache_store_service(ir)}.{ir.namespace}.svc.cluster.local", CACHE_STORE_PORT


def render_cache_store_cluster(ir: GatewayIR, options: EnvoyOptions) -> list[dict[str, Any]]:
    """The cache store service's cluster (HTTP/1.1); none unless the stores are shared."""
    if not shared_store(ir):
        return []
    host, port = cache_store_address(ir, options)
    endpoint = {"address": {"socket_address": {"address": host, "port_value": port}}}
    return [
        {
            "name": CACHE_STORE_CLUSTER,
            "type": "STRICT_DNS",
            "connect_timeout": "0.25s",
            "typed_extension_protocol_options": {
                HTTP_OPTIONS_KEY: {
                    "@type": HTTP_OPTIONS_TYPE,
                    "explicit_http_config": {"http_protocol_options": {}},
                }
            },
            "load_assignment": {
                "cluster_name": CACHE_STORE_CLUSTER,
                "endpoints": [{"lb_endpoints": [{"endpoint": endpoint}]}],
            },
        }
    ]


def cache_lua_data(ir: GatewayIR) -> dict[str, Any]:
    names = _store_names(ir)
    routes: dict[str, Any] = {}
    stores: dict[str, int] = {}
    for route in cache_routes(ir):
        cache = route.policy.cache
        assert cache is not None
        store = names[route.policy.sources]
        stores[store] = cache.max_bytes
        routes[route.name] = {
            "store": store, "ttl": cache.ttl_s, "max_entry": cache.max_entry_bytes
        }
    data: dict[str, Any] = {"routes": routes, "stores": stores}
    if shared_store(ir):
        data["shared"] = {
            "cluster": CACHE_STORE_CLUSTER,
            "lookup_timeout_ms": ir.limits.timeout_ms,
            "store_timeout_ms": STORE_TIMEOUT_MS,
        }
    return data


def render_cache_filter(ir: GatewayIR) -> dict[str, Any] | None:
    """The listener's entry, with no default source: it runs only on the routes that name its
    source (cache_route_config); None without a cache. (Not `disabled` in the listener: Envoy
    decides that when the request's filters are created, from the route matched before the
    body filter has chosen one.)"""
    if not has_cache(ir):
        return None
    source = assemble(cache_lua_data(ir), STORE_MODULE, "cache.lua")
    return {
        "name": CACHE_FILTER,
        "typed_config": {
            "@type": LUA_TYPE,
            "source_codes": {CACHE_SOURCE: {"inline_string": source}},
        },
    }


def cache_route_config(route: RouteIR) -> dict[str, Any]:
    """typed_per_filter_config of a route: the cache filter's source where its policy has a
    cache. The filter has no default source, so on every other route it runs no Lua."""
    if route.policy.cache is None:
        return {}
    return {CACHE_FILTER: {"@type": LUA_PER_ROUTE_TYPE, "name": CACHE_SOURCE}}


def cache_request_headers(ir: GatewayIR) -> list[str]:
    """The client's x-gateway-cache (`use`, read by the body filter), removed before a request
    goes upstream on gateways with a cache: it is the gateway's, not the provider's."""
    return [CACHE_HEADER] if has_cache(ir) else []
