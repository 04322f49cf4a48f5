"""API keys and consumers: the data the Lua filter authenticates with.

Keys are never in the config: each consumer's key is the file
<secrets_dir>/<secret>/<key> (a mounted Kubernetes Secret), read by each worker and cached
for `secret_ttl_s`, so a rotated key applies within that time without a reload. A presented
key (`Authorization: Bearer`, `x-api-key`, `api-key`) names the consumer; the Lua filter
answers 401 (missing/unknown key on an api-key route) and 403 (consumer not allowed), puts
the consumer into x-gw-consumer (rate-limit descriptors) and `gw.consumer` (access log), and
strips the client's key headers before anything goes upstream.
"""

from __future__ import annotations

from typing import Any

from gatewayctl.ir import GatewayIR, JwtProviderIR, RouteIR
from gatewayctl.render.envoy.jwt import route_providers
from gatewayctl.render.envoy.options import EnvoyOptions


def consumer_data(ir: GatewayIR, options: EnvoyOptions) -> list[dict[str, str]]:
    return [
        {"name": c.name, "file": f"{options.secrets_dir}/{c.api_key.name}/{c.api_key.key}"}
        for c in sorted(ir.consumers, key=lambda c: c.name)
        if c.api_key is not None
    ]


def route_auth_data(route: RouteIR, jwt_names: dict[JwtProviderIR, str]) -> dict[str, Any]:
    """What access.lua decides a route's 401/403 by (see render/envoy/jwt.py for tokens)."""
    policy = route.policy
    data: dict[str, Any] = {
        "needs_auth": policy.api_keys or bool(policy.jwt),
        "keys_ok": policy.api_keys or not policy.jwt,
    }
    if policy.jwt:
        data["jwt"] = {name: True for name in route_providers(route, jwt_names)}
    if policy.allow_consumers is not None:
        data["allow"] = {name: True for name in policy.allow_consumers}
    return data
