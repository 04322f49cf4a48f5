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

from gatewayctl.ir import GatewayIR, RouteIR
from gatewayctl.render.envoy.options import EnvoyOptions


def consumer_data(ir: GatewayIR, options: EnvoyOptions) -> list[dict[str, str]]:
    return [
        {"name": c.name, "file": f"{options.secrets_dir}/{c.api_key.name}/{c.api_key.key}"}
        for c in sorted(ir.consumers, key=lambda c: c.name)
    ]


def route_auth_data(route: RouteIR) -> dict[str, Any]:
    data: dict[str, Any] = {"api_keys": route.policy.api_keys}
    if route.policy.allow_consumers is not None:
        data["allow"] = {name: True for name in route.policy.allow_consumers}
    return data
