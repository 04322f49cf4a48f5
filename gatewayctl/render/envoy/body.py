"""Request body limits: decided from the headers, enforced while the body arrives.

Each route accepts bodies up to its `maxRequestBytes` (DEFAULT_MAX_REQUEST_BYTES without one).
The route is only known once the body is read (it is the body's `model`), so the bound that
applies while reading is the principal's: the largest limit among the routes the presented
key's consumer (or, without a valid key, an anonymous client) may use at all. The auth filter
(lua/auth.lua) finds the principal from the headers, answers 401/403 when no route is open to
it and 413 when Content-Length is over its bound. Each bound is a *body class*: a route table
entry whose per-route config makes the buffer filter that follows buffer at most that many
bytes (plus room for the buffered reply), answering 413 beyond, so a chunked body is cut off
there too. An endpoint POST matches the default class first (routes.py); for another bound the
auth filter names its class in x-gw-route (`_body_<bytes>`; gateway route names have no `_`)
and clears the route cache. The body filter then selects the real route and checks its exact
limit.

So one route's large limit raises the bound only for the clients that may use that route, an
unauthenticated client on a gateway whose routes all need keys is answered before any body
byte is buffered, and the listener's own buffer stays at Envoy's default.

A module gateway with the module's body filter has neither the buffer filter nor body classes
(listener.module_bounds_bodies): the module's auth filter sets the stream's buffer limit to the
principal's bound plus BUFFER_HEADROOM_BYTES itself, and the module's body filter buffers the
body (it needs it whole anyway), so Envoy answers 413 at the same byte.
"""

from __future__ import annotations

from typing import Any

from gatewayctl.ir import GatewayIR, RouteIR
from gatewayctl.render.envoy.jwt import provider_names, route_providers
from gatewayctl.render.envoy.names import TYPE_PREFIX

DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024
# Envoy's default per-connection buffer, written out: the stream's bound until the buffer
# filter sets the principal's.
LISTENER_BUFFER_BYTES = 1024 * 1024
# Room above a class's request bound: the stream's buffer limit also bounds the buffered
# reply the body filter reads `usage` from.
BUFFER_HEADROOM_BYTES = 256 * 1024

BUFFER_FILTER = "envoy.filters.http.buffer"
BUFFER_TYPE = TYPE_PREFIX + "envoy.extensions.filters.http.buffer.v3.Buffer"
BUFFER_PER_ROUTE_TYPE = TYPE_PREFIX + "envoy.extensions.filters.http.buffer.v3.BufferPerRoute"
BODY_CLASS_PREFIX = "_body_"


def route_body_limit(route: RouteIR) -> int:
    return route.policy.max_request_bytes or DEFAULT_MAX_REQUEST_BYTES


KEY = "key"  # a principal authenticated by an API key; else by a JWT provider's name


def open_to(route: RouteIR, consumer: str | None, via: str, providers: list[str]) -> bool:
    """Whether `consumer` (None: no valid credential), authenticated `via` KEY or a JWT
    provider, may use the route at all. `providers`: the JWT providers the route accepts.
    API keys identify a client on any route that takes no JWTs, or that also takes keys."""
    policy = route.policy
    if consumer is None:
        return not policy.api_keys and not policy.jwt and policy.allow_consumers is None
    accepted = (policy.api_keys or not policy.jwt) if via == KEY else via in providers
    return accepted and (policy.allow_consumers is None or consumer in policy.allow_consumers)


def _cap(ir: GatewayIR, consumer: str | None, via: str = KEY) -> int | None:
    names = provider_names(ir)
    limits = [
        route_body_limit(r)
        for r in ir.routes
        if open_to(r, consumer, via, route_providers(r, names))
    ]
    return max(limits) if limits else None


def principal_caps(ir: GatewayIR) -> tuple[int | None, dict[str, int]]:
    """(anonymous clients' bound or None, each key consumer's bound; consumers no route
    allows are left out)."""
    consumers = {c.name: _cap(ir, c.name) for c in ir.consumers if c.api_key is not None}
    return _cap(ir, None), {name: cap for name, cap in consumers.items() if cap is not None}


def jwt_caps(ir: GatewayIR) -> dict[str, dict[str, int]]:
    """JWT provider -> each consumer's bound when its token comes from that provider."""
    out: dict[str, dict[str, int]] = {}
    for name in provider_names(ir).values():
        caps = {c.name: _cap(ir, c.name, name) for c in ir.consumers}
        out[name] = {c: cap for c, cap in caps.items() if cap is not None}
    return out


def body_classes(ir: GatewayIR) -> dict[int, str]:
    """Every principal bound but the default one -> the x-gw-route key of its class. The
    default bound is the class of the route an endpoint POST matches first (routes.py), so the
    auth filter names no class, and clears no route cache, for a principal with that bound."""
    anonymous, consumers = principal_caps(ir)
    caps = set(consumers.values()) | ({anonymous} if anonymous is not None else set())
    caps |= {cap for by_consumer in jwt_caps(ir).values() for cap in by_consumer.values()}
    caps.discard(DEFAULT_MAX_REQUEST_BYTES)
    return {cap: f"{BODY_CLASS_PREFIX}{cap}" for cap in sorted(caps)}


def auth_lua_data(ir: GatewayIR) -> dict[str, Any]:
    anonymous, consumers = principal_caps(ir)
    return {
        "anonymous_cap": anonymous,
        "consumer_caps": consumers,
        "jwt_caps": jwt_caps(ir),
        "first_cap": DEFAULT_MAX_REQUEST_BYTES,
        "body_classes": {str(cap): key for cap, key in body_classes(ir).items()},
    }


def buffer_per_route(max_bytes: int) -> dict[str, Any]:
    return {
        BUFFER_FILTER: {
            "@type": BUFFER_PER_ROUTE_TYPE,
            "buffer": {"max_request_bytes": max_bytes + BUFFER_HEADROOM_BYTES},
        }
    }


def buffer_disabled() -> dict[str, Any]:
    """On the routes that answer without a body (model list, 404): nothing is buffered."""
    return {BUFFER_FILTER: {"@type": BUFFER_PER_ROUTE_TYPE, "disabled": True}}


def render_buffer_filter() -> dict[str, Any]:
    """The listener's entry; every route that reaches it carries its own bound."""
    return {
        "name": BUFFER_FILTER,
        "typed_config": {
            "@type": BUFFER_TYPE,
            "max_request_bytes": DEFAULT_MAX_REQUEST_BYTES + BUFFER_HEADROOM_BYTES,
        },
    }
