"""The per-attempt upstream rewrite: one filter chain for every route, fed by endpoint metadata.

Upstream HTTP filters of a composite cluster's members do not run (only the routed parent's
do), and a parent's own filters would be repeated in every `r_<route>_<model>` cluster. So the
chain lives once, in the router's `upstream_http_filters` (used by every cluster that has no
filters of its own). What is specific to the attempt's model is endpoint metadata `gw.*` of
the member cluster `m_<model>` that the attempt picked:

    model, provider            plain names (also the access log and x-gateway-model)
    upstream_model, authority  percent-encoded (see `encode_value`)

header_mutation removes any client copy of the x-gw-target* headers, then copies those values
into them (`%UPSTREAM_METADATA(gw:<key>)%`). The upstream Lua filter (lua/upstream.lua) reads
and removes them and finds the provider's base path and credential (secret file, header,
prefix) in its data table, keyed by provider (one entry per provider, not per model); it sets
the authority, path prefix and credential and rewrites `model`. The authority stays with the
endpoint because it follows the address (both change together, in one cluster update).
Per-route clusters carry no filter config and stay the same size whatever the gateway's size.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from gatewayctl.ir import GatewayIR, ModelIR, ProviderIR
from gatewayctl.render.envoy.lua import lua_filter, upstream_source
from gatewayctl.render.envoy.names import (
    HEADER_MUTATION_TYPE,
    LUA_FILTER,
    METADATA_NS,
    TARGET_HEADER,
    UPSTREAM_CODEC_TYPE,
)
from gatewayctl.render.envoy.options import EnvoyOptions

# Endpoint metadata keys the upstream filter needs; `model` is also read by the access log.
PLAIN_KEYS = ("model", "provider")
ENCODED_KEYS = ("upstream_model", "authority")
# Kept literal by encode_value: RFC 3986 unreserved characters, `/` and `:` (model names such
# as `meta-llama/Llama-3.1-70B-Instruct` and authorities stay readable).
_SAFE = "/:-._~"


def encode_value(text: str) -> str:
    """Percent-encode a metadata value that travels through a request header.

    Header values lose leading and trailing whitespace and cannot carry control characters;
    every byte outside [A-Za-z0-9/:-._~] becomes %XX, which the Lua filter decodes.
    """
    return quote(text, safe=_SAFE)


def target_header(key: str) -> str:
    return TARGET_HEADER if key == "model" else f"{TARGET_HEADER}-{key.replace('_', '-')}"


def endpoint_metadata(model: ModelIR, provider: ProviderIR, authority: str) -> dict[str, str]:
    """filter_metadata.gw of the model's endpoint: what an attempt on it must change."""
    return {
        "model": model.name,
        "provider": provider.name,
        "upstream_model": encode_value(model.upstream_model),
        "authority": encode_value(authority),
    }


def provider_data(ir: GatewayIR, options: EnvoyOptions) -> dict[str, Any]:
    """Per provider: base path and credential, for the upstream Lua filter's data table."""
    out: dict[str, Any] = {}
    for provider in ir.providers:
        data: dict[str, Any] = {"base_path": provider.base_path}
        if provider.credential is not None:
            ref = provider.credential
            data["credential"] = {
                "file": f"{options.secrets_dir}/{ref.name}/{ref.key}",
                "header": provider.auth_header,
                "prefix": provider.auth_prefix,
            }
        out[provider.name] = data
    return out


def _header_mutation() -> dict[str, Any]:
    keys = PLAIN_KEYS + ENCODED_KEYS
    # Removals first: a key the endpoint lacks (no credential) yields an empty value, which
    # header_mutation skips, and a client-sent copy must not survive in its place.
    mutations: list[dict[str, Any]] = [{"remove": target_header(k)} for k in keys]
    mutations += [
        {
            "append": {
                "header": {
                    "key": target_header(k),
                    "value": f"%UPSTREAM_METADATA({METADATA_NS}:{k})%",
                },
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        }
        for k in keys
    ]
    return {
        "name": "envoy.filters.http.header_mutation",
        "typed_config": {
            "@type": HEADER_MUTATION_TYPE,
            "mutations": {"request_mutations": mutations},
        },
    }


def render_upstream_filters(ir: GatewayIR, options: EnvoyOptions) -> list[dict[str, Any]]:
    """The router's upstream_http_filters: header_mutation -> Lua -> codec."""
    data = {
        "headers": {k: target_header(k) for k in PLAIN_KEYS + ENCODED_KEYS},
        "providers": provider_data(ir, options),
        "secret_ttl_s": options.secret_ttl_s,
    }
    return [
        _header_mutation(),
        lua_filter(LUA_FILTER, upstream_source(data)),
        {
            "name": "envoy.filters.http.upstream_codec",
            "typed_config": {"@type": UPSTREAM_CODEC_TYPE},
        },
    ]
