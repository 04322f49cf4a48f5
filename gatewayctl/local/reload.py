"""Changing and reading the running local gateway: `apply_local` and `read_local`.

Apply = render, `envoy --mode validate` (a refusal changes nothing), then the ordered swaps
of `publish.py`, then record the IR. One more rule on top of that order: Envoy updates a
listener's routes in place, but a connection that was open before keeps the *old* routes until
it closes. Envoy runs with `--drain-strategy immediate`, so such a connection is told
`connection: close` with its next response; one that is idle or mid-request keeps the old
routes for up to the drain time (`up(drain_time_s=...)`, 600 s by default). Clusters the old
routes could reach are therefore not removed while they drain: they linger, and the first
apply after the drain (Envoy's `total_filter_chains_draining` back at 0) removes them.

Owns the apply transaction and the live view; process start/stop lives in `gateway.py`.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gatewayctl.errors import GatewayctlError
from gatewayctl.ir import GatewayIR
from gatewayctl.local import process
from gatewayctl.local.admin import (
    AdminClient,
    ServedConfig,
    cluster_names,
    compare_served,
    summarize_bundle,
)
from gatewayctl.local.limits import needs_limit_services, write_limit_config
from gatewayctl.local.process import ProcessError
from gatewayctl.local.publish import ConfigDir, Publisher, canonical
from gatewayctl.local.redis_server import access_of
from gatewayctl.local.rendering import (
    LocalBundle,
    Ports,
    ProviderChoice,
    choose_providers,
    prepare_local_secrets,
    render_local,
    validate_local,
)
from gatewayctl.local.state import LocalState, StateDir

DRAIN_TIME_S = 600  # Envoy's --drain-time-s by default: how long a replaced route config lives
DRAINING = "listener_manager.total_filter_chains_draining"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ApplyResult:
    changed: bool
    version_before: str
    version_after: str
    swaps: int
    seconds: float
    lingering: tuple[str, ...] = ()  # removed clusters kept until old connections drain
    restart_needed: bool = False

    def summary(self) -> str:
        if not self.changed:
            return "local gateway already serves this configuration; nothing to apply"
        text = (f"applied to the local gateway: version {self.version_before} -> "
                f"{self.version_after} ({self.swaps} swap(s), {self.seconds:.2f}s, no restart)")
        if self.lingering:
            text += (f"\n  {len(self.lingering)} removed cluster(s) stay while connections "
                     "opened before this apply drain; an apply after that removes them: "
                     + ", ".join(self.lingering))
        if self.restart_needed:
            text += ("\n  note: the bootstrap changed too; run `gatewayctl down` and "
                     "`gatewayctl up` for that part to take effect")
        return text


@dataclass(frozen=True)
class LocalView:
    ir: GatewayIR | None  # what the gateway was last given (recorded after Envoy accepted it)
    root: str
    expected: ServedConfig  # what that IR renders to
    served: ServedConfig  # what Envoy reports in /config_dump (lingering clusters left out)
    drift: tuple[str, ...]  # differences between the two; empty when in sync
    lingering: tuple[str, ...] = ()
    published: dict[str, dict[str, Any]] | None = None  # the LDS/CDS files Envoy was given


def restart_hint(root: str | Path) -> str:
    """How to start over on `root` (the running gateway's root, or the one now applied)."""
    return f"run `gatewayctl down`, then `gatewayctl up {shlex.quote(str(root))}`"


def running_state(state: StateDir) -> LocalState:
    current = state.read_state()
    envoy = state.read_pid("envoy")
    if current is None:
        raise GatewayctlError("no local gateway is running",
                              hint="start one with `gatewayctl up ROOT`")
    if envoy is None or not process.is_alive(envoy):
        raise GatewayctlError(
            f"the local gateway's Envoy is no longer running; last lines of {state.envoy_log}:\n"
            f"{process.log_tail(state.envoy_log, lines=5)}",
            hint=restart_hint(current.root))
    return current


def read_local(*, state_dir: Path | None = None) -> LocalView:
    """The IR the local gateway runs, and what Envoy really serves, with any drift."""
    state = StateDir(state_dir)
    current = running_state(state)
    served = AdminClient(current.admin_port).served()
    lingering = tuple(c for c in current.lingering if c in served.clusters)
    served = replace(served, clusters=tuple(c for c in served.clusters if c not in lingering))
    published = ConfigDir(state.config_dir).read()
    ir = state.read_ir()
    if ir is None:
        empty = ServedConfig("", "", (), ())
        return LocalView(None, current.root, empty, served, ("no recorded IR",), lingering,
                         published)
    choice = ProviderChoice(current.mocked_providers, current.real_providers, ())
    bundle = render_local(ir, state, Ports.of(current), choice)
    expected = summarize_bundle(bundle.lds, bundle.cds, bundle.rds)
    if lingering:  # the recorded CDS version names the lingering set; compare the rest
        served = replace(served, cds_version=expected.cds_version)
    return LocalView(ir, current.root, expected, served, compare_served(expected, served),
                     lingering, published)


def render_for_running(ir: GatewayIR, *, state_dir: Path | None = None,
                       root: Path | None = None) -> LocalBundle:
    """What the running gateway would be given for `ir` (its ports, its mock choice)."""
    state = StateDir(state_dir)
    current = running_state(state)
    src = (root or Path(current.root)).resolve()
    secrets = prepare_local_secrets(state, ir, src)
    choice = choose_providers(ir, secrets, known={p: True for p in current.real_providers})
    return render_local(ir, state, Ports.of(current), choice)


def apply_local(ir: GatewayIR, *, root: Path | None = None, state_dir: Path | None = None,
                on_progress: Progress = lambda _m: None, lock_held: bool = False,
                validated: bool = False) -> ApplyResult:
    """Change what the running local gateway serves, without a restart.

    The new config is checked with `envoy --mode validate` first (unless the caller did:
    `validated`): if Envoy rejects it, the running gateway is untouched and EnvoyRejected says
    why. The IR is recorded only after Envoy accepted every swap. `lock_held`: the caller
    already holds the state lock (`StateDir.lock`), from its read of the gateway on.
    """
    state = StateDir(state_dir)
    lock = contextlib.nullcontext() if lock_held else state.lock()
    with lock:
        return _apply_locked(state, ir, root, on_progress, validated)


def _apply_locked(state: StateDir, ir: GatewayIR, root: Path | None, on_progress: Progress,
                  validated: bool) -> ApplyResult:
    started = time.monotonic()
    current = running_state(state)
    src = (root or Path(current.root)).resolve()
    secrets = prepare_local_secrets(state, ir, src)
    choice = choose_providers(ir, secrets, known={p: True for p in current.real_providers})
    ports = Ports.of(current)
    if needs_limit_services(ir) and not (ports.ratelimit and ports.cache_store):
        raise GatewayctlError(
            "this root now has global limits, which need Redis, the rate limit service and "
            "the cache store service that `up` starts",
            hint=restart_hint(src),
        )
    served_ir = state.read_ir()
    if (ports.ratelimit and served_ir is not None
            and access_of(served_ir) != access_of(ir)):
        raise GatewayctlError(
            "limits.redis's login or TLS changed, and the local Redis keeps those `up` "
            "started it with",
            hint=restart_hint(src),
        )
    bundle = render_local(ir, state, ports, choice)
    if not validated:
        took = validate_local(bundle, state)
        on_progress(f"envoy --mode validate: OK ({took:.2f}s)")
    config_dir = ConfigDir(state.config_dir)
    old = config_dir.read()
    if old is None:
        raise ProcessError(f"the published config in {state.config_dir} is missing",
                           hint=restart_hint(current.root))
    admin = AdminClient(current.admin_port)
    retired = _still_draining(current, admin)
    lds_changed = canonical(old["lds"]) != canonical(bundle.lds) or (
        canonical(old.get("rds", {})) != canonical(bundle.rds))
    if lds_changed:  # the old routes start draining with this apply
        retired = (*retired, (time.time(), tuple(sorted(cluster_names(old["cds"])))))
    target_cds, lingering = _keep_reachable(old["cds"], bundle.cds, retired)
    target = {"lds": bundle.lds, "cds": target_cds, "rds": bundle.rds}
    changed = lds_changed or canonical(old["cds"]) != canonical(target_cds)
    publisher = Publisher(config_dir, admin, state.envoy_log)
    swaps = 0
    # The rate limit service learns new limits before Envoy sends their descriptors.
    write_limit_config(state, ir)
    if changed:
        swaps = publisher.apply(old, target, on_progress)
    elif compare_served(summarize_bundle(target["lds"], target["cds"], target["rds"]),
                        admin.served()):
        # The files already hold the target, yet Envoy serves something else (they were
        # changed without a `..data` swap): have Envoy read them again.
        swaps = publisher.republish(target, on_progress)
        changed = True
    state.write_ir(ir)
    boot = state.envoy_dir / "bootstrap.yaml"
    restart = boot.is_file() and boot.read_text(encoding="utf-8") != bundle.bootstrap
    state.write_state(replace(
        current, root=str(src), config_version=bundle.version, applied_at=time.time(),
        applies=current.applies + changed, mocked_providers=choice.mocked,
        real_providers=choice.real, retired=retired, lingering=lingering))
    return ApplyResult(changed, str(old["lds"].get("version_info", "")), bundle.version, swaps,
                       time.monotonic() - started, lingering, restart)


def _still_draining(current: LocalState,
                    admin: AdminClient) -> tuple[tuple[float, tuple[str, ...]], ...]:
    """The retired route configs that connections may still use."""
    if not current.retired or admin.counters((DRAINING,)).get(DRAINING, 0) == 0:
        return ()
    horizon = time.time() - current.drain_time_s - 5
    return tuple(r for r in current.retired if r[0] >= horizon)


def _keep_reachable(old_cds: dict[str, Any], new_cds: dict[str, Any],
                    retired: tuple[tuple[float, tuple[str, ...]], ...],
                    ) -> tuple[dict[str, Any], tuple[str, ...]]:
    """new_cds plus the old clusters that draining route configs can still reach."""
    reachable = {name for _, names in retired for name in names}
    present = cluster_names(new_cds)
    keep = [c for c in old_cds.get("resources", [])
            if c.get("name") in reachable and c.get("name") not in present]
    if not keep:
        return new_cds, ()
    lingering = tuple(sorted(str(c["name"]) for c in keep))
    version = f"{new_cds.get('version_info', '')}+{len(keep)}draining"
    return {**new_cds, "version_info": version,
            "resources": [*new_cds.get("resources", []), *keep]}, lingering
