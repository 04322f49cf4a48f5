"""Providers that do not speak OpenAI: the translating upstream filter and Bedrock's signer.

Clients always speak OpenAI's API. A route whose attempts can reach a provider of another API
(anthropic, bedrock, gemini: its "native" APIs, over its backends and fallbacks) runs, in the
router's per-attempt chain, `gatewayctl.upstream_translate` (lua/translate.lua) instead of
`gatewayctl.upstream_rewrite`: each attempt's OpenAI body is written in that attempt's API,
and the reply read back into OpenAI's shape, so retries, fallback across provider types, the
body filter's usage and cost and the access log all see OpenAI's shape. Both filters are in the
router's chain; the translating one is disabled there (`disabled: true`) and switched on by the
route, so routes whose providers all speak OpenAI carry no trace of translation: their config
and their per-request work are what they were.

Bedrock attempts are then signed by Envoy's `envoy.filters.http.aws_request_signing` (SigV4,
service `bedrock`): one signer per Bedrock provider (its region; its secret as an AWS
credentials file, or the pod's default credential chain without one), selected by a composite
filter on the x-gw-sign header the translating filter sets, which the signer leaves unsigned
and a header_mutation removes before the request leaves. Both are disabled in the chain and
switched on by the routes that can reach Bedrock.

Routes with a native provider are never pinned (upstream.pinned_models): their attempts always
go through the per-attempt chain, which sets each attempt's path for its API.
"""

from __future__ import annotations

from typing import Any

from gatewayctl.ir import GatewayIR, ProviderApi, RouteIR
from gatewayctl.render.envoy.lua import translate_source
from gatewayctl.render.envoy.names import (
    AWS_SIGNING_TYPE,
    COMPOSITE_FILTER_TYPE,
    EXECUTE_FILTER_ACTION_TYPE,
    EXTENSION_WITH_MATCHER_PER_ROUTE_TYPE,
    EXTENSION_WITH_MATCHER_TYPE,
    FILTER_CONFIG_TYPE,
    HEADER_INPUT_TYPE,
    HEADER_MUTATION_PER_ROUTE_TYPE,
    HEADER_MUTATION_TYPE,
    LUA_PER_ROUTE_TYPE,
    LUA_TYPE,
    SIGN_HEADER,
    UPSTREAM_REWRITE_FILTER,
    UPSTREAM_SIGN_CLEANUP_FILTER,
    UPSTREAM_SIGN_FILTER,
    UPSTREAM_TRANSLATE_FILTER,
)
from gatewayctl.render.envoy.options import EnvoyOptions
from gatewayctl.render.envoy.upstream import provider_data

# The named source the routes switch the translating filter on with (LuaPerRoute.name).
TRANSLATE_SOURCE = "translate"
BEDROCK_SERVICE = "bedrock"
AWS_PROFILE = "default"


def native_apis(ir: GatewayIR, route: RouteIR) -> tuple[ProviderApi, ...]:
    """The route's APIs other than OpenAI's: what its requests are translated to."""
    return ir.native_apis(route)


def has_native(ir: GatewayIR) -> bool:
    return any(p.api != "openai" for p in ir.providers)


def _signs(ir: GatewayIR, route: RouteIR) -> bool:
    return "bedrock" in native_apis(ir, route)


def _bedrock_providers(ir: GatewayIR) -> list[Any]:
    return sorted((p for p in ir.providers if p.api == "bedrock"), key=lambda p: p.name)


def translate_data(ir: GatewayIR, options: EnvoyOptions) -> dict[str, Any]:
    """The translating filter's data: the providers (as upstream.lua has them), and the
    default max_tokens of each model whose Model sets maxOutputTokens."""
    return {
        "providers": provider_data(ir, options),
        "secret_ttl_s": options.secret_ttl_s,
        "max_tokens": {
            m.name: m.max_output_tokens for m in ir.models if m.max_output_tokens is not None
        },
    }


def render_translate_filter(ir: GatewayIR, options: EnvoyOptions) -> dict[str, Any]:
    """The translating upstream filter, disabled unless a route switches it on."""
    return {
        "name": UPSTREAM_TRANSLATE_FILTER,
        "disabled": True,
        "typed_config": {
            "@type": LUA_TYPE,
            "source_codes": {
                TRANSLATE_SOURCE: {"inline_string": translate_source(translate_data(ir, options))}
            },
        },
    }


def _signer(provider: Any, options: EnvoyOptions) -> dict[str, Any]:
    config: dict[str, Any] = {
        "@type": AWS_SIGNING_TYPE,
        "service_name": BEDROCK_SERVICE,
        "region": provider.region,
        "use_unsigned_payload": False,
        "match_excluded_headers": [{"exact": SIGN_HEADER}],
    }
    ref = provider.credential
    if ref is not None:
        directory = f"{options.secrets_dir}/{ref.name}"
        config["credential_provider"] = {
            "custom_credential_provider_chain": True,
            "credentials_file_provider": {
                "credentials_data_source": {
                    "filename": f"{directory}/{ref.key}",
                    # a rotated Secret (the kubelet's ..data swap) is read again
                    "watched_directory": {"path": directory},
                },
                "profile": AWS_PROFILE,
            },
        }
    return {"name": "envoy.filters.http.aws_request_signing", "typed_config": config}


def _signer_matcher(ir: GatewayIR, options: EnvoyOptions) -> dict[str, Any]:
    return {
        "matcher_tree": {
            "input": {
                "name": "provider",
                "typed_config": {"@type": HEADER_INPUT_TYPE, "header_name": SIGN_HEADER},
            },
            "exact_match_map": {
                "map": {
                    p.name: {
                        "action": {
                            "name": f"sign-{p.name}",
                            "typed_config": {
                                "@type": EXECUTE_FILTER_ACTION_TYPE,
                                "typed_config": _signer(p, options),
                            },
                        }
                    }
                    for p in _bedrock_providers(ir)
                }
            },
        }
    }


def _sign_cleanup() -> dict[str, Any]:
    return {"request_mutations": [{"remove": SIGN_HEADER}]}


def render_signing_filters(ir: GatewayIR, options: EnvoyOptions) -> list[dict[str, Any]]:
    """The Bedrock signer (a composite filter choosing the provider's signer by x-gw-sign) and
    the removal of x-gw-sign after it; none without a Bedrock provider."""
    if not _bedrock_providers(ir):
        return []
    return [
        {
            "name": UPSTREAM_SIGN_FILTER,
            "disabled": True,
            "typed_config": {
                "@type": EXTENSION_WITH_MATCHER_TYPE,
                "extension_config": {
                    "name": "composite",
                    "typed_config": {"@type": COMPOSITE_FILTER_TYPE},
                },
                "xds_matcher": _signer_matcher(ir, options),
            },
        },
        {
            "name": UPSTREAM_SIGN_CLEANUP_FILTER,
            "disabled": True,
            "typed_config": {"@type": HEADER_MUTATION_TYPE, "mutations": _sign_cleanup()},
        },
    ]


def native_upstream_filters(ir: GatewayIR, options: EnvoyOptions) -> list[dict[str, Any]]:
    """What the router's upstream chain holds for providers of other APIs (none without)."""
    if not has_native(ir):
        return []
    return [render_translate_filter(ir, options), *render_signing_filters(ir, options)]


def route_filter_configs(
    ir: GatewayIR, route: RouteIR, options: EnvoyOptions
) -> dict[str, Any]:
    """typed_per_filter_config of a route with a native provider: the OpenAI rewrite off, the
    translating filter on, and for Bedrock the signer and its cleanup on. Empty otherwise."""
    if not native_apis(ir, route):
        return {}
    out: dict[str, Any] = {
        UPSTREAM_REWRITE_FILTER: {"@type": FILTER_CONFIG_TYPE, "disabled": True},
        UPSTREAM_TRANSLATE_FILTER: {"@type": LUA_PER_ROUTE_TYPE, "name": TRANSLATE_SOURCE},
    }
    if _signs(ir, route):
        out[UPSTREAM_SIGN_FILTER] = {
            "@type": EXTENSION_WITH_MATCHER_PER_ROUTE_TYPE,
            "xds_matcher": _signer_matcher(ir, options),
        }
        out[UPSTREAM_SIGN_CLEANUP_FILTER] = {
            "@type": HEADER_MUTATION_PER_ROUTE_TYPE,
            "mutations": _sign_cleanup(),
        }
    return out
