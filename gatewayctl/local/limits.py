"""Global limits for the local gateway: Redis, the rate limit service and the response cache's
store service, as children of `up`.

For a root whose Gateway has `limits.scope: global`, `up` starts Debian's `redis-server` on a
free loopback port (no persistence: the counts live as long as the local gateway) and the
local stand-in for envoyproxy/ratelimit (`gatewayctl ratelimit-service`, local/ratelimit/)
reading `<state>/ratelimit/config.yaml`, which every apply rewrites before Envoy's config
changes (the service re-reads it when it changes), and the cache store service
(`gatewayctl cache-store`, local/cachestore/), which keeps the response cache's entries in the
same Redis so that the cache is shared as on Kubernetes (started in global scope whether or not
a route has a cache yet, so that an apply may add one). The manifests' `limits.redis.address` names
the production Redis; locally the gateway always uses its own, logging in and speaking TLS as
the manifests say (local/redis_server.py). Kubernetes runs the official service instead
(render/k8s/ratelimit.py).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

from gatewayctl.errors import GatewayctlError
from gatewayctl.ir import GatewayIR
from gatewayctl.local import process
from gatewayctl.local.process import HOST
from gatewayctl.local.redis_server import start_local_redis
from gatewayctl.local.state import ProcessRecord, StateDir
from gatewayctl.render.ratelimit_config import (
    CONFIG_FILE,
    dump_ratelimit_config,
    render_ratelimit_config,
)

# Stopped in this order (the services before the Redis they keep their data in).
CHILDREN = ("cachestore", "ratelimit", "redis")


def needs_limit_services(ir: GatewayIR) -> bool:
    return ir.limits.scope == "global"


def config_path(state: StateDir) -> Path:
    return state.path / "ratelimit" / CONFIG_FILE


def write_limit_config(state: StateDir, ir: GatewayIR) -> None:
    """The service's configuration for `ir`, replaced atomically (the service polls it)."""
    config = render_ratelimit_config(ir)
    if config is None:
        return
    path = config_path(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(dump_ratelimit_config(config), encoding="utf-8")
    os.replace(tmp, path)


def _wait_port(record: ProcessRecord, port: int, what: str, log: Path, since: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if not process.is_alive(record):
            raise GatewayctlError(
                f"{what} exited: {process.log_tail(log, since=since)}",
                hint=f"see {log}",
            )
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise GatewayctlError(f"{what} did not listen on port {port} within 15s", hint=f"see {log}")


def start_limit_services(state: StateDir, ir: GatewayIR, redis_port: int,
                         ratelimit_port: int, cache_store_port: int) -> tuple[int, int, int]:
    """Start Redis, the rate limit service and the cache store service; their pids."""
    log = state.logs_dir / "redis.log"
    since = process.log_size(log)
    redis = start_local_redis(state, ir, redis_port)
    state.write_pid("redis", redis.record)
    _wait_port(redis.record, redis_port, "redis-server", log, since)

    write_limit_config(state, ir)
    log = state.logs_dir / "ratelimit.log"
    since = process.log_size(log)
    service = process.spawn(
        [sys.executable, "-m", "gatewayctl", "ratelimit-service", "--config",
         str(config_path(state)), "--redis", redis.address, "--host", HOST,
         "--port", str(ratelimit_port)], log, env=redis.env)
    state.write_pid("ratelimit", service)
    _wait_port(service, ratelimit_port, "the rate limit service", log, since)

    log = state.logs_dir / "cachestore.log"
    since = process.log_size(log)
    store = process.spawn(
        [sys.executable, "-m", "gatewayctl", "cache-store", "--gateway", ir.name,
         "--redis", redis.address, "--host", HOST, "--port", str(cache_store_port)],
        log, env=redis.env)
    state.write_pid("cachestore", store)
    _wait_port(store, cache_store_port, "the cache store service", log, since)
    return redis.record.pid, service.pid, store.pid
