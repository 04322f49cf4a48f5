"""Clusters: one member cluster per Model, one composite parent per (route, backend).

Member `m_<model>`: the provider's endpoint (TLS with SNI and SAN check for https), with the
model's name as endpoint metadata `gw.model`. Parent `r_<route>_<model>`: an
`envoy.clusters.composite` over [backend x (retries + 1), fallbacks...], so attempt N of the
route's retry policy goes to member N. Upstream filters only run on the parent (members'
filters are skipped behind a composite), so the parent carries them: header_mutation copies
the chosen endpoint's `gw.model` into a header, and the upstream Lua filter sets the
provider's authority, path prefix and credential and rewrites `model` for that attempt.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from gatewayctl.ir import GatewayIR, ModelIR, ProviderIR, RouteIR
from gatewayctl.render.envoy.lua import lua_filter, upstream_source
from gatewayctl.render.envoy.names import (
    COMPOSITE_CLUSTER_TYPE,
    HEADER_MUTATION_TYPE,
    HTTP_PROTOCOL_OPTIONS_KEY,
    HTTP_PROTOCOL_OPTIONS_TYPE,
    METADATA_NS,
    TARGET_HEADER,
    TLS_UPSTREAM_TYPE,
    UPSTREAM_CODEC_TYPE,
    backend_cluster_name,
    model_cluster_name,
)
from gatewayctl.render.envoy.options import EnvoyOptions

CONNECT_TIMEOUT = "5s"


def _circuit_breakers(limit: int) -> dict[str, Any]:
    return {
        "thresholds": [
            {
                "priority": "DEFAULT",
                "max_connections": limit,
                "max_pending_requests": limit,
                "max_requests": limit,
                "max_retries": limit,
            }
        ]
    }


def provider_address(provider: ProviderIR, options: EnvoyOptions) -> tuple[str, str, int]:
    """(scheme, host, port) the gateway connects to, after a local override."""
    override = options.provider_overrides.get(provider.name)
    if override is None:
        return provider.scheme, provider.host, provider.port
    parts = urlsplit(override)
    scheme = parts.scheme or "http"
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, host, port


def authority(scheme: str, host: str, port: int) -> str:
    default = 443 if scheme == "https" else 80
    shown = f"[{host}]" if ":" in host else host
    return shown if port == default else f"{shown}:{port}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def render_model_cluster(
    model: ModelIR, provider: ProviderIR, options: EnvoyOptions
) -> dict[str, Any]:
    scheme, host, port = provider_address(provider, options)
    name = model_cluster_name(model.name)
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC" if _is_ip(host) else "LOGICAL_DNS",
        "connect_timeout": CONNECT_TIMEOUT,
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {"socket_address": {"address": host, "port_value": port}}
                            },
                            "metadata": {
                                "filter_metadata": {
                                    METADATA_NS: {"model": model.name, "provider": provider.name}
                                }
                            },
                        }
                    ]
                }
            ],
        },
        "circuit_breakers": _circuit_breakers(provider.max_connections),
    }
    if not _is_ip(host):
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    if scheme == "https":
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": TLS_UPSTREAM_TYPE,
                "sni": host,
                "common_tls_context": {
                    "validation_context": {
                        "trusted_ca": {"filename": options.ca_bundle},
                        "match_typed_subject_alt_names": [
                            {"san_type": "DNS", "matcher": {"exact": host}}
                        ],
                    }
                },
            },
        }
    return cluster


def chain(route: RouteIR, backend: str) -> list[str]:
    """Model per attempt: the backend for every retry, then the fallbacks in order."""
    return [backend] * (route.retry_attempts + 1) + list(route.fallback)


def _endpoint_data(ir: GatewayIR, model_name: str, options: EnvoyOptions) -> dict[str, Any]:
    model = ir.model(model_name)
    provider = ir.provider(model.provider)
    scheme, host, port = provider_address(provider, options)
    data: dict[str, Any] = {
        "upstream_model": model.upstream_model,
        "authority": authority(scheme, host, port),
        "base_path": provider.base_path,
    }
    if provider.credential is not None:
        data["credential"] = {
            "file": f"{options.secrets_dir}/{provider.credential.name}/{provider.credential.key}",
            "header": provider.auth_header,
            "prefix": provider.auth_prefix,
        }
    return data


def _upstream_filters(lua_source: str) -> list[dict[str, Any]]:
    target = {
        "header": {"key": TARGET_HEADER, "value": f"%UPSTREAM_METADATA({METADATA_NS}:model)%"},
        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
    }
    return [
        {
            "name": "envoy.filters.http.header_mutation",
            "typed_config": {
                "@type": HEADER_MUTATION_TYPE,
                "mutations": {"request_mutations": [{"append": target}]},
            },
        },
        lua_filter("envoy.filters.http.lua", lua_source),
        {
            "name": "envoy.filters.http.upstream_codec",
            "typed_config": {"@type": UPSTREAM_CODEC_TYPE},
        },
    ]


def render_backend_cluster(
    ir: GatewayIR, route: RouteIR, backend: str, options: EnvoyOptions
) -> dict[str, Any]:
    models = chain(route, backend)
    data = {
        "models": {m: _endpoint_data(ir, m, options) for m in sorted(set(models))},
        "secret_ttl_s": options.secret_ttl_s,
    }
    limit = max(ir.provider(ir.model(m).provider).max_connections for m in models)
    return {
        "name": backend_cluster_name(route.name, backend),
        "connect_timeout": CONNECT_TIMEOUT,
        "lb_policy": "CLUSTER_PROVIDED",
        "cluster_type": {
            "name": "envoy.clusters.composite",
            "typed_config": {
                "@type": COMPOSITE_CLUSTER_TYPE,
                "clusters": [{"name": model_cluster_name(m)} for m in models],
            },
        },
        "circuit_breakers": _circuit_breakers(limit),
        "typed_extension_protocol_options": {
            HTTP_PROTOCOL_OPTIONS_KEY: {
                "@type": HTTP_PROTOCOL_OPTIONS_TYPE,
                "explicit_http_config": {"http_protocol_options": {}},
                "http_filters": _upstream_filters(upstream_source(data)),
            }
        },
    }


def route_backends(route: RouteIR) -> list[str]:
    """Backends that get a parent cluster: every backend (zero weight kept: the canary route)."""
    seen: list[str] = []
    for b in route.backends:
        if b.model not in seen:
            seen.append(b.model)
    return seen


def render_clusters(ir: GatewayIR, options: EnvoyOptions) -> list[dict[str, Any]]:
    used = sorted({m for r in ir.routes for b in route_backends(r) for m in chain(r, b)})
    members = [render_model_cluster(ir.model(m), ir.provider(ir.model(m).provider), options)
               for m in used]
    parents = [
        render_backend_cluster(ir, r, b, options)
        for r in sorted(ir.routes, key=lambda r: r.name)
        for b in sorted(route_backends(r))
    ]
    return sorted(members + parents, key=lambda c: str(c["name"]))
