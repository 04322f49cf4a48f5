"""Where the rendered Envoy finds its files and listens: deployment-specific, not manifest data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

LOOPBACK = "127.0.0.1"
# Envoy's --file-flush-interval-msec: its default (what the Kubernetes image runs), and what
# every Envoy on this machine is started with (local/gateway.py, tests, benchmarks).
ENVOY_FILE_FLUSH_MS = 10000
LOCAL_FILE_FLUSH_MS = 200


@dataclass(frozen=True)
class EnvoyOptions:
    # Provider and consumer secrets are mounted as <secrets_dir>/<secret-name>/<key>.
    secrets_dir: str = "/etc/gatewayctl/secrets"
    # Where lds.json and cds.json live (watched_directory of the bootstrap).
    config_dir: str = "/etc/envoy/config"
    # Envoy's admin API: loopback only (it can change log levels, dump the config, stop
    # Envoy); nothing outside the pod reaches it. Prometheus scrapes the stats listener.
    admin_address: str = "127.0.0.1"
    admin_port: int = 9901
    # The stats listener: /stats/prometheus (proxied to admin, GET only) and the liveness
    # probe path; None renders none (the local gateway and tests read admin directly).
    stats_address: str = "0.0.0.0"
    stats_port: int | None = 9902
    listener_address: str = "0.0.0.0"
    listener_port: int | None = None  # None: the Gateway's listener port
    access_log_path: str = "/dev/stdout"
    # How often the compiled JSON access logger (module/gw_log.c) writes out what it holds:
    # the flush interval Envoy's own file logger gets from --file-flush-interval-msec.
    access_log_flush_ms: int = ENVOY_FILE_FLUSH_MS
    # Provider name -> "http://HOST:PORT": send that provider's traffic there instead (the
    # local gateway's mock provider).
    provider_overrides: Mapping[str, str] = field(default_factory=dict)
    node_id: str = "gatewayctl"
    node_cluster: str | None = None  # None: the Gateway's name
    # CA bundle that verifies https providers (the path in the envoyproxy/envoy image).
    ca_bundle: str = "/etc/ssl/certs/ca-certificates.crt"
    # How long a worker caches a secret file before reading it again (key rotation delay).
    secret_ttl_s: int = 10
    # How often histograms (latency) are merged into /stats/prometheus.
    stats_flush_interval_ms: int = 5000
    # Global limits: "HOST:PORT" of the rate limit service's gRPC API; None: the Service
    # gatewayctl renders beside the gateway (render/envoy/global_limits.py).
    ratelimit_address: str | None = None
    # Global scope with a response cache: "HOST:PORT" of the cache store service's HTTP API;
    # None: the Service gatewayctl renders beside the gateway (render/envoy/cache.py).
    cache_store_address: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "provider_overrides",
            MappingProxyType(dict(sorted(self.provider_overrides.items()))),
        )

    def __hash__(self) -> int:
        return hash((self.secrets_dir, self.config_dir, tuple(self.provider_overrides.items())))


def loopback_options(*, admin_port: int, listener_port: int, **more: Any) -> EnvoyOptions:
    """An Envoy only this machine reaches (the local gateway, tests, benchmarks): listener and
    admin on 127.0.0.1 and no stats listener, since whoever runs it reads admin directly;
    `more` sets the other options (folders, access log, provider overrides)."""
    more.setdefault("access_log_flush_ms", LOCAL_FILE_FLUSH_MS)
    return EnvoyOptions(
        admin_address=LOOPBACK,
        admin_port=admin_port,
        stats_port=None,
        listener_address=LOOPBACK,
        listener_port=listener_port,
        **more,
    )
