"""The Target protocol: what every `--live` destination offers the orchestration.

A target is an edge adapter (kubernetes, local, dir:PATH, git:REF; one module each). It renders
the desired resources in its own form, reads what it holds, locks itself against a concurrent
apply, applies a plan, says where it is, and releases what it opened. Plans are computed and
formatted by `gatewayctl.plan`, which knows no target; the order of lock, read, freshness
check, confirmation and apply is `gatewayctl.orchestrate`'s, the same for every target.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from gatewayctl.errors import GatewayctlError, UsageError
from gatewayctl.ir import GatewayIR
from gatewayctl.plan.model import DesiredState, ObservedState, Plan
from gatewayctl.render.k8s.objects import KubeObject
from gatewayctl.render.k8s.provenance import Provenance

Say = Callable[[str], None]


@dataclass(frozen=True)
class ApplyOptions:
    force_conflicts: bool = False  # Kubernetes: take over fields another manager owns
    timeout: float = 300.0  # how long to wait for the lock holder, and for a rollout


@dataclass(frozen=True)
class ApplyReport:
    target: str
    lines: tuple[str, ...]  # one per thing done, in order
    summary: str


class Target(Protocol):
    spec: str  # as the user wrote it: "kubernetes", "dir:out", "git:HEAD~1", "local"
    writable: bool  # False: plan only (apply refuses)

    def where(self) -> str | None:
        """Where the target is when the same spec could name another place: the API server
        of a Kubernetes target (the kubeconfig and context decide it), else None."""
        ...

    def render(self, ir: GatewayIR, provenance: Provenance) -> tuple[KubeObject, ...]:
        """The resources `ir` asks this target to hold, in the target's own form."""
        ...

    def read(self, desired: DesiredState) -> ObservedState:
        """What the target holds now, and what each desired resource would become there."""
        ...

    def lock(self, gateway: str, namespace: str,
             timeout: float) -> AbstractContextManager[None]:
        """Hold the target's apply lock for the block (a plan reads without it)."""
        ...

    def envoy_config(self, ir: GatewayIR) -> str:
        """The static Envoy config (YAML) this target would run for `ir`, for
        `envoy --mode validate` before anything is written."""
        ...

    def envoy_env(self) -> dict[str, str] | None:
        """The environment that validation runs Envoy with (None: this process's): the local
        gateway's has the compiled module's search path."""
        ...

    def apply(self, plan: Plan, options: ApplyOptions, say: Say) -> ApplyReport:
        """Carry out the plan (the caller holds the lock and checked freshness)."""
        ...

    def close(self) -> None:
        ...


class ReadOnlyTarget(UsageError):
    def __init__(self, spec: str) -> None:
        super().__init__(f"{spec} is read-only: a plan can be computed against it, but "
                         "nothing can be applied to it",
                         hint="apply with --live kubernetes, --live local or --live dir:PATH")


class ApplyIncomplete(GatewayctlError):
    """Part of an apply was done, but a later step (prune, rollout) did not finish."""


def holder_identity(environ: dict[str, str] | None = None) -> str:
    """Who holds a lock: the CI job when there is one, else user@host and the process."""
    env = os.environ if environ is None else environ
    if env.get("CI_JOB_URL"):
        return env["CI_JOB_URL"]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def kubernetes_objects(ir: GatewayIR, provenance: Provenance) -> tuple[KubeObject, ...]:
    """The Kubernetes objects of `ir`, exactly as `gatewayctl render` writes them: the desired
    resources of every target that holds Kubernetes objects (kubernetes, dir:, git:)."""
    from gatewayctl.render.bundle import render_objects

    return tuple(render_objects(ir, provenance))


def default_envoy_config(ir: GatewayIR) -> str:
    """The static twin (`validate.yaml`) of the config `gatewayctl render` writes for `ir`."""
    from gatewayctl.render.envoy import EnvoyOptions, render_envoy

    text = render_envoy(ir, EnvoyOptions()).files()["validate.yaml"]
    return text.decode() if isinstance(text, bytes) else text


def resource_counts_summary(plan: Plan, deleted: int | None = None) -> str:
    counts = plan.counts("resource")
    gone = counts["delete"] if deleted is None else deleted
    return (f"Apply complete: {counts['create']} created, {counts['update']} changed, "
            f"{gone} deleted")
