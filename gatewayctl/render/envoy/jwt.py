"""JWT consumers: Envoy's jwt_authn verifies, the auth filter maps the token to a Consumer.

Every distinct issuer configuration of the gateway is one jwt_authn provider `j<i>` (numbered
in a stable order). One rule covers the OpenAI endpoints with `requires_any` of every provider
and `allow_missing_or_failed`: jwt_authn never answers itself. It records what it found in
dynamic metadata (namespace `envoy.filters.http.jwt_authn`): a verified token's payload under
`j<i>`, a failed one's status under `j<i>_failed`. The auth filter (lua/auth.lua with
lua/principal.lua) reads that, from the headers' stage, before any body byte is buffered: a
key that names a consumer wins; else the first provider that verified the token names the
consumer by its `consumer_claim`; a token that failed gets 401 with the OpenAI-style body
(`token_expired` or `invalid_token`), a verified token whose claim names no consumer 403. What
a route accepts (keys, which providers) and allows is then decided per route exactly as for
API keys (lua/access.lua).

With `dataPlaneFilters: module` the auth filter is compiled (render/envoy/module/gw_jwt.c),
and this ABI's metadata getters return top-level strings, numbers and booleans only, not
jwt_authn's structs: each provider then also forwards a verified token's payload
(base64url) in `x-gw-jwt-<provider>` (`forward_payload_header`), and a header_mutation
filter right after jwt_authn copies a failure's message into `x-gw-jwt-<provider>-failed`.
The module reads the same facts jwt.lua reads from the metadata. Both headers are internal:
a client's copies are removed before any filter (early header mutation) and neither goes
upstream (route table), on Lua gateways with JWT policies too.

An issuer with `cache: {tokens: N}` gets jwt_authn's cache of verified tokens
(`jwt_cache_config`): each worker keeps up to N tokens it verified and accepts them again
without the signature check until they expire (on a hit jwt_authn still checks exp and nbf
with the provider's clock skew, and the audience). A key withdrawn from the JWKS does not stop
a cached token: off unless asked for.

Keys come from the issuer's JWKS URL through a cluster of its own (`jwks_<i>`, fetched at
start and again after `jwks_cache_s`), from the manifest (public keys only) or from a mounted
Secret file (air-gapped setups). A verified token is removed from the request (`forward:
false`): providers never see it. Gateways without any JWT policy render none of this.
"""

from __future__ import annotations

from typing import Any

from gatewayctl.ir import GatewayIR, JwtProviderIR, RouteIR
from gatewayctl.render.envoy.names import (
    API_PATH_REGEX,
    HEADER_INPUT_TYPE,
    HEADER_MUTATION_TYPE,
    JWT_FAILED_HEADER,
    JWT_PAYLOAD_HEADER,
    JWT_VERDICT_FILTER,
    TYPE_PREFIX,
)
from gatewayctl.render.envoy.options import EnvoyOptions

JWT_FILTER = "envoy.filters.http.jwt_authn"
JWT_TYPE = TYPE_PREFIX + "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
# Where jwt_authn writes payloads and failure statuses; auth.lua reads it.
JWT_METADATA_NS = JWT_FILTER
FAILED_SUFFIX = "_failed"
JWKS_FETCH_TIMEOUT = "5s"
# The longest token the cache of verified tokens keeps: a longer one is verified every time.
# Well inside what the listener takes in request headers (Envoy's 60 KiB), and it bounds each
# worker's cache at `tokens` x 8 KiB.
TOKEN_CACHE_MAX_TOKEN_BYTES = 8192
# An Authorization value with fewer than two dots: no JWT can be in it (render_verdict_filter).
NO_TOKEN_REGEX = "[^.]*([.][^.]*)?"
EXTENSION_WITH_MATCHER_TYPE = (
    TYPE_PREFIX + "envoy.extensions.common.matching.v3.ExtensionWithMatcher"
)
SKIP_FILTER_TYPE = (
    TYPE_PREFIX + "envoy.extensions.filters.common.matcher.action.v3.SkipFilter"
)


def provider_names(ir: GatewayIR) -> dict[JwtProviderIR, str]:
    return {p: f"j{i}" for i, p in enumerate(ir.jwt_providers())}


def route_providers(route: RouteIR, names: dict[JwtProviderIR, str]) -> list[str]:
    return sorted({names[p] for p in route.policy.jwt})


def hands_over_in_headers(ir: GatewayIR) -> bool:
    """jwt_authn's verdict goes to the auth filter in headers: its compiled form reads them."""
    return ir.data_plane_filters == "module" and bool(ir.jwt_providers())


def verdict_headers(ir: GatewayIR) -> list[str]:
    """The internal headers that carry jwt_authn's verdict to the compiled auth filter. A
    client's copies are removed on every gateway with JWT policies, whichever auth filter it
    runs, so that both send providers the same headers."""
    return [header.format(provider=name) for name in provider_names(ir).values()
            for header in (JWT_PAYLOAD_HEADER, JWT_FAILED_HEADER)]


def jwks_cluster_name(provider: str) -> str:
    return f"jwks_{provider}"


def _jwks_source(p: JwtProviderIR, name: str, options: EnvoyOptions) -> dict[str, Any]:
    if p.jwks_uri is not None:
        return {
            "remote_jwks": {
                "http_uri": {
                    "uri": p.jwks_uri,
                    "cluster": jwks_cluster_name(name),
                    "timeout": JWKS_FETCH_TIMEOUT,
                },
                "cache_duration": f"{p.jwks_cache_s}s",
                # Fetched when the listener loads, so the first token does not wait for it.
                "async_fetch": {},
                "retry_policy": {"num_retries": 3},
            }
        }
    if p.jwks_inline is not None:
        return {"local_jwks": {"inline_string": p.jwks_inline}}
    assert p.jwks_secret is not None
    path = f"{options.secrets_dir}/{p.jwks_secret.name}/{p.jwks_secret.key}"
    return {"local_jwks": {"filename": path}}


def _provider_config(p: JwtProviderIR, name: str, options: EnvoyOptions,
                     payload_header: bool) -> dict[str, Any]:
    config: dict[str, Any] = {
        "issuer": p.issuer,
        **_jwks_source(p, name, options),
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "forward": False,
        "payload_in_metadata": name,
        "failed_status_in_metadata": name + FAILED_SUFFIX,
        "clock_skew_seconds": p.clock_skew_s,
    }
    if p.audiences:
        config["audiences"] = list(p.audiences)
    if p.token_cache is not None:
        config["jwt_cache_config"] = {"jwt_cache_size": p.token_cache,
                                      "jwt_max_token_size": TOKEN_CACHE_MAX_TOKEN_BYTES}
    if payload_header:
        config["forward_payload_header"] = JWT_PAYLOAD_HEADER.format(provider=name)
    return config


def render_jwt_filter(ir: GatewayIR, options: EnvoyOptions) -> dict[str, Any] | None:
    names = provider_names(ir)
    if not names:
        return None
    requirements: list[dict[str, Any]] = [{"provider_name": n} for n in names.values()]
    requirements.append({"allow_missing_or_failed": {}})
    return {
        "name": JWT_FILTER,
        "typed_config": {
            "@type": JWT_TYPE,
            "providers": {
                n: _provider_config(p, n, options, hands_over_in_headers(ir))
                for p, n in names.items()
            },
            "rules": [
                {
                    "match": {"safe_regex": {"regex": API_PATH_REGEX}},
                    "requires": {"requires_any": {"requirements": requirements}},
                }
            ],
        },
    }


def jwt_lua_data(ir: GatewayIR) -> dict[str, Any] | None:
    """What the auth filter needs: each provider's metadata keys and consumer claim, in the
    order tried, and the consumers a token may name."""
    names = provider_names(ir)
    if not names:
        return None
    return {
        "namespace": JWT_METADATA_NS,
        "providers": [
            {"name": n, "failed": n + FAILED_SUFFIX, "claim": p.consumer_claim}
            for p, n in names.items()
        ],
    }



def render_verdict_filter(ir: GatewayIR) -> dict[str, Any] | None:
    """Right after jwt_authn, for the compiled auth filter: each provider's failure message
    (jwt_authn's failed_status_in_metadata) into its header. No failure, no header (an empty
    value is not added).

    Skipped when the Authorization header (all its values, as the matcher joins them) holds
    fewer than two dots: no value in it can then be a JWT, so every failure jwt_authn records
    is one the auth filter ignores anyway ("not in the form ..." or "Jwt is missing": not a
    token). That is every API-key request, which would otherwise pay for the copy."""
    if not hands_over_in_headers(ir):
        return None
    mutations = [
        {
            "append": {
                "header": {
                    "key": JWT_FAILED_HEADER.format(provider=name),
                    "value": f"%DYNAMIC_METADATA({JWT_METADATA_NS}:{name}{FAILED_SUFFIX}:message)%",
                },
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        }
        for name in provider_names(ir).values()
    ]
    no_token = {
        "predicate": {
            "single_predicate": {
                "input": {
                    "name": "authorization",
                    "typed_config": {"@type": HEADER_INPUT_TYPE, "header_name": "authorization"},
                },
                "value_match": {"safe_regex": {"google_re2": {}, "regex": NO_TOKEN_REGEX}},
            }
        },
        "on_match": {"action": {"name": "skip", "typed_config": {"@type": SKIP_FILTER_TYPE}}},
    }
    return {
        "name": JWT_VERDICT_FILTER,
        "typed_config": {
            "@type": EXTENSION_WITH_MATCHER_TYPE,
            "xds_matcher": {"matcher_list": {"matchers": [no_token]}},
            "extension_config": {
                "name": JWT_VERDICT_FILTER,
                "typed_config": {"@type": HEADER_MUTATION_TYPE,
                                 "mutations": {"request_mutations": mutations}},
            },
        },
    }


def jwt_module_data(ir: GatewayIR) -> dict[str, Any] | None:
    """What the compiled auth filter needs: jwt.lua's data and each provider's headers."""
    data = jwt_lua_data(ir)
    if data is None:
        return None
    providers = [
        {**p, "payload_header": JWT_PAYLOAD_HEADER.format(provider=p["name"]),
         "failed_header": JWT_FAILED_HEADER.format(provider=p["name"])}
        for p in data["providers"]
    ]
    return {**data, "providers": providers}
