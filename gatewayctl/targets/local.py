"""`--live local`: the local gateway of `gatewayctl up`, a real Envoy on this machine.

Its resources are Envoy's: one `Listener` and one `Cluster` object per LDS/CDS resource, and a
`Served` object that says what Envoy reports it serves (the versions it accepted, each route's
weighted clusters, the cluster names). The desired side renders the IR with the running
gateway's ports and mock choice; the observed side is the LDS/CDS last given to Envoy and what
its admin API reports. So a hand edit of the served config, a rejected update or a render
change all show as resource changes, and apply corrects them.

read: the recorded IR, the published LDS/CDS and `/config_dump`. lock: the state directory's
lock, the one `up`, `down` and every apply take. apply: hand the IR to the local gateway, which
swaps it in without a restart.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gatewayctl.ir import GatewayIR, to_json
from gatewayctl.plan.model import DesiredState, ObservedState, Plan
from gatewayctl.plan.resource_diff import fingerprint
from gatewayctl.render.k8s.objects import KubeObject, ownership_labels
from gatewayctl.render.k8s.provenance import Provenance
from gatewayctl.targets.base import ApplyOptions, ApplyReport, Say

API_VERSION = "local.gatewayctl.dev/v1"


def _object(kind: str, name: str, gateway: str, spec: Any) -> KubeObject:
    return {"apiVersion": API_VERSION, "kind": kind,
            "metadata": {"name": name, "labels": ownership_labels(gateway)}, "spec": spec}


def envoy_objects(docs: Mapping[str, Mapping[str, Any]], gateway: str,
                  skip_clusters: tuple[str, ...] = ()) -> list[KubeObject]:
    """LDS/RDS/CDS DiscoveryResponses as one object per listener, route table and cluster."""
    out = []
    for kind, key in (("Listener", "lds"), ("RouteConfiguration", "rds"), ("Cluster", "cds")):
        for resource in docs.get(key, {}).get("resources", []):
            name = str(resource.get("name", ""))
            if kind == "Cluster" and name in skip_clusters:
                continue
            out.append(_object(kind, name, gateway, resource))
    return out


def served_object(served: Any, gateway: str) -> KubeObject:
    """What Envoy reports it serves (a `ServedConfig`), as one object."""
    return _object("Served", "envoy", gateway, {
        "lds_version": served.lds_version, "cds_version": served.cds_version,
        "routes": [{"name": r.name, "clusters": [{"name": c, "weight": w}
                                                  for c, w in r.clusters]}
                   for r in served.routes],
        "clusters": list(served.clusters)})


class LocalTarget:
    writable = True

    def __init__(self, spec: str, state_dir: Path | None = None,
                 root: Path | None = None) -> None:
        self.spec = spec
        self.state_dir = state_dir
        self.root = root

    def where(self) -> None:
        return None  # a spec of this kind names exactly one place

    def close(self) -> None:
        return None

    def _bundle(self, ir: GatewayIR) -> Any:
        from gatewayctl.local.reload import render_for_running

        return render_for_running(ir, state_dir=self.state_dir, root=self._root())

    def _root(self) -> Path | None:
        return self.root if self.root is not None and self.root.is_dir() else None

    def render(self, ir: GatewayIR, provenance: Provenance) -> tuple[KubeObject, ...]:
        from gatewayctl.local.admin import summarize_bundle

        bundle = self._bundle(ir)
        return (*envoy_objects(bundle.docs, ir.name),
                served_object(summarize_bundle(bundle.lds, bundle.cds, bundle.rds), ir.name))

    def envoy_config(self, ir: GatewayIR) -> str:
        return str(self._bundle(ir).validate)

    def envoy_env(self) -> dict[str, str]:
        from gatewayctl.local.module import envoy_env
        from gatewayctl.local.state import StateDir

        return envoy_env(StateDir(self.state_dir).module_search_path)

    def read(self, desired: DesiredState) -> ObservedState:
        from gatewayctl.local.reload import read_local

        view = read_local(state_dir=self.state_dir)
        gateway = desired.ir.name
        objects: list[KubeObject] = []
        if view.published is not None:
            objects = envoy_objects(view.published, gateway, view.lingering)
        if view.served.routes or view.served.clusters:
            objects.append(served_object(view.served, gateway))
        ir_json = to_json(view.ir) if view.ir else ""
        return ObservedState(view.ir, tuple(objects),
                             fingerprint(objects, desired.objects, ir_json),
                             tuple(desired.objects))

    @contextmanager
    def lock(self, gateway: str, namespace: str, timeout: float) -> Iterator[None]:
        from gatewayctl.local.state import StateDir

        with StateDir(self.state_dir).lock(timeout=timeout):
            yield

    def apply(self, plan: Plan, options: ApplyOptions, say: Say) -> ApplyReport:
        from gatewayctl.local.reload import apply_local

        assert plan.desired is not None
        lines: list[str] = []

        def progress(message: str) -> None:
            lines.append(message)
            say(message)

        result = apply_local(plan.desired.ir, root=self._root(), state_dir=self.state_dir,
                             on_progress=progress, lock_held=True, validated=True)
        return ApplyReport(self.spec, tuple(lines), result.summary())
