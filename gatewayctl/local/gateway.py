"""The embedded default: a real Envoy on 127.0.0.1 serving a manifest root, plus the mock.

`up` compiles the root, starts the mock provider and Envoy as supervised children, and
returns once Envoy serves; `apply_local` changes the running gateway without a restart
(validate first, then the ordered `..data` swaps of `publish.py`); `down` stops it;
`status` and `read_local` report what runs. The state lives in `state.py`'s directory;
which providers the mock serves is decided in `rendering.py`.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

from gatewayctl.errors import GatewayctlError
from gatewayctl.ir import GatewayIR
from gatewayctl.local import process
from gatewayctl.local.admin import AdminClient, ServedConfig
from gatewayctl.local.limits import CHILDREN as LIMIT_CHILDREN
from gatewayctl.local.limits import needs_limit_services, start_limit_services
from gatewayctl.local.module import envoy_env
from gatewayctl.local.process import HOST
from gatewayctl.local.publish import ConfigDir
from gatewayctl.local.reload import (
    DRAIN_TIME_S,
    ApplyResult,
    LocalView,
    apply_local,
    read_local,
)
from gatewayctl.local.rendering import (
    LocalBundle,
    Ports,
    choose_providers,
    example_curl,
    load_ir,
    prepare_local_secrets,
    render_local,
    validate_local,
)
from gatewayctl.local.state import CorruptStateFile, LocalState, ProcessRecord, StateDir
from gatewayctl.render.envoy.options import LOCAL_FILE_FLUSH_MS

__all__ = ["ApplyResult", "DownResult", "LocalView", "StatusResult", "UpResult", "apply_local",
           "down", "is_running", "read_local", "status", "up"]

Progress = Callable[[str], None]
# immediate drain: a connection opened before an apply is told `connection: close` with its
# next response, so keep-alive clients move to the new routes at once (see reload.py).
ENVOY_FLAGS = ("--reject-unknown-dynamic-fields", "--file-flush-interval-msec",
               str(LOCAL_FILE_FLUSH_MS),
               "--disable-hot-restart", "--concurrency", "2", "--log-level", "info",
               "--drain-strategy", "immediate")


def _quiet(_msg: str) -> None:
    pass


@dataclass(frozen=True)
class UpResult:
    root: str
    state_dir: str
    ports: Ports
    envoy_pid: int
    mock_pid: int
    ready_s: float
    config_version: str
    models: tuple[str, ...]  # the public model names, one per route
    mocked: tuple[tuple[str, str], ...]  # (provider, why)
    real: tuple[str, ...]
    curl: str
    filters: str = "lua"  # as served: lua or module

    def summary(self) -> str:
        lines = [f"local gateway serving {self.root} on http://{HOST}:{self.ports.listener}"
                 f" (ready in {self.ready_s:.2f}s)",
                 f"  models: {', '.join(sorted(self.models)) or '(none)'} (the routes' public "
                 "names: what clients send as `model`)",
                 "  filters: " + ("compiled (gatewayctl's Envoy dynamic module)"
                                  if self.filters == "module" else "Lua")]
        lines += [f"  provider {p}: local mock at http://{HOST}:{self.ports.mock} ({why})"
                  for p, why in self.mocked]
        lines += [f"  provider {p}: its real endpoint" for p in self.real]
        lines += [f"  envoy pid {self.envoy_pid}, admin http://{HOST}:{self.ports.admin}; "
                  f"logs and state in {self.state_dir}", "try:", f"  {self.curl}"]
        return "\n".join(lines)


@dataclass(frozen=True)
class DownResult:
    was_running: bool
    stopped: tuple[tuple[str, str], ...]  # (process, "stopped" | "killed" | "not running")

    def summary(self) -> str:
        if not self.was_running:
            return "no local gateway is running"
        return "local gateway stopped (" + ", ".join(f"{n} {how}" for n, how in self.stopped) + ")"


@dataclass(frozen=True)
class StatusResult:
    running: bool
    state_dir: str
    root: str = ""
    ports: Ports | None = None
    envoy_pid: int | None = None
    mock_pid: int | None = None
    uptime_s: float | None = None
    config_version: str = ""
    served: ServedConfig | None = None
    applies: int = 0
    lingering: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    def summary(self) -> str:
        if not self.running:
            return "\n".join(["no local gateway is running", *self.problems])
        assert self.ports is not None
        up = f"{self.uptime_s:.0f}s" if self.uptime_s is not None else "?"
        lines = [f"local gateway serving {self.root} on http://{HOST}:{self.ports.listener}",
                 f"  envoy pid {self.envoy_pid} (admin :{self.ports.admin}), mock provider pid "
                 f"{self.mock_pid} (:{self.ports.mock}), up {up}",
                 f"  config version {self.config_version or '?'}, applied {self.applies} time(s)"
                 " since up"]
        for r in self.served.routes if self.served else ():
            lines.append(f"  route {r.name}: " + ", ".join(f"{c} {w}" for c, w in r.clusters))
        if self.lingering:
            lines.append(f"  {len(self.lingering)} removed cluster(s) kept while older "
                         "connections drain: " + ", ".join(self.lingering))
        return "\n".join(lines + [f"  warning: {p}" for p in self.problems])


# -- up / down ---------------------------------------------------------------------------------
def up(root: Path, *, listener_port: int | None = None, admin_port: int = 9901,
       mock_port: int | None = None, detach: bool = True, mock_all: bool = False,
       drain_time_s: int = DRAIN_TIME_S, state_dir: Path | None = None,
       on_progress: Progress = _quiet) -> UpResult:
    """Start the local gateway serving `root` on `listener_port` (default: the Gateway's
    `listener.port`); with detach=False, serve until Ctrl-C."""
    state = StateDir(state_dir)
    root = root.resolve()
    with state.lock():
        current = state.read_state()
        if current is not None and _alive(state, "envoy"):
            raise GatewayctlError(
                f"a local gateway is already running (serving {current.root} on port "
                f"{current.listener_port})",
                hint="run `gatewayctl down` first, or `gatewayctl apply ROOT --live local` "
                "to change what it serves")
        _stop_children(state)  # leftovers of a gateway that died
        state.clear_runtime()
        ir = load_ir(root)
        on_progress(f"compiled {root}: {len(ir.routes)} route(s), "
                    f"{len(ir.providers)} provider(s)")
        ports = _choose_ports(ir, listener_port, admin_port, mock_port)
        if needs_limit_services(ir):
            taken = frozenset((ports.listener, ports.admin, ports.mock))
            redis = process.free_port(taken)
            ratelimit = process.free_port(taken | {redis})
            ports = replace(ports, redis=redis, ratelimit=ratelimit,
                            cache_store=process.free_port(taken | {redis, ratelimit}))
        secrets = prepare_local_secrets(state, ir, root)
        choice = choose_providers(ir, secrets, mock_all=mock_all)
        bundle = render_local(ir, state, ports, choice)
        if bundle.notice is not None:
            on_progress(bundle.notice)
        took = validate_local(bundle, state)
        on_progress(f"envoy --mode validate: OK ({took:.2f}s)")
        try:
            result = _start(state, root, ir, ports, bundle, choice.reasons, choice.real,
                            drain_time_s, on_progress)
        except BaseException:
            _stop_children(state)
            state.clear_runtime()
            raise
    if not detach:  # outside the lock: `apply --live local` works while this serves
        on_progress(result.summary())
        envoy = state.read_pid("envoy") or ProcessRecord(result.envoy_pid, None)
        _serve_foreground(state, envoy, on_progress)
    return result


def _choose_ports(ir: GatewayIR, listener: int | None, admin: int,
                  mock: int | None) -> Ports:
    """The ports `up` listens on; one error names every port that is taken or repeated."""
    listener = ir.listener_port if listener is None else listener
    wanted = [(listener, "listener"), (admin, "admin")] + ([] if mock is None
                                                          else [(mock, "mock provider")])
    seen: dict[int, str] = {}
    for port, what in wanted:
        if port in seen:
            raise GatewayctlError(f"the {seen[port]} and {what} ports are both {port}",
                                  hint="choose different ports (--port, --admin-port, "
                                  "--mock-port)")
        seen[port] = what
    process.check_ports_free(wanted)
    return Ports(listener, admin, mock or process.free_port(frozenset(seen)))


def _start(state: StateDir, root: Path, ir: GatewayIR, ports: Ports, bundle: LocalBundle,
           mocked: tuple[tuple[str, str], ...], real: tuple[str, ...],
           drain_time_s: int, on_progress: Progress) -> UpResult:
    since = process.log_size(state.mock_log)
    mock = process.spawn([sys.executable, "-m", "gatewayctl", "mock-provider", "--host", HOST,
                          "--port", str(ports.mock), "--name", "gatewayctl-local",
                          "--aws-credentials", str(state.mock_aws_credentials)],
                         state.mock_log)
    state.write_pid("mock", mock)
    process.wait_mock_ready(mock, ports.mock, state.mock_log, since)
    on_progress(f"mock provider listening on http://{HOST}:{ports.mock} (pid {mock.pid})")

    if ports.ratelimit:
        redis_pid, ratelimit_pid, store_pid = start_limit_services(
            state, ir, ports.redis, ports.ratelimit, ports.cache_store)
        on_progress(f"global limits: redis-server on {HOST}:{ports.redis} (pid {redis_pid}), "
                    f"rate limit service on {HOST}:{ports.ratelimit} (pid {ratelimit_pid}), "
                    f"response cache store on {HOST}:{ports.cache_store} (pid {store_pid})")

    ConfigDir(state.config_dir).publish(bundle.docs)
    bootstrap = state.envoy_dir / "bootstrap.yaml"
    bootstrap.write_text(bundle.bootstrap, encoding="utf-8")
    since = process.log_size(state.envoy_log)
    started = time.time()
    envoy = process.spawn([process.find_envoy(), "-c", str(bootstrap), *ENVOY_FLAGS,
                           "--drain-time-s", str(drain_time_s)], state.envoy_log,
                          env=envoy_env(state.module_search_path))
    state.write_pid("envoy", envoy)
    ready_s = process.wait_envoy_ready(envoy, admin_port=ports.admin,
                                       listener_port=ports.listener, log=state.envoy_log,
                                       since=since)
    on_progress(f"envoy ready in {ready_s:.2f}s (pid {envoy.pid})")
    state.write_ir(ir)
    state.write_state(LocalState(
        root=str(root), listener_port=ports.listener, admin_port=ports.admin,
        mock_port=ports.mock, started_at=started, config_version=bundle.version,
        applied_at=started, mocked_providers=tuple(p for p, _ in mocked), real_providers=real,
        drain_time_s=drain_time_s, redis_port=ports.redis, ratelimit_port=ports.ratelimit,
        cache_store_port=ports.cache_store))
    return UpResult(str(root), str(state.path), ports, envoy.pid, mock.pid, ready_s,
                    bundle.version, tuple(r.public_model for r in ir.routes), mocked, real,
                    example_curl(ir, ports.listener, state.secrets_dir), bundle.filters)


def _serve_foreground(state: StateDir, envoy: ProcessRecord, on_progress: Progress) -> None:
    def to_interrupt(_sig: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, to_interrupt)
    try:
        while process.is_alive(envoy):
            time.sleep(0.5)
        on_progress(f"envoy exited; last lines of {state.envoy_log}:\n"
                    f"{process.log_tail(state.envoy_log)}")
    except KeyboardInterrupt:
        on_progress("stopping the local gateway")
    finally:
        signal.signal(signal.SIGTERM, previous)
        down(state_dir=state.path)


def down(*, state_dir: Path | None = None) -> DownResult:
    """Stop Envoy and the mock provider (SIGTERM, then SIGKILL after 10s)."""
    state = StateDir(state_dir)
    if not state.path.exists():
        return DownResult(False, ())
    with state.lock():
        try:
            was_running = state.read_state() is not None
        except CorruptStateFile:
            was_running = True  # something was started; clearing the state is what helps
        stopped = _stop_children(state)
        was_running = was_running or any(how != "not running" for _, how in stopped)
        state.clear_runtime()
    return DownResult(was_running, stopped)


def is_running(*, state_dir: Path | None = None) -> bool:
    """Whether the local gateway's Envoy runs."""
    state = StateDir(state_dir)
    return state.read_state() is not None and _alive(state, "envoy")


def _alive(state: StateDir, name: str) -> bool:
    record = state.read_pid(name)
    return record is not None and process.is_alive(record)


def _stop_children(state: StateDir) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for name in ("envoy", "mock", *LIMIT_CHILDREN):
        try:
            record = state.read_pid(name)
        except CorruptStateFile as err:
            out.append((name, f"not stopped: {err.path} is corrupt, stop it by hand"))
            continue
        if record is not None:
            out.append((name, process.stop(record)))
    return tuple(out)


# -- status / live ------------------------------------------------------------------------------
def status(*, state_dir: Path | None = None) -> StatusResult:
    state = StateDir(state_dir)
    current = state.read_state()
    envoy = state.read_pid("envoy")
    if current is None or envoy is None or not process.is_alive(envoy):
        died = ("the last local gateway died; `gatewayctl down` cleans up, "
                f"see {state.envoy_log}",) if current is not None else ()
        return StatusResult(False, str(state.path), problems=died)
    ports = Ports(current.listener_port, current.admin_port, current.mock_port)
    admin = AdminClient(ports.admin)
    problems: list[str] = []
    served: ServedConfig | None = None
    try:
        served = admin.served()
        if not admin.ready():
            problems.append("Envoy is not ready")
    except GatewayctlError as err:
        problems.append(err.message)
    mock = state.read_pid("mock")
    if mock is None or not process.is_alive(mock):
        problems.append(f"the mock provider is not running; see {state.mock_log}")
    return StatusResult(
        True, str(state.path), current.root, ports, envoy.pid, mock.pid if mock else None,
        time.time() - current.started_at, served.lds_version if served else "", served,
        current.applies, current.lingering, tuple(problems))
