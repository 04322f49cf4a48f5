"""Computing a plan: the desired state (compiled and rendered) against a live state.

`build_plan` is pure (two states in, a Plan out); `compute_plan` adds the one read of the live
source. The desired Kubernetes objects are rendered with the same Envoy options as
`gatewayctl render`, so a plan against a rendered bundle compares like with like.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gatewayctl.ir import GatewayIR
from gatewayctl.plan.manifest_diff import diff_gateway_ir
from gatewayctl.plan.model import Change, Desired, Plan, sort_changes
from gatewayctl.plan.resource_diff import diff_resources
from gatewayctl.plan.sources import LiveSource, LiveState, LocalSource

KubeObject = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class DesiredState:
    ir: GatewayIR
    objects: list[KubeObject]
    source: Any  # gatewayctl.render.k8s.SourceInfo
    warnings: tuple[str, ...] = ()


def load_desired_ir(root: Path, namespace: str | None = None) -> tuple[GatewayIR, tuple[str, ...]]:
    """Compile the root; `namespace` (from --namespace) overrides the Gateway's namespace."""
    from gatewayctl.pipeline import compile_root

    compiled = compile_root(root)
    ir = compiled.ir
    if namespace and namespace != ir.namespace:
        ir = dataclasses.replace(ir, namespace=namespace)
    return ir, tuple(f"{d.resource}: {d.message()}" if d.resource else d.message()
                     for d in compiled.warnings)


def render_objects(ir: GatewayIR, source: Any = None) -> list[KubeObject]:
    """The gateway's Kubernetes objects, rendered as `gatewayctl render` renders them."""
    from gatewayctl.render.envoy import EnvoyOptions, render_envoy
    from gatewayctl.render.k8s import render_kubernetes

    return render_kubernetes(ir, render_envoy(ir, EnvoyOptions()), source)


def desired_state(ir: GatewayIR, live: LiveSource, source: Any = None,
                  warnings: tuple[str, ...] = ()) -> DesiredState:
    """Render what `live` needs: the local gateway renders its own config from the IR."""
    from gatewayctl.render.k8s import SourceInfo

    source = source if source is not None else SourceInfo.from_environment()
    objects = [] if isinstance(live, LocalSource) else render_objects(ir, source)
    return DesiredState(ir, objects, source, warnings)


def source_pairs(source: Any) -> tuple[tuple[str, str], ...]:
    if source is None:
        return ()
    return tuple(sorted((k, str(v)) for k, v in dataclasses.asdict(source).items() if v))


def build_plan(desired: DesiredState, live: LiveState, live_spec: str,
               target: str | None = None) -> Plan:
    manifest = diff_gateway_ir(live.ir, desired.ir)
    notes: tuple[str, ...] = ()
    if live.ir is None and live.objects:
        notes = ("the live objects carry no gatewayctl IR record (deployed another way, or "
                 "by an older gatewayctl): manifest-level changes are shown as if nothing "
                 "were deployed",)
    resource = diff_resources(live.objects, live.planned, desired.ir.name, live.object_warnings)
    files = [Change("resource", "File", path, "delete") for path in live.files_to_delete]
    return Plan(
        gateway=desired.ir.name,
        namespace=desired.ir.namespace,
        live=live_spec,
        live_fingerprint=live.fingerprint,
        live_target=target,
        changes=sort_changes(list(manifest) + list(resource) + files),
        warnings=tuple(desired.warnings) + tuple(live.warnings) + notes,
        source=source_pairs(desired.source),
        desired=Desired(ir=desired.ir, objects=tuple(desired.objects)),
    )


def compute_plan(desired: DesiredState, live: LiveSource) -> Plan:
    state = live.read(desired.ir.name, desired.ir.namespace, desired.objects, desired.ir)
    return build_plan(desired, state, live.spec, live.target())


def objects_to_apply(plan: Plan, objects: Sequence[KubeObject]) -> list[KubeObject]:
    """The desired objects whose resource change creates or updates them."""
    from gatewayctl.plan.resource_diff import resource_name

    wanted = {(c.kind, c.name) for c in plan.pending("resource") if c.action != "delete"}
    return [o for o in objects if (o.get("kind"), resource_name(o)) in wanted]
