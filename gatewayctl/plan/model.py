"""The plan as a value: a flat, sorted list of changes, each with an action, before and after.

Two layers share one `Change` type: `manifest` changes speak the reviewers' language (routes,
prompts, policies, consumers, cost), `resource` changes name Kubernetes objects and their
fields. A `Plan` also records the target it was computed against (`--live`) and a fingerprint of
the state observed there, so that `apply plan.json` can refuse a plan the world has moved on
from. `DesiredState` (what the manifests render to) and `ObservedState` (what a target holds)
are the two inputs of a plan.

Pure data and its JSON form (`format_version`); no I/O, no diffing, no formatting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from gatewayctl.ir import GatewayIR, from_dict, to_dict
from gatewayctl.render.k8s.objects import KubeObject
from gatewayctl.render.k8s.provenance import Provenance

FORMAT_VERSION = "2.0"

Action = Literal["create", "update", "delete", "no-op"]
Layer = Literal["manifest", "resource"]
ACTIONS: tuple[Action, ...] = ("create", "update", "delete", "no-op")
LAYERS: tuple[Layer, ...] = ("manifest", "resource")

Json = Any  # a JSON value: None, bool, int, float, str, list, dict


class PlanFormatError(ValueError):
    """A saved plan that this gatewayctl cannot read."""


@dataclass(frozen=True)
class Detail:
    """One field of a change: before and after, a note ("loosened", "rollout step 2 of 4")
    and, for long text, a unified diff."""

    field: str
    before: Json = None
    after: Json = None
    note: str = ""
    diff: str = ""


@dataclass(frozen=True)
class Change:
    layer: Layer
    kind: str  # manifest: Gateway, Provider, Model, Route, Prompt, Policy, Consumer
    name: str  # manifest: the object's name; resource: namespace/name
    action: Action
    details: tuple[Detail, ...] = ()
    before: Json = None
    after: Json = None
    affects: tuple[str, ...] = ()  # the routes a change reaches (a policy, a prompt, a model)
    warnings: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class DesiredState:
    """What the manifests ask for: the IR and the resources a target should hold, rendered for
    that target (Kubernetes objects, or the local gateway's Envoy resources)."""

    ir: GatewayIR
    objects: tuple[KubeObject, ...]
    provenance: Provenance = field(default_factory=Provenance)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ObservedState:
    """What a target holds: the IR recorded there (None: nothing, or not readable as one), its
    resources, what each desired resource would become once applied there (`planned`: a
    server's dry-run answer, or the rendered resource itself), and a fingerprint of everything
    a plan depends on."""

    ir: GatewayIR | None
    objects: tuple[KubeObject, ...]
    fingerprint: str
    planned: tuple[KubeObject, ...] = ()
    warnings: tuple[str, ...] = ()
    object_warnings: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (ref, warnings)
    # dir: the files gatewayctl wrote there earlier that the desired bundle no longer has
    files_to_delete: tuple[str, ...] = ()


@dataclass(frozen=True)
class Desired:
    """What apply writes: the compiled IR and the rendered Kubernetes objects (a dir target
    renders its Envoy files from the same IR, deterministically)."""

    ir: GatewayIR
    objects: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Plan:
    gateway: str
    namespace: str
    target: str  # --live as given: "kubernetes", "dir:out", "git:HEAD~1", "local"
    fingerprint: str  # of the state observed on the target
    changes: tuple[Change, ...]
    warnings: tuple[str, ...] = ()
    provenance: tuple[tuple[str, str], ...] = ()  # commit, ref, merge request, pipeline
    desired: Desired | None = field(default=None, compare=False)
    format_version: str = FORMAT_VERSION
    # Where the target was (the Kubernetes API server), so that a saved plan is not applied
    # to another cluster that happens to be in the same state.
    where: str | None = None

    def layer(self, layer: Layer) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.layer == layer)

    def pending(self, layer: Layer | None = None) -> tuple[Change, ...]:
        """The changes that do something (every action but no-op)."""
        return tuple(c for c in self.changes
                     if c.action != "no-op" and (layer is None or c.layer == layer))

    @property
    def has_changes(self) -> bool:
        return bool(self.pending())

    def counts(self, layer: Layer) -> dict[Action, int]:
        out: dict[Action, int] = dict.fromkeys(ACTIONS, 0)
        for c in self.layer(layer):
            out[c.action] += 1
        return out


# -- ordering ---------------------------------------------------------------------------------

MANIFEST_KIND_ORDER = ("Gateway", "Provider", "Model", "Route", "Rollout", "Prompt", "Policy",
                       "Consumer")
RESOURCE_KIND_ORDER = ("Namespace", "ServiceAccount", "ConfigMap", "Deployment", "Service",
                       "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy",
                       "PodMonitor", "PrometheusRule")


def change_sort_key(change: Change) -> tuple[int, int, str, str, str]:
    order = MANIFEST_KIND_ORDER if change.layer == "manifest" else RESOURCE_KIND_ORDER
    rank = order.index(change.kind) if change.kind in order else len(order)
    return (LAYERS.index(change.layer), rank, change.kind, change.name,
            json.dumps([d.field for d in change.details]))


def sort_changes(changes: list[Change] | tuple[Change, ...]) -> tuple[Change, ...]:
    return tuple(sorted(changes, key=change_sort_key))


# -- JSON -------------------------------------------------------------------------------------

def _detail_json(d: Detail) -> dict[str, Any]:
    out: dict[str, Any] = {"field": d.field, "before": d.before, "after": d.after}
    if d.note:
        out["note"] = d.note
    if d.diff:
        out["diff"] = d.diff
    return out


def _change_json(c: Change) -> dict[str, Any]:
    out: dict[str, Any] = {
        "layer": c.layer, "kind": c.kind, "name": c.name, "action": c.action,
        "before": c.before, "after": c.after,
        "details": [_detail_json(d) for d in c.details],
    }
    if c.affects:
        out["affects"] = list(c.affects)
    if c.warnings:
        out["warnings"] = list(c.warnings)
    return out


def plan_to_dict(plan: Plan, *, include_desired: bool = False) -> dict[str, Any]:
    summary = {layer: dict(plan.counts(layer)) for layer in LAYERS}
    out: dict[str, Any] = {
        "format_version": plan.format_version,
        "gateway": plan.gateway,
        "namespace": plan.namespace,
        "target": {"spec": plan.target, "fingerprint": plan.fingerprint}
        | ({"where": plan.where} if plan.where is not None else {}),
        "provenance": dict(plan.provenance),
        "has_changes": plan.has_changes,
        "summary": summary,
        "changes": [_change_json(c) for c in plan.changes],
        "warnings": list(plan.warnings),
    }
    if include_desired and plan.desired is not None:
        out["desired"] = {
            "ir": to_dict(plan.desired.ir),
            "objects": list(plan.desired.objects),
        }
    return out


def plan_to_json(plan: Plan, *, include_desired: bool = False) -> str:
    return json.dumps(plan_to_dict(plan, include_desired=include_desired), indent=2,
                      sort_keys=True, ensure_ascii=False) + "\n"


def plan_from_json(text: str) -> Plan:
    """Read a saved plan; a wrong or newer format is a PlanFormatError saying which."""
    try:
        data = json.loads(text)
    except ValueError as err:
        raise PlanFormatError(f"not a JSON document ({err})") from None
    if not isinstance(data, dict) or "format_version" not in data:
        raise PlanFormatError("not a gatewayctl plan (no format_version)")
    version = str(data["format_version"])
    if version.split(".")[0] != FORMAT_VERSION.split(".")[0]:
        raise PlanFormatError(
            f"plan format {version} is not readable by this gatewayctl "
            f"(reads {FORMAT_VERSION.split('.')[0]}.x)")
    try:
        desired_data = data.get("desired")
        desired = None if desired_data is None else Desired(
            ir=from_dict(desired_data["ir"]),
            objects=tuple(desired_data["objects"]),
        )
        return Plan(
            gateway=data["gateway"],
            namespace=data["namespace"],
            target=data["target"]["spec"],
            fingerprint=data["target"]["fingerprint"],
            where=data["target"].get("where"),
            changes=tuple(_change_from(c) for c in data["changes"]),
            warnings=tuple(data.get("warnings", ())),
            provenance=tuple(sorted(data.get("provenance", {}).items())),
            desired=desired,
            format_version=version,
        )
    except (KeyError, TypeError, ValueError) as err:
        raise PlanFormatError(f"the plan is incomplete or damaged ({err!r})") from None


def _change_from(c: dict[str, Any]) -> Change:
    if c["layer"] not in LAYERS or c["action"] not in ACTIONS:
        raise ValueError(f"unknown layer or action in {c['kind']} {c['name']}")
    return Change(
        layer=c["layer"], kind=c["kind"], name=c["name"], action=c["action"],
        details=tuple(Detail(d["field"], d.get("before"), d.get("after"), d.get("note", ""),
                             d.get("diff", "")) for d in c.get("details", ())),
        before=c.get("before"), after=c.get("after"),
        affects=tuple(c.get("affects", ())), warnings=tuple(c.get("warnings", ())),
    )
