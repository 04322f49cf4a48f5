"""The route table: /v1/models, one weighted route per gateway route, a JSON 404 for the rest.

Routes match the x-gw-route header the Lua filter sets from the body's `model` (after
`clearRouteCache()`), on the three OpenAI endpoints. A Rollout's canary header gets its own
route to the canary backend first. Weights go to `weighted_clusters` over the per-backend
composite parents; retries walk the composite chain (attempt N -> member N).

A route carries only what differs between routes (match, clusters, timeouts, retries): the
internal headers to strip and the x-gateway-model response header (the attempt's endpoint
model) are the same for every route and set once on the virtual host; x-gateway-route is the
route's public name, a literal on each route. Limits and guardrails are configured in the
listener's filters (ratelimit.py, guardrails.py).
"""

from __future__ import annotations

import json
from typing import Any

from gatewayctl.ir import GatewayIR, RouteIR
from gatewayctl.render.envoy.clusters import chain
from gatewayctl.render.envoy.names import (
    API_PATH_REGEX,
    CONSUMER_HEADER,
    METADATA_NS,
    MODEL_RESPONSE_HEADER,
    ROUTE_CONFIG_NAME,
    ROUTE_HEADER,
    ROUTE_RESPONSE_HEADER,
    VIRTUAL_HOST_NAME,
    backend_cluster_name,
)
from gatewayctl.render.envoy.ratelimit import token_charge_headers
from gatewayctl.render.envoy.upstream import pinned_model, skip_upstream_filters

RETRY_ON = "5xx,reset,connect-failure,retriable-status-codes"


def _seconds(ms: int) -> str:
    return f"{ms / 1000:g}s"


def _header(key: str, value: str) -> dict[str, Any]:
    return {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


def models_list_body(ir: GatewayIR) -> str:
    data = [
        {"id": r.public_model, "object": "model", "created": 0, "owned_by": ir.name}
        for r in sorted(ir.routes, key=lambda r: r.public_model)
    ]
    return json.dumps({"object": "list", "data": data}, sort_keys=True, separators=(",", ":"))


def _route_action(route: RouteIR, backend_weights: list[tuple[str, int]]) -> dict[str, Any]:
    backend = backend_weights[0][0]
    retries = len(chain(route, backend)) - 1
    retry_policy: dict[str, Any] = {
        "retry_on": RETRY_ON,
        "retriable_status_codes": [429],
        "num_retries": retries,
        # Back-off: Envoy's default, 25 ms doubling up to 250 ms.
    }
    if route.per_try_timeout_ms is not None:
        retry_policy["per_try_timeout"] = _seconds(route.per_try_timeout_ms)
    action: dict[str, Any] = {"timeout": _seconds(route.timeout_ms), "retry_policy": retry_policy}
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


def _route(
    route: RouteIR,
    name: str,
    extra_headers: list[dict[str, Any]],
    backend_weights: list[tuple[str, int]],
    pinned: bool = False,
) -> dict[str, Any]:
    out = {
        "name": name,
        "match": {
            "safe_regex": {"regex": API_PATH_REGEX},
            "headers": [{"name": ROUTE_HEADER, "string_match": {"exact": route.name}}]
            + extra_headers,
        },
        "route": _route_action(route, backend_weights),
        # A literal per route: a %DYNAMIC_METADATA% header would be formatted on every request.
        "response_headers_to_add": [_header(ROUTE_RESPONSE_HEADER, route.public_model)],
    }
    if pinned:
        out["typed_per_filter_config"] = skip_upstream_filters()
    return out


def render_gateway_routes(ir: GatewayIR, route: RouteIR, pinned: bool) -> list[dict[str, Any]]:
    """The route's entries; pinned: see upstream.pinned_model."""
    out: list[dict[str, Any]] = []
    rollout = route.rollout
    if rollout is not None and any(b.model == rollout.canary for b in route.backends):
        canary_match = [{"name": rollout.canary_header, "string_match": {"exact": "always"}}]
        out.append(_route(route, f"{route.name}-canary", canary_match, [(rollout.canary, 1)]))
    weights = [(b.model, b.weight) for b in route.backends if b.weight > 0]
    if not weights:  # defensive: the compiler guarantees a positive sum
        weights = [(route.backends[0].model, 1)]
    out.append(_route(route, route.name, [], weights, pinned))
    return out


def render_route_config(ir: GatewayIR) -> dict[str, Any]:
    models = {m.name: m for m in ir.models}
    providers = {p.name: p for p in ir.providers}
    routes: list[dict[str, Any]] = [
        {
            "name": "models",
            "match": {
                "path": "/v1/models",
                "headers": [{"name": ":method", "string_match": {"exact": "GET"}}],
            },
            "direct_response": {"status": 200, "body": {"inline_string": models_list_body(ir)}},
            "response_headers_to_add": [_header("content-type", "application/json")],
        }
    ]
    for route in sorted(ir.routes, key=lambda r: r.name):
        pinned = pinned_model(route, models, providers) is not None
        routes.extend(render_gateway_routes(ir, route, pinned))
    routes.append(
        {
            "name": "not-found",
            "match": {"prefix": "/"},
            "direct_response": {"status": 404, "body": {"inline_string": "not found"}},
        }
    )
    return {
        "name": ROUTE_CONFIG_NAME,
        # The /v1/models list grows with the routes; Envoy's default cap is 4 KiB.
        "max_direct_response_body_size_bytes": max(4096, len(models_list_body(ir).encode())),
        "virtual_hosts": [
            {
                "name": VIRTUAL_HOST_NAME,
                "domains": ["*"],
                "routes": routes,
                "request_headers_to_remove": [ROUTE_HEADER, CONSUMER_HEADER]
                + token_charge_headers(ir.routes),
                # Unset values (direct responses, Lua replies) add no header.
                "response_headers_to_add": [
                    _header(MODEL_RESPONSE_HEADER, f"%UPSTREAM_METADATA({METADATA_NS}:model)%"),
                ],
            }
        ],
    }
