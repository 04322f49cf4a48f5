"""Computing a plan: a desired state against an observed one. Pure: two states in, a Plan out.

Reading the observed state is a target's job (`gatewayctl.targets`), and running read, plan and
apply in order is the orchestration's (`gatewayctl.orchestrate`); this module knows neither.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from gatewayctl.plan.manifest_diff import diff_gateway_ir
from gatewayctl.plan.model import Change, Desired, DesiredState, ObservedState, Plan, sort_changes
from gatewayctl.plan.resource_diff import diff_resources, resource_name
from gatewayctl.render.k8s.objects import KubeObject
from gatewayctl.render.k8s.provenance import Provenance


def provenance_pairs(provenance: Provenance | None) -> tuple[tuple[str, str], ...]:
    if provenance is None:
        return ()
    return tuple(sorted((k, str(v)) for k, v in dataclasses.asdict(provenance).items() if v))


def build_plan(desired: DesiredState, observed: ObservedState, target: str,
               where: str | None = None) -> Plan:
    manifest = diff_gateway_ir(observed.ir, desired.ir)
    notes: tuple[str, ...] = ()
    if observed.ir is None and observed.objects:
        notes = ("the live objects carry no gatewayctl IR record (deployed another way, or "
                 "by an older gatewayctl): manifest-level changes are shown as if nothing "
                 "were deployed",)
    resource = diff_resources(observed.objects, observed.planned, desired.ir.name,
                              dict(observed.object_warnings))
    files = [Change("resource", "File", path, "delete") for path in observed.files_to_delete]
    return Plan(
        gateway=desired.ir.name,
        namespace=desired.ir.namespace,
        target=target,
        fingerprint=observed.fingerprint,
        where=where,
        changes=sort_changes(list(manifest) + list(resource) + files),
        warnings=tuple(desired.warnings) + tuple(observed.warnings) + notes,
        provenance=provenance_pairs(desired.provenance),
        desired=Desired(ir=desired.ir, objects=tuple(desired.objects)),
    )


def desired_of(plan: Plan) -> DesiredState:
    """The desired state a saved plan carries (its IR and objects, as planned)."""
    assert plan.desired is not None
    return DesiredState(plan.desired.ir, plan.desired.objects,
                        Provenance(**dict(plan.provenance)))


def objects_to_apply(plan: Plan, objects: Sequence[KubeObject]) -> list[KubeObject]:
    """The desired objects whose resource change creates or updates them."""
    wanted = {(c.kind, c.name) for c in plan.pending("resource") if c.action != "delete"}
    return [o for o in objects if (o.get("kind"), resource_name(o)) in wanted]
