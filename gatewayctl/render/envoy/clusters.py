"""Clusters: one member cluster per Model, one composite parent per (route, backend).

Member `m_<model>`: the provider's endpoint (TLS with SNI and SAN check for https), with what
an attempt on that model must change as endpoint metadata `gw.*` (upstream.py). Parent
`r_<route>_<model>`: an `envoy.clusters.composite` over [backend x (retries + 1), fallbacks...],
so attempt N of the route's retry policy goes to member N. Parents carry no filters: the
router's shared upstream filter chain runs on them, once per attempt, and reads the chosen
member's endpoint metadata. A parent is a few hundred bytes whatever the gateway's size, and
stays one per (route, backend) because its stats are the route's per-backend metrics.
Fields equal to Envoy's defaults (connect_timeout 5s, lb_policy ROUND_ROBIN, circuit-breaker
thresholds of 1024) are left out.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from gatewayctl.ir import GatewayIR, ModelIR, ProviderIR, RouteIR
from gatewayctl.render.envoy.jwt import jwks_cluster_name, provider_names
from gatewayctl.render.envoy.names import (
    COMPOSITE_CLUSTER_TYPE,
    METADATA_NS,
    TLS_UPSTREAM_TYPE,
    backend_cluster_name,
    model_cluster_name,
)
from gatewayctl.render.envoy.options import EnvoyOptions
from gatewayctl.render.envoy.upstream import endpoint_metadata

# Envoy's default for max_connections, max_pending_requests and max_requests (and the
# manifests' default maxConnections): thresholds equal to it are left out.
ENVOY_DEFAULT_LIMIT = 1024


def _member_circuit_breakers(limit: int) -> dict[str, Any] | None:
    # Connections, pending and active requests are counted on the member whose pool is used.
    if limit == ENVOY_DEFAULT_LIMIT:
        return None
    return {
        "thresholds": [
            {
                "priority": "DEFAULT",
                "max_connections": limit,
                "max_pending_requests": limit,
                "max_requests": limit,
            }
        ]
    }


def _parent_circuit_breakers(limit: int) -> dict[str, Any]:
    # Retries are counted on the routed cluster, the parent; Envoy's default would allow only
    # 3 concurrent retries (fallbacks) per route backend.
    threshold: dict[str, Any] = {"priority": "DEFAULT", "max_retries": limit}
    if limit != ENVOY_DEFAULT_LIMIT:
        threshold["max_requests"] = limit
    return {"thresholds": [threshold]}


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


@functools.lru_cache(maxsize=1024)  # a few hosts, thousands of models: parse each host once
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
                                    METADATA_NS: endpoint_metadata(
                                        model, provider, authority(scheme, host, port)
                                    )
                                }
                            },
                        }
                    ]
                }
            ],
        },
    }
    breakers = _member_circuit_breakers(provider.max_connections)
    if breakers is not None:
        cluster["circuit_breakers"] = breakers
    if not _is_ip(host):
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    if scheme == "https":
        cluster["transport_socket"] = _tls(host, options)
    return cluster


def _tls(host: str, options: EnvoyOptions) -> dict[str, Any]:
    """TLS to an https host: SNI, the CA bundle, the host's name in the certificate."""
    return {
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


def render_jwks_clusters(ir: GatewayIR, options: EnvoyOptions) -> list[dict[str, Any]]:
    """One cluster per JWT provider whose keys come from a URL (render/envoy/jwt.py)."""
    out = []
    for p, provider in provider_names(ir).items():
        if p.jwks_uri is None:
            continue
        url = urlsplit(p.jwks_uri)
        host, scheme = url.hostname or "", url.scheme
        port = url.port or (443 if scheme == "https" else 80)
        name = jwks_cluster_name(provider)
        address = {"socket_address": {"address": host, "port_value": port}}
        cluster: dict[str, Any] = {
            "name": name,
            "type": "STATIC" if _is_ip(host) else "LOGICAL_DNS",
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
            },
        }
        if not _is_ip(host):
            cluster["dns_lookup_family"] = "V4_PREFERRED"
        if scheme == "https":
            cluster["transport_socket"] = _tls(host, options)
        out.append(cluster)
    return out


def chain(route: RouteIR, backend: str) -> list[str]:
    """Model per attempt: the backend for every retry, then the fallbacks in order."""
    return [backend] * (route.retry_attempts + 1) + list(route.fallback)


def _connection_limits(ir: GatewayIR) -> dict[str, int]:
    """Model name -> its provider's maxConnections (IR lookups by name are linear scans)."""
    providers = {p.name: p for p in ir.providers}
    return {m.name: providers[m.provider].max_connections for m in ir.models}


def render_backend_cluster(
    ir: GatewayIR,
    route: RouteIR,
    backend: str,
    options: EnvoyOptions,
    limits: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    models = chain(route, backend)
    by_model = limits if limits is not None else _connection_limits(ir)
    limit = max(by_model[m] for m in models)
    return {
        "name": backend_cluster_name(route.name, backend),
        "lb_policy": "CLUSTER_PROVIDED",
        "cluster_type": {
            "name": "envoy.clusters.composite",
            "typed_config": {
                "@type": COMPOSITE_CLUSTER_TYPE,
                "clusters": [{"name": model_cluster_name(m)} for m in models],
            },
        },
        "circuit_breakers": _parent_circuit_breakers(limit),
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
    models = {m.name: m for m in ir.models}
    providers = {p.name: p for p in ir.providers}
    members = [
        render_model_cluster(models[m], providers[models[m].provider], options) for m in used
    ]
    limits = _connection_limits(ir)
    parents = [
        render_backend_cluster(ir, r, b, options, limits)
        for r in sorted(ir.routes, key=lambda r: r.name)
        for b in sorted(route_backends(r))
    ]
    jwks = render_jwks_clusters(ir, options)
    return sorted(members + parents + jwks, key=lambda c: str(c["name"]))
