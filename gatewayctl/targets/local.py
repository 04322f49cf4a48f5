"""`--live local`: the local gateway of `gatewayctl up`, a real Envoy on this machine.

read: the IR the gateway recorded and what Envoy serves (`/config_dump`). lock: the state
directory's lock, the same one `up`, `down` and every apply take. apply: hand the IR to the
local gateway, which swaps it in without a restart.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gatewayctl.ir import GatewayIR, to_json
from gatewayctl.plan.model import DesiredState, ObservedState, Plan
from gatewayctl.plan.resource_diff import fingerprint
from gatewayctl.render.k8s.objects import KubeObject
from gatewayctl.render.k8s.provenance import Provenance
from gatewayctl.targets.base import ApplyOptions, ApplyReport, Say


class LocalTarget:
    writable = True

    def __init__(self, spec: str, state_dir: Path | None = None) -> None:
        self.spec = spec
        self.state_dir = state_dir

    def where(self) -> None:
        return None  # a spec of this kind names exactly one place

    def close(self) -> None:
        return None

    def render(self, ir: GatewayIR, provenance: Provenance) -> tuple[KubeObject, ...]:
        return ()

    def envoy_config(self, ir: GatewayIR) -> str:
        from gatewayctl.local.reload import render_for_running

        return render_for_running(ir, state_dir=self.state_dir).validate

    def read(self, desired: DesiredState) -> ObservedState:
        from gatewayctl.local.reload import read_local

        view = read_local(state_dir=self.state_dir)
        warnings = tuple(f"the local gateway drifted from its recorded configuration: {d}"
                         for d in view.drift)
        ir_json = to_json(view.ir) if view.ir else ""
        return ObservedState(view.ir, (), fingerprint([], [], ir_json, repr(view.served)), (),
                             warnings)

    @contextmanager
    def lock(self, gateway: str, namespace: str, timeout: float) -> Iterator[None]:
        from gatewayctl.local.state import StateDir

        with StateDir(self.state_dir).lock():
            yield

    def apply(self, plan: Plan, options: ApplyOptions, say: Say) -> ApplyReport:
        from gatewayctl.local.reload import apply_local

        assert plan.desired is not None
        lines: list[str] = []

        def progress(message: str) -> None:
            lines.append(message)
            say(message)

        result = apply_local(plan.desired.ir, state_dir=self.state_dir, on_progress=progress,
                             lock_held=True, validated=True)
        return ApplyReport(self.spec, tuple(lines), result.summary())
