"""The listener and its HTTP filter chain.

Order matters: health check (GET /healthz/ready, probes.py) -> jwt_authn (only with JWT
policies: verifies bearer tokens, never answers itself; jwt.py) -> [jwt verdict: its failure
messages into headers, for the compiled auth filter only; jwt.py] -> auth Lua or module (the
principal from the headers, its body class) -> buffer (the principal's body bound) -> [the
module's body filter, with `dataPlaneFilters: module`: the same as the body Lua for the routes
it serves, on which the body Lua is switched off; body_module.py] -> body Lua (route
selection, per-route access, guardrail text, prompts, token debt, cache key) -> RBAC (deny
patterns of the route Lua selected) -> [the module's limits, with `dataPlaneFilters:
module`: every route's, the Lua-served ones too; ratelimit.py] -> [request limit -> token
limit: Envoy's, on Lua gateways] -> [global limits] ->
[response cache: on cache routes only, cache.py] -> router. Filters after a Lua filter see
the route chosen by the x-gw-route header because Lua clears the route cache.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gatewayctl.ir import GatewayIR, JwtProviderIR, RouteIR
from gatewayctl.render.envoy import metrics
from gatewayctl.render.envoy.access_log import (
    BACKEND_COUNTER_KEYS,
    LOGGER_ONLY_KEYS,
    render_access_log,
)
from gatewayctl.render.envoy.auth import consumer_data, route_auth_data
from gatewayctl.render.envoy.body import (
    BUFFER_HEADROOM_BYTES,
    LISTENER_BUFFER_BYTES,
    auth_lua_data,
    render_buffer_filter,
    route_body_limit,
)
from gatewayctl.render.envoy.body_module import (
    BODY_FILTER_NAME,
    body_module_data,
    fits_module_config,
    limits_module_data,
    module_limited_routes,
    served_routes,
)
from gatewayctl.render.envoy.cache import has_cache, render_cache_filter, route_cache_data
from gatewayctl.render.envoy.clusters import authority, provider_address
from gatewayctl.render.envoy.dynamic_module import module_filter
from gatewayctl.render.envoy.global_limits import (
    lua_global_data,
    lua_route_charges_tokens,
    lua_route_limits,
    render_global_filters,
)
from gatewayctl.render.envoy.guardrails import (
    GuardKey,
    guard_sets,
    render_rbac_filter,
    route_guard_set,
)
from gatewayctl.render.envoy.jwt import (
    jwt_lua_data,
    jwt_module_data,
    provider_names,
    render_jwt_filter,
    render_verdict_filter,
    verdict_headers,
)
from gatewayctl.render.envoy.local_reply import render_local_reply_config
from gatewayctl.render.envoy.lua import auth_source, gateway_source, lua_filter
from gatewayctl.render.envoy.names import (
    AUTH_FILTER,
    BODY_MODULE_FILTER,
    EARLY_HEADER_MUTATION_TYPE,
    ENDPOINTS,
    HCM_TYPE,
    INTERNAL_HEADERS,
    LIMITS_MODULE_FILTER,
    LISTENER_NAME,
    LUA_FILTER,
    LUA_NAMES,
    RDS_FILE,
    ROUTE_CONFIG_NAME,
    ROUTER_TYPE,
    SIGN_HEADER,
    STAT_PREFIX,
)
from gatewayctl.render.envoy.options import EnvoyOptions
from gatewayctl.render.envoy.outguard import (
    OutguardKey,
    has_outguard,
    outguard_data,
    outguard_ids,
    render_outguard_stats_log,
    route_outguard,
)
from gatewayctl.render.envoy.probes import render_health_check_filter
from gatewayctl.render.envoy.prompts import prompt_data
from gatewayctl.render.envoy.ratelimit import (
    MODULE_MAX_LIMITS,
    module_limit_capacity,
    module_limit_data,
    reads_consumer_header,
    render_ratelimit_filters,
    request_limit_data,
    token_charge_headers,
    token_limit_data,
)
from gatewayctl.render.envoy.translate import has_native, native_apis, native_upstream_filters
from gatewayctl.render.envoy.upstream import pinned_models, provider_data, render_upstream_filters


def _route_policy_data(
    ir: GatewayIR,
    route: RouteIR,
    sets: dict[GuardKey, str],
    jwt_names: dict[JwtProviderIR, str],
    outguards: dict[OutguardKey, str],
) -> dict[str, Any]:
    data = route_auth_data(route, jwt_names)
    data["guard"] = route_guard_set(route, sets)
    if data["guard"] is not None and route.policy.guard_action == "log":
        data["guard_logs"] = True  # only then does the response read the RBAC shadow result
    data["token_limits"] = token_limit_data(ir, route)
    data["request_limits"] = request_limit_data(ir, route)
    data["global"] = lua_route_limits(ir, route)
    data["global_tokens"] = lua_route_charges_tokens(ir, route)
    data["max_bytes"] = route_body_limit(route)
    if route.policy.redact:
        data["redact"] = {kind: True for kind in route.policy.redact}
    data["cache"] = route_cache_data(route)
    outguard = route_outguard(route, outguards)
    if outguard is not None:
        data["outguard"] = outguard
    return data


def gateway_lua_data(ir: GatewayIR, options: EnvoyOptions) -> dict[str, Any]:
    """The downstream filter's data. Routes sharing their policies share one `policies` entry
    (gateway.lua makes its fields visible on the route), so a route costs its public name,
    its prompt, a reference and, with one backend, that model's name and upstream name."""
    sets = guard_sets(ir)
    jwt_names = provider_names(ir)
    outguards = outguard_ids(ir)
    policy_of = {r.name: _route_policy_data(ir, r, sets, jwt_names, outguards)
                 for r in ir.routes}
    canonical = {name: json.dumps(d, sort_keys=True) for name, d in policy_of.items()}
    ids = {text: f"p{i}" for i, text in enumerate(sorted(set(canonical.values())))}
    policies = {ids[canonical[name]]: data for name, data in policy_of.items()}
    routes: dict[str, Any] = {}
    models = {m.name: m for m in ir.models}
    pinned = pinned_models(ir)
    authorities = {p.name: authority(*provider_address(p, options)) for p in ir.providers}
    for route in ir.routes:
        data: dict[str, Any] = {"public": route.public_model, "policy": ids[canonical[route.name]]}
        if route.prompt is not None:
            data["prompt"] = prompt_data(route.prompt)
        native = native_apis(ir, route)
        if native:
            # requests must translate for each (gateway.lua check_native)
            data["native"] = list(native)
        if len(route.backends) == 1:
            # Every attempt but the fallbacks goes to this model: the downstream filter writes
            # its upstream name, and the upstream filter skips the body on those attempts.
            model = models[route.backends[0].model]
            data["direct"] = {"model": model.name, "upstream": model.upstream_model}
            if route.name in pinned:
                # ...and, as no attempt goes elsewhere, the provider's authority and
                # credential too; the route switches the per-attempt filters off.
                data["direct"]["pinned"] = {
                    "authority": authorities[model.provider],
                    "provider": model.provider,
                }
        routes[route.name] = data
    return {
        "endpoints": dict(ENDPOINTS),
        "models": {r.public_model: r.name for r in ir.routes},
        "routes": routes,
        "policies": policies,
        "prices": {m.name: [m.input_per_million, m.output_per_million] for m in ir.models},
        "providers": provider_data(ir, options),
        "secret_ttl_s": options.secret_ttl_s,
        **lua_global_data(ir),
        **outguard_data(ir),
    }


def auth_filter_data(ir: GatewayIR, options: EnvoyOptions) -> dict[str, Any]:
    """The auth filter's data: consumer key files, principal bounds and body classes."""
    return {
        "endpoints": dict(ENDPOINTS),
        "consumers": consumer_data(ir, options),
        "secret_ttl_s": options.secret_ttl_s,
        "jwt": jwt_lua_data(ir),
        "jwt_consumers": {c.name: True for c in ir.consumers} if ir.jwt_providers() else None,
        **auth_lua_data(ir),
    }


# The names the auth filter uses (names.py's LUA_NAMES), given to the module with its data.
AUTH_MODULE_NAMES = ("client_key_headers", "principal_header", "route_header", "metadata_ns",
                     "reply_header")


def uses_auth_module(ir: GatewayIR) -> bool:
    """The auth filter is the compiled module's (opted in); on a gateway with JWT policies it
    reads jwt_authn's verdict from headers (jwt.py)."""
    return ir.data_plane_filters == "module"


def render_auth_filter(ir: GatewayIR, options: EnvoyOptions) -> dict[str, Any]:
    """The auth filter: auth.lua, or the module's `auth` with the same data (and the headers
    that carry jwt_authn's verdict)."""
    data = auth_filter_data(ir, options)
    if uses_auth_module(ir):
        names = {key: LUA_NAMES[key] for key in AUTH_MODULE_NAMES}
        # without the buffer filter the auth filter sets the stream's bound itself, and no
        # body class is needed (module_bounds_bodies)
        bound = ({"body_classes": {}, "buffer_headroom": BUFFER_HEADROOM_BYTES}
                 if module_bounds_bodies(ir, options) else {})
        return module_filter(AUTH_FILTER, "auth",
                             {**data, "jwt": jwt_module_data(ir), "names": names, **bound})
    return lua_filter(AUTH_FILTER, auth_source(data))


def render_body_filters(ir: GatewayIR, options: EnvoyOptions) -> list[dict[str, Any]]:
    """The body filter: gateway.lua; with `dataPlaneFilters: module`, the module's `body`
    before it, for the routes it serves (body_module.py; the Lua is switched off on those),
    and the module's alone when it serves every route: the Lua would then take no request
    (the module answers every endpoint POST it does not route itself) and do nothing on any
    response (its envoy_on_response returns without a route or on a local reply), and its
    mere presence costs every request (docs/performance.md)."""
    data = gateway_lua_data(ir, options)
    module = _module_data(ir, data) if ir.data_plane_filters == "module" else None
    lua = lua_filter(LUA_FILTER, gateway_source(data, has_native(ir), cache=has_cache(ir),
                                                 outguard=has_outguard(ir)))
    if module is None:
        return [lua]
    # the module counts the per-consumer counters of its routes itself (module/gw_counters.h)
    body = module_filter(BODY_MODULE_FILTER, BODY_FILTER_NAME, module, metrics.STATS_SCOPE)
    return [body] if _serves_all(module, data) else [body, lua]


def _module_data(ir: GatewayIR, lua_data: Mapping[str, Any]) -> dict[str, Any] | None:
    limits = module_limit_data(ir, set(served_routes(lua_data)))
    # x-gw-consumer: read by Envoy's limiters only, which are off where the module limits
    quiet = [r.name for r in ir.routes if not reads_consumer_header(ir, r) or r.name in limits]
    # a module gateway's JSON line is the compiled logger's (render_access_log's `compiled`),
    # which takes these keys from the module's stream; the per-backend counters of the routes
    # that split traffic read theirs from Envoy's metadata
    counted = {r.name: BACKEND_COUNTER_KEYS for r in ir.routes if len(r.backends) > 1}
    return body_module_data(lua_data, quiet, limits, module_limit_capacity(ir),
                            logger_only=LOGGER_ONLY_KEYS, counted=counted)


def _lua_limit_data(ir: GatewayIR, body: Mapping[str, Any] | None) -> dict[str, Any]:
    """The local limits of the routes the Lua body filter serves on a module gateway (those
    the module's body filter, config `body`, leaves), which the module's `limits` filter
    enforces from the headers the Lua sets for Envoy's limiters (ratelimit.py); none when
    the `limits` filter's config would exceed the module's config reader's bounds (Envoy's
    filters then keep those routes, as before)."""
    served = set(body["routes"]) if body is not None else set()
    lua = module_limit_data(ir, {r.name for r in ir.routes} - served)
    return lua if fits_module_config(_limits_config(ir, lua, body is not None)) else {}


def _limits_config(ir: GatewayIR, lua: Mapping[str, Any], body_filter: bool) -> dict[str, Any]:
    return limits_module_data(lua, module_limit_capacity(ir),
                              token_charge_headers(ir)[:MODULE_MAX_LIMITS], body_filter)


def module_limit_routes(ir: GatewayIR, options: EnvoyOptions) -> frozenset[str]:
    """The routes whose local limits the module's `limits` filter enforces (ratelimit.py):
    on a module gateway, every route with local limits (the module body filter's, read from
    its stream, and the Lua's, read from the Lua's headers)."""
    if ir.data_plane_filters != "module":
        return frozenset()
    body = _module_data(ir, gateway_lua_data(ir, options))
    return module_limited_routes(body) | frozenset(_lua_limit_data(ir, body))


def render_limits_filters(ir: GatewayIR, options: EnvoyOptions) -> list[dict[str, Any]]:
    """The local limiters, after RBAC: on a module gateway the module's `limits` filter for
    every route with local limits (Envoy's local_ratelimit filters only for a route with more
    limits of a kind than the module takes), else Envoy's local_ratelimit filters (left out
    when no route has limits of their kind)."""
    if ir.data_plane_filters != "module":
        return render_ratelimit_filters(ir)
    body = _module_data(ir, gateway_lua_data(ir, options))
    lua = _lua_limit_data(ir, body)
    module = module_limited_routes(body) | frozenset(lua)
    out = ([module_filter(LIMITS_MODULE_FILTER, "limits",
                          _limits_config(ir, lua, body is not None),
                          metrics.STATS_SCOPE)] if module else [])
    return [*out, *render_ratelimit_filters(ir, module)]


def _serves_all(module: Mapping[str, Any], lua_data: Mapping[str, Any]) -> bool:
    return set(module["routes"]) == set(lua_data["routes"])


def lua_off_routes(ir: GatewayIR, options: EnvoyOptions) -> frozenset[str]:
    """The routes whose per-route config switches the Lua body filter off: the module's, when
    the Lua filter is in the chain (none when the module serves every route: render_body_filters
    leaves the Lua out)."""
    if ir.data_plane_filters != "module":
        return frozenset()
    lua_data = gateway_lua_data(ir, options)
    data = _module_data(ir, lua_data)
    if data is None or _serves_all(data, lua_data):
        return frozenset()
    return frozenset(data["routes"])


def module_bounds_bodies(ir: GatewayIR, options: EnvoyOptions) -> bool:
    """Whether the module bounds request bodies without Envoy's buffer filter: on a module
    gateway with the module's body filter. Its auth filter sets the stream's buffer limit to
    the principal's bound (+ BUFFER_HEADROOM_BYTES) from the headers, and its body filter
    buffers every endpoint POST whole (StopIterationAndBuffer) before it knows the route, so
    Envoy answers a body past the bound with its 413 as it does behind the buffer filter, and
    the Lua body filter after it (the routes the module leaves to it) gets the whole body as
    it did from the buffer filter. Lua gateways, and a module gateway without the module's body
    filter, keep the buffer filter and its body classes."""
    if ir.data_plane_filters != "module":
        return False
    return _module_data(ir, gateway_lua_data(ir, options)) is not None


def render_http_filters(ir: GatewayIR, options: EnvoyOptions) -> list[dict[str, Any]]:
    jwt = render_jwt_filter(ir, options)
    verdict = render_verdict_filter(ir)
    rbac = render_rbac_filter(ir)
    cache = render_cache_filter(ir)
    return [
        render_health_check_filter(),
        *([jwt] if jwt is not None else []),
        *([verdict] if verdict is not None else []),
        render_auth_filter(ir, options),
        *([] if module_bounds_bodies(ir, options) else [render_buffer_filter()]),
        *render_body_filters(ir, options),
        *([rbac] if rbac is not None else []),
        *render_limits_filters(ir, options),
        *render_global_filters(ir),
        *([cache] if cache is not None else []),
        {
            "name": "envoy.filters.http.router",
            # One upstream chain for every cluster (none has its own): see upstream.py.
            "typed_config": {
                "@type": ROUTER_TYPE,
                "upstream_http_filters": render_upstream_filters(
                    ir, options, native_upstream_filters(ir, options)
                ),
            },
        },
    ]


def render_internal_header_removal(ir: GatewayIR) -> dict[str, Any]:
    """Client copies of the internal headers, removed before the first route match and before
    any filter (cheaper than Lua calls): a client can pick no route, body class, consumer,
    target, charge or reply format."""
    names = [*INTERNAL_HEADERS, *token_charge_headers(ir), *verdict_headers(ir)]
    if any(p.api == "bedrock" for p in ir.providers):
        names.append(SIGN_HEADER)
    return {
        "name": "envoy.http.early_header_mutation.header_mutation",
        "typed_config": {
            "@type": EARLY_HEADER_MUTATION_TYPE,
            "mutations": [{"remove": name} for name in names],
        },
    }


def with_inline_routes(listener: dict[str, Any], route_config: dict[str, Any]) -> dict[str, Any]:
    """The listener with its route table inline instead of from RDS: the static twin that
    `envoy --mode validate` checks (validate mode reads no dynamic files)."""
    chains = []
    for chain in listener["filter_chains"]:
        filters = []
        for flt in chain["filters"]:
            hcm = flt["typed_config"]
            if "rds" in hcm:
                hcm = {k: v for k, v in hcm.items() if k != "rds"}
                hcm["route_config"] = route_config
                flt = {**flt, "typed_config": hcm}
            filters.append(flt)
        chains.append({**chain, "filters": filters})
    return {**listener, "filter_chains": chains}


def render_listener(ir: GatewayIR, options: EnvoyOptions) -> dict[str, Any]:
    port = options.listener_port if options.listener_port is not None else ir.listener_port
    hcm = {
        "@type": HCM_TYPE,
        "stat_prefix": STAT_PREFIX,
        "codec_type": "AUTO",
        "generate_request_id": True,
        "normalize_path": True,
        "merge_slashes": True,
        "rds": {
            "config_source": {
                "resource_api_version": "V3",
                "path_config_source": {
                    "path": f"{options.config_dir}/{RDS_FILE}",
                    "watched_directory": {"path": options.config_dir},
                },
            },
            "route_config_name": ROUTE_CONFIG_NAME,
        },
        "http_filters": render_http_filters(ir, options),
        "access_log": render_access_log(
            options.access_log_path,
            cache=has_cache(ir),
            split_routes=sorted(r.name for r in ir.routes if len(r.backends) > 1),
            other_routes=sorted(r.name for r in ir.routes if len(r.backends) <= 1),
            module_limits=bool(module_limit_routes(ir, options)),
            compiled=ir.data_plane_filters == "module",
            flush_ms=options.access_log_flush_ms,
        )
        + [log for log in (render_outguard_stats_log(ir),) if log is not None],
        "local_reply_config": render_local_reply_config(),
        "early_header_mutation_extensions": [render_internal_header_removal(ir)],
    }
    return {
        "name": LISTENER_NAME,
        "address": {"socket_address": {"address": options.listener_address, "port_value": port}},
        "per_connection_buffer_limit_bytes": LISTENER_BUFFER_BYTES,
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ]
            }
        ],
    }
