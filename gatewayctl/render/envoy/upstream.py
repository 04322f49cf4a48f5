"""The per-attempt upstream rewrite: one filter chain for every route, fed by endpoint metadata.

Upstream HTTP filters of a composite cluster's members do not run (only the routed parent's
do), and a parent's own filters would be repeated in every `r_<route>_<model>` cluster. So the
chain lives once, in the router's `upstream_http_filters` (used by every cluster that has no
filters of its own). What is specific to the attempt's model is endpoint metadata `gw.*` of
the member cluster `m_<model>` that the attempt picked:

    model    the Model's name (the access log and x-gateway-model read it)
    target   model, provider, upstream model and authority, each percent-encoded (see
             `encode_value`), joined by `|`, which encoding never leaves in a part

header_mutation removes any client copy of the x-gw-target header, then copies `target` into
it (`%UPSTREAM_METADATA(gw:target)%`): one formatted value per attempt, where four separate
headers cost four (each ~8k instructions). The upstream Lua filter (lua/upstream.lua) reads
and removes it, and finds the provider's base path and credential (secret file, header,
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
    FILTER_CONFIG_TYPE,
    HEADER_MUTATION_TYPE,
    METADATA_NS,
    TARGET_HEADER,
    UPSTREAM_CODEC_TYPE,
    UPSTREAM_REWRITE_FILTER,
    UPSTREAM_TARGET_FILTER,
)
from gatewayctl.render.envoy.options import EnvoyOptions

# Kept literal by encode_value: RFC 3986 unreserved characters, `/` and `:` (model names such
# as `meta-llama/Llama-3.1-70B-Instruct` and authorities stay readable). Not `|`, which
# separates the parts of `target`.
_SAFE = "/:-._~"
TARGET_SEPARATOR = "|"


def encode_value(text: str) -> str:
    """Percent-encode a metadata value that travels through a request header.

    Header values lose leading and trailing whitespace and cannot carry control characters;
    every byte outside [A-Za-z0-9/:-._~] becomes %XX, which the Lua filter decodes.
    """
    return quote(text, safe=_SAFE)


def target_value(model: ModelIR, provider: ProviderIR, authority: str) -> str:
    parts = (model.name, provider.name, model.upstream_model, authority)
    return TARGET_SEPARATOR.join(encode_value(p) for p in parts)


def endpoint_metadata(model: ModelIR, provider: ProviderIR, authority: str) -> dict[str, str]:
    """filter_metadata.gw of the model's endpoint: what an attempt on it must change."""
    return {"model": model.name, "target": target_value(model, provider, authority)}


def pinned_models(ir: GatewayIR) -> dict[str, ModelIR]:
    """Route name -> the one model every attempt of the route goes to, for the routes whose
    downstream filter can set the attempt's target itself (pinned routes).

    That is a route with one backend and no fallback to another model, whose provider speaks
    OpenAI and has no base path (a path prefix would have to be added after route matching).
    Its requests carry the provider's authority and credential and the upstream model name from the
    downstream Lua filter, and the route switches off the per-attempt chain (header_mutation
    and the upstream Lua): about a tenth of the gateway's work per request.
    """
    models = {m.name: m for m in ir.models}
    providers = {p.name: p for p in ir.providers}
    out: dict[str, ModelIR] = {}
    for route in ir.routes:
        if len(route.backends) != 1:
            continue
        model = models[route.backends[0].model]
        provider = providers[model.provider]
        # A provider of another API is translated per attempt (translate.py), never pinned.
        if (
            all(f == model.name for f in route.fallback)
            and not provider.base_path
            and provider.api == "openai"
        ):
            out[route.name] = model
    return out


def skip_upstream_filters() -> dict[str, Any]:
    """typed_per_filter_config of a pinned route: its attempts need no per-attempt rewrite."""
    off = {"@type": FILTER_CONFIG_TYPE, "disabled": True}
    return {UPSTREAM_TARGET_FILTER: dict(off), UPSTREAM_REWRITE_FILTER: dict(off)}


def provider_data(ir: GatewayIR, options: EnvoyOptions) -> dict[str, Any]:
    """Per provider: base path, credential and API, for the upstream Lua filters' data tables.
    A Bedrock provider's credential is no header: Envoy's SigV4 signer reads it (translate.py)."""
    out: dict[str, Any] = {}
    for provider in ir.providers:
        data: dict[str, Any] = {"base_path": provider.base_path}
        if provider.api != "openai":
            data["api"] = provider.api
            data["name"] = provider.name
        if provider.api == "bedrock":
            data["sign"] = True
        elif provider.credential is not None:
            ref = provider.credential
            data["credential"] = {
                "file": f"{options.secrets_dir}/{ref.name}/{ref.key}",
                "header": provider.auth_header,
                "prefix": provider.auth_prefix,
            }
        out[provider.name] = data
    return out


def _header_mutation() -> dict[str, Any]:
    # The removal first: a client-sent copy must not survive when the value is written.
    value = f"%UPSTREAM_METADATA({METADATA_NS}:target)%"
    append = {
        "header": {"key": TARGET_HEADER, "value": value},
        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
    }
    return {
        "name": UPSTREAM_TARGET_FILTER,
        "typed_config": {
            "@type": HEADER_MUTATION_TYPE,
            "mutations": {"request_mutations": [{"remove": TARGET_HEADER}, {"append": append}]},
        },
    }


def render_upstream_filters(
    ir: GatewayIR, options: EnvoyOptions, extra: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The router's upstream_http_filters: header_mutation -> Lua -> `extra` (the translating
    filter and Bedrock's signer, translate.py, off unless a route switches them on) -> codec."""
    data = {
        "providers": provider_data(ir, options),
        "secret_ttl_s": options.secret_ttl_s,
    }
    return [
        _header_mutation(),
        lua_filter(UPSTREAM_REWRITE_FILTER, upstream_source(data)),
        *(extra or []),
        {
            "name": "envoy.filters.http.upstream_codec",
            "typed_config": {"@type": UPSTREAM_CODEC_TYPE},
        },
    ]
