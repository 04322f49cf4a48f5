"""The route table: /v1/models (the list, and each model by id), one weighted route per gateway
route, a JSON 404 for the rest.

Gateway routes are found by the x-gw-route header the Lua filter sets from the body's `model`
(after `clearRouteCache()`), in a matcher tree keyed by that header, on the three OpenAI
endpoints. A Rollout's canary header gets its own entry to the canary backend first. Weights
go to `weighted_clusters` over the per-backend composite parents; retries walk the composite
chain (attempt N -> member N).

A route carries only what differs between routes (match, clusters, timeouts, retries, the
response headers): the internal headers to strip are the same for every route and set once on
the virtual host. x-gateway-route is the route's public name, a literal on each route;
x-gateway-model (the attempt's endpoint model) is a literal too where every attempt goes to one
model and no filter after route selection answers for the route, else the endpoint's metadata.
Limits and guardrails are configured in the listener's filters (ratelimit.py, guardrails.py); a
route without any switches those filters off. The response cache's filter is off in the listener
and switched on by the routes with a cache (cache.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from gatewayctl.ir import GatewayIR, RouteIR
from gatewayctl.render.envoy.body import (
    BODY_CLASS_PREFIX,
    DEFAULT_MAX_REQUEST_BYTES,
    body_classes,
    buffer_disabled,
    buffer_per_route,
)
from gatewayctl.render.envoy.body_module import lua_route_disabled
from gatewayctl.render.envoy.cache import cache_request_headers, cache_route_config
from gatewayctl.render.envoy.clusters import chain
from gatewayctl.render.envoy.global_limits import GLOBAL_FILTER, route_rate_limits
from gatewayctl.render.envoy.guardrails import guard_sets, rbac_route_config
from gatewayctl.render.envoy.jwt import verdict_headers
from gatewayctl.render.envoy.listener import (
    lua_off_routes,
    module_bounds_bodies,
    module_limit_routes,
)
from gatewayctl.render.envoy.names import (
    API_PATH_REGEX,
    CONSUMER_HEADER,
    HEADER_INPUT_TYPE,
    METADATA_NS,
    MODEL_RESPONSE_HEADER,
    PRINCIPAL_HEADER,
    ROUTE_CONFIG_NAME,
    ROUTE_HEADER,
    ROUTE_LIST_TYPE,
    ROUTE_RESPONSE_HEADER,
    VIRTUAL_HOST_NAME,
    backend_cluster_name,
)
from gatewayctl.render.envoy.options import EnvoyOptions
from gatewayctl.render.envoy.ratelimit import (
    limit_route_configs,
    local_limiters,
    token_charge_headers,
)
from gatewayctl.render.envoy.translate import route_filter_configs
from gatewayctl.render.envoy.upstream import pinned_models, skip_upstream_filters

RETRY_ON = "5xx,reset,connect-failure,retriable-status-codes"


def _seconds(ms: int) -> str:
    return f"{ms / 1000:g}s"


def _header(key: str, value: str) -> dict[str, Any]:
    return {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


MODELS_PATH = "/v1/models"


def _model_object(ir: GatewayIR, public_model: str) -> dict[str, Any]:
    return {"id": public_model, "object": "model", "created": 0, "owned_by": ir.name}


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def models_list_body(ir: GatewayIR) -> str:
    data = [_model_object(ir, r.public_model)
            for r in sorted(ir.routes, key=lambda r: r.public_model)]
    return _json({"object": "list", "data": data})


def model_body(ir: GatewayIR, public_model: str) -> str:
    """GET /v1/models/{model}: the list's entry for that model, byte for byte."""
    return _json(_model_object(ir, public_model))


def model_paths(public_model: str) -> list[str]:
    """The paths a client asks for one model by, as Envoy matches them (after its path
    normalization). A public name holds letters, digits and . _ : / - (the manifest schema);
    all but / and : are unreserved, which normalization decodes. The forms: the openai SDK's
    (`path_template` escapes / as %2F, keeps :), the name as is (older SDKs, curl; only when
    it is a canonical path: no empty or dot segment, which normalization would rewrite), and
    JavaScript's encodeURIComponent (escapes : as %3A too). Exact path matches, never a
    regex: a . in a name matches only a dot."""
    forms = [quote(public_model, safe=":"), quote(public_model, safe="")]
    segments = public_model.split("/")
    if all(seg not in ("", ".", "..") for seg in segments[:-1]) and segments[-1] not in (".", ".."):
        forms.insert(1, public_model)
    out: list[str] = []
    for form in forms:
        path = f"{MODELS_PATH}/{form}"
        if path not in out:
            out.append(path)
    return out


def _get(match: dict[str, Any]) -> dict[str, Any]:
    return {**match, "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]}


def model_routes(ir: GatewayIR, extra: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The model list and GET /v1/models/{model}: direct responses in the fallback, which an
    endpoint POST never reaches (its first match is the body-class entry ahead of them). An
    id no route serves gets the 404 `model_not_found` (its body is local_reply.py's)."""
    json_type = [_header("content-type", "application/json")]
    out: list[dict[str, Any]] = [{
        "name": "models",
        "match": _get({"path": MODELS_PATH}),
        "direct_response": {"status": 200, "body": {"inline_string": models_list_body(ir)}},
        "response_headers_to_add": json_type,
        **extra,
    }]
    for route in sorted(ir.routes, key=lambda r: r.public_model):
        body = model_body(ir, route.public_model)
        for i, path in enumerate(model_paths(route.public_model)):
            out.append({
                "name": f"models/{route.public_model}" + (f"#{i}" if i else ""),
                "match": _get({"path": path}),
                "direct_response": {"status": 200, "body": {"inline_string": body}},
                "response_headers_to_add": json_type,
                **extra,
            })
    out.append({
        "name": "model-not-found",
        "match": _get({"prefix": f"{MODELS_PATH}/"}),
        "direct_response": {"status": 404, "body": {"inline_string": "model not found"}},
        **extra,
    })
    return out


def _route_action(route: RouteIR, backend_weights: list[tuple[str, int]]) -> dict[str, Any]:
    backend = backend_weights[0][0]
    retries = len(chain(route, backend)) - 1
    action: dict[str, Any] = {"timeout": _seconds(route.timeout_ms)}
    if retries or route.per_try_timeout_ms is not None:
        # A route with one attempt and no per-try timeout gets no retry policy: with zero
        # retries it would change nothing but cost Envoy a retry state per request (~3.5k
        # instructions, docs/performance.md).
        retry_policy: dict[str, Any] = {
            "retry_on": RETRY_ON,
            "retriable_status_codes": [429],
            "num_retries": retries,
            # Back-off: Envoy's default, 25 ms doubling up to 250 ms.
        }
        if route.per_try_timeout_ms is not None:
            retry_policy["per_try_timeout"] = _seconds(route.per_try_timeout_ms)
        action["retry_policy"] = retry_policy
    if len(backend_weights) == 1:
        action["cluster"] = backend_cluster_name(route.name, backend)
    else:
        action["weighted_clusters"] = {
            "clusters": [
                {"name": backend_cluster_name(route.name, m), "weight": w}
                for m, w in backend_weights
            ]
        }
    return action


def _model_header(
    route: RouteIR, backend_weights: list[tuple[str, int]], answers_itself: bool
) -> dict[str, Any]:
    """x-gateway-model: the model whose endpoint answered (the endpoint's metadata, formatted
    on every response). Route response headers also go on the local replies of filters that
    run after the route is chosen (a guardrail's 403, a limit's 429), which must not name a
    model; on a route without such filters (answers_itself false) whose attempts all go to
    one model, the name is written as a literal instead, which costs nothing to format."""
    models = {m for backend, _ in backend_weights for m in chain(route, backend)}
    if len(models) == 1 and not answers_itself:
        return _header(MODEL_RESPONSE_HEADER, next(iter(models)))
    return _header(MODEL_RESPONSE_HEADER, f"%UPSTREAM_METADATA({METADATA_NS}:model)%")


def _route(
    route: RouteIR,
    name: str,
    extra_headers: list[dict[str, Any]],
    backend_weights: list[tuple[str, int]],
    pinned: bool = False,
    rate_limits: dict[str, Any] | None = None,
    filter_configs: Mapping[str, Any] | None = None,
    policy_configs: Mapping[str, Any] | None = None,
    answers_itself: bool = True,
) -> dict[str, Any]:
    # Any path: only the body filter sets the entry's x-gw-route key, and only for a POST to an
    # endpoint (clients' copies are removed before the first match), so a path regex here
    # would only be evaluated again on every request.
    match: dict[str, Any] = {"prefix": "/"}
    if extra_headers:
        match["headers"] = extra_headers
    action = _route_action(route, backend_weights)
    out: dict[str, Any] = {
        "name": name,
        # The route's own x-gw-route key selects this entry (render_route_config).
        "match": match,
        "route": action,
        # A literal per route: a %DYNAMIC_METADATA% header would be formatted on every request.
        "response_headers_to_add": [
            _header(ROUTE_RESPONSE_HEADER, route.public_model),
            _model_header(route, backend_weights, answers_itself),
        ],
    }
    configs: dict[str, Any] = {}
    if pinned:
        configs.update(skip_upstream_filters())
    elif filter_configs:
        configs.update(filter_configs)
    configs.update(policy_configs or {})
    if rate_limits:
        configs[GLOBAL_FILTER] = rate_limits  # global limits only: global_limits.py
    if configs:
        out["typed_per_filter_config"] = configs
    return out


@dataclass(frozen=True)
class PolicyFilters:
    """Which of the listener's policy filters exist (guardrails.py, ratelimit.py)."""

    rbac: bool
    limiters: tuple[bool, bool]
    module_limits: frozenset[str] = frozenset()  # routes whose limits the module enforces

    @classmethod
    def of(cls, ir: GatewayIR, options: EnvoyOptions | None = None) -> PolicyFilters:
        module = module_limit_routes(ir, options or EnvoyOptions())
        return cls(bool(guard_sets(ir)), local_limiters(ir, module), module)


def render_gateway_routes(
    ir: GatewayIR,
    route: RouteIR,
    pinned: bool,
    options: EnvoyOptions | None = None,
    filters: PolicyFilters | None = None,
    lua_off: bool = False,
) -> list[dict[str, Any]]:
    """The route's entries; pinned: see upstream.pinned_models; a route with a provider of
    another API switches the translating filters on (translate.py); lua_off: the module's
    body filter serves the route and the Lua body filter, in the chain, is switched off on it
    (body_module.py, listener.lua_off_routes)."""
    configs = route_filter_configs(ir, route, options or EnvoyOptions())
    # The listener's RBAC and limit filters, switched off on a route that has none of their
    # rules: they then return at once instead of evaluating every policy and descriptor.
    present = filters or PolicyFilters.of(ir, options)
    policy = {
        **rbac_route_config(route, present.rbac),
        **limit_route_configs(ir, route, present.limiters, route.name in present.module_limits),
        **cache_route_config(route),
        **(lua_route_disabled() if lua_off else {}),
    }
    out: list[dict[str, Any]] = []
    limits = route_rate_limits(ir, route)
    # Whether a filter after route selection may answer this route's requests itself.
    p = route.policy
    answers_itself = bool(
        limits or p.deny_patterns or p.rate_limits or p.token_limits or p.cache is not None
    )
    rollout = route.rollout
    if rollout is not None and any(b.model == rollout.canary for b in route.backends):
        canary_match = [{"name": rollout.canary_header, "string_match": {"exact": "always"}}]
        out.append(
            _route(
                route,
                f"{route.name}-canary",
                canary_match,
                [(rollout.canary, 1)],
                rate_limits=limits,
                filter_configs=configs,
                policy_configs=policy,
                answers_itself=answers_itself,
            )
        )
    weights = [(b.model, b.weight) for b in route.backends if b.weight > 0]
    if not weights:  # defensive: the compiler guarantees a positive sum
        weights = [(route.backends[0].model, 1)]
    out.append(
        _route(
            route,
            route.name,
            [],
            weights,
            pinned,
            rate_limits=limits,
            filter_configs=configs,
            policy_configs=policy,
            answers_itself=answers_itself,
        )
    )
    return out


def _route_list(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """A matcher action: the entries are tried in order, as in a virtual host's `routes`."""
    return {
        "action": {"name": "routes", "typed_config": {"@type": ROUTE_LIST_TYPE, "routes": entries}}
    }


def route_entries(vhost: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every route entry of a rendered (or config-dumped) virtual host: its `routes`, or the
    RouteList actions of its matcher tree (keyed entries in key order, then on_no_match)."""
    yield from vhost.get("routes", [])
    matcher = vhost.get("matcher") or {}
    keyed = matcher.get("matcher_tree", {}).get("exact_match_map", {}).get("map", {})
    actions = [entry.get("action", {}) for _, entry in sorted(keyed.items())]
    actions.append(matcher.get("on_no_match", {}).get("action", {}))
    for action in actions:
        yield from action.get("typed_config", {}).get("routes", [])


def _body_class_route(key: str, cap: int | None) -> dict[str, Any]:
    """Where the auth filter sends a request until the body filter has picked its route: the
    buffer filter's bound for the principal (body.py; cap None: no buffer filter, the module
    bounds the body). Reaching the action means the body filter did not pick a route (it
    failed): the request goes nowhere."""
    return {
        "name": key,
        "match": {"prefix": "/"},
        "direct_response": {"status": 500, "body": {"inline_string": "no route was selected"}},
        **({"typed_per_filter_config": buffer_per_route(cap)} if cap is not None else {}),
    }


def render_route_config(ir: GatewayIR, options: EnvoyOptions | None = None) -> dict[str, Any]:
    """The route table. Gateway routes sit in a matcher tree keyed by x-gw-route: an exact-match
    map, so finding a route costs the same with 10 or 10,000 of them (a `routes` list is
    scanned in order, ~1k instructions per entry, twice per request: before the Lua filter
    picks the route and after). Requests without the header (GET /v1/models, other paths, and
    the first match, before Lua runs) fall to on_no_match: the model list and its models, then
    the JSON 404."""
    pinned = pinned_models(ir)
    # no buffer filter in the chain: no body classes and no per-route buffer configs
    buffered = not module_bounds_bodies(ir, options or EnvoyOptions())
    off = {"typed_per_filter_config": buffer_disabled()} if buffered else {}
    fallback: list[dict[str, Any]] = [
        *model_routes(ir, off),
        {
            "name": "not-found",
            "match": {"prefix": "/"},
            "direct_response": {"status": 404, "body": {"inline_string": "not found"}},
            **off,
        },
    ]
    keyed: dict[str, Any] = {}
    filters = PolicyFilters.of(ir, options)
    lua_off = lua_off_routes(ir, options or EnvoyOptions())
    for route in sorted(ir.routes, key=lambda r: r.name):
        entries = render_gateway_routes(ir, route, route.name in pinned, options, filters,
                                        route.name in lua_off)
        keyed[route.name] = _route_list(entries)
    for cap, key in (body_classes(ir) if buffered else {}).items():
        keyed[key] = _route_list([_body_class_route(key, cap)])
    vhost: dict[str, Any] = {"name": VIRTUAL_HOST_NAME, "domains": ["*"]}
    if keyed:
        # What an endpoint POST matches first, before the auth filter: the default body class.
        first = _body_class_route(f"{BODY_CLASS_PREFIX}default",
                                  DEFAULT_MAX_REQUEST_BYTES if buffered else None)
        first["match"] = {
            "safe_regex": {"regex": API_PATH_REGEX},
            "headers": [{"name": ":method", "string_match": {"exact": "POST"}}],
        }
        fallback.insert(0, first)
        tree = {
            "input": {
                "name": "gateway-route",
                "typed_config": {"@type": HEADER_INPUT_TYPE, "header_name": ROUTE_HEADER},
            },
            "exact_match_map": {"map": keyed},
        }
        vhost["matcher"] = {"matcher_tree": tree, "on_no_match": _route_list(fallback)}
    else:  # a matcher tree needs at least one key
        vhost["routes"] = fallback
    vhost["request_headers_to_remove"] = [
        ROUTE_HEADER,
        CONSUMER_HEADER,
        PRINCIPAL_HEADER,
    ] + token_charge_headers(ir) + cache_request_headers(ir) + verdict_headers(ir)
    return {
        "name": ROUTE_CONFIG_NAME,
        # The /v1/models list grows with the routes; Envoy's default cap is 4 KiB.
        "max_direct_response_body_size_bytes": max(4096, len(models_list_body(ir).encode())),
        "virtual_hosts": [vhost],
    }
