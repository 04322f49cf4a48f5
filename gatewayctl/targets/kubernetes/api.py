"""The cluster operations gatewayctl needs, over one `Transport`: read, apply, prune, lock, wait.

Works on plain object dicts with server-side apply (field manager `gatewayctl`). Every failure
reaches it already typed (`errors.py`); deciding *what* to apply is the target's job
(`target.py`), and HTTP is the transport's (`transport.py`, the only `kubernetes` importer).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from gatewayctl.render.k8s.objects import (
    KubeObject,
    identity,
    is_owned_by,
    ownership_selector,
    ref,
)

from . import lease as lease_mod
from .errors import (
    KubeApplyError,
    KubeError,
    KubeNotFound,
    RolloutFailedError,
    RolloutTimeoutError,
)
from .kinds import KINDS, PRUNABLE_KINDS, kind_info, sort_for_apply
from .lease import Lease
from .options import KubeOptions
from .transport import APPLY_CONTENT_TYPE, Transport

Action = Literal["created", "configured", "unchanged", "pruned"]


@dataclass(frozen=True)
class Progress:
    """One step of a long operation, for the CLI to print as it happens."""

    action: str
    ref: str
    index: int = 0
    total: int = 0
    detail: str = ""


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class AppliedObject:
    ref: str
    action: Action
    object: KubeObject


@dataclass(frozen=True)
class ApplyResult:
    applied: tuple[AppliedObject, ...] = field(default_factory=tuple)

    @property
    def changed(self) -> bool:
        return any(a.action != "unchanged" for a in self.applied)


class KubeClient:
    """gatewayctl's operations on one cluster; `transport` does the HTTP."""

    def __init__(self, options: KubeOptions | None = None,
                 transport: Transport | None = None) -> None:
        self.transport = transport or Transport(options)
        self.namespace = self.transport.namespace
        self.server = self.transport.server

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, *, what: str,
                query: list[tuple[str, str]] | None = None, body: Any = None,
                content_type: str = "application/json",
                idempotent: bool | None = None) -> dict[str, Any]:
        return self.transport.request(method, path, what=what, query=query, body=body,
                                      content_type=content_type, idempotent=idempotent)

    # -- reads ---------------------------------------------------------------------------

    def read_managed(self, gateway_name: str, namespace: str | None = None) -> list[KubeObject]:
        """Every object of the managed kinds carrying this gateway's ownership labels."""
        namespace = namespace or self.namespace
        selector = ownership_selector(gateway_name)
        found: list[KubeObject] = []
        for info in PRUNABLE_KINDS:
            try:
                listed = self.request(
                    "GET", info.collection_path(namespace),
                    query=[("labelSelector", selector)],
                    what=f"list {info.plural} in {namespace}")
            except KubeNotFound:
                if info.api_version.startswith("monitoring.coreos.com/"):
                    continue  # the Prometheus Operator's CRDs are not installed
                raise
            for item in listed.get("items") or []:
                # List items come without apiVersion/kind.
                found.append({"apiVersion": info.api_version, "kind": info.kind, **item})
        return sort_for_apply(found)

    # -- server-side apply ---------------------------------------------------------------

    def _apply_one(
        self, obj: KubeObject, field_manager: str, force: bool, dry_run: bool
    ) -> tuple[int, KubeObject]:
        info = kind_info(obj)
        if info.kind == "Secret":
            raise ValueError("gatewayctl references Secrets and never applies them")
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or (self.namespace if info.namespaced else None)
        body = {**obj, "metadata": {**meta, **({"namespace": namespace} if namespace else {})}}
        query = [("fieldManager", field_manager)]
        if force:
            query.append(("force", "true"))
        if dry_run:
            query.append(("dryRun", "All"))
        verb = "dry-run apply" if dry_run else "apply"
        return self.transport.request_with_status(
            "PATCH", info.object_path(namespace, meta["name"]), query=query, body=body,
            content_type=APPLY_CONTENT_TYPE, what=f"{verb} {ref(body)}")

    def dry_run_apply(
        self, objects: list[KubeObject], field_manager: str = "gatewayctl", force: bool = False
    ) -> list[KubeObject]:
        """What the server would store for each object (defaults filled in), in input order."""
        return [self._apply_one(o, field_manager, force, dry_run=True)[1] for o in objects]

    def apply_objects(
        self,
        objects: list[KubeObject],
        field_manager: str = "gatewayctl",
        force_conflicts: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> ApplyResult:
        """Dry-run the whole set, then apply it in dependency order.

        A failure in the dry-run applies nothing and raises the typed KubeError; a failure
        part-way raises KubeApplyError naming what was applied and what was not."""
        ordered = sort_for_apply(objects)
        total = len(ordered)
        new_namespaces = {identity(o)[3] for o in ordered if o.get("kind") == "Namespace"}
        previews: dict[tuple[str, str, str, str], tuple[int, KubeObject]] = {}
        for i, obj in enumerate(ordered, 1):
            try:
                previews[identity(obj)] = self._apply_one(
                    obj, field_manager, force_conflicts, dry_run=True)
            except KubeNotFound as e:
                # Objects in a namespace this same apply creates cannot be dry-run yet.
                if e.kind == "namespaces" and e.name in new_namespaces:
                    continue
                raise
            if on_progress:
                on_progress(Progress("validated", ref(obj), i, total))
        applied: list[AppliedObject] = []
        for i, obj in enumerate(ordered, 1):
            try:
                code, stored = self._apply_one(obj, field_manager, force_conflicts, False)
            except KubeError as e:
                raise KubeApplyError(
                    ref(obj), e, tuple(a.ref for a in applied),
                    tuple(ref(o) for o in ordered[i - 1:])) from None
            preview = previews.get(identity(obj))
            before = ((preview[1] if preview else {}).get("metadata") or {}).get(
                "resourceVersion")
            after = (stored.get("metadata") or {}).get("resourceVersion")
            action: Action = "created" if code == 201 else (
                "unchanged" if before and before == after else "configured")
            applied.append(AppliedObject(ref(obj), action, stored))
            if on_progress:
                on_progress(Progress(action, ref(obj), i, total))
        return ApplyResult(tuple(applied))

    # -- prune ---------------------------------------------------------------------------

    def prune(
        self,
        desired: list[KubeObject],
        gateway_name: str,
        namespace: str | None = None,
        dry_run: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> list[str]:
        """Delete this gateway's objects that are no longer desired; returns their refs.

        Only objects carrying both ownership labels with this gateway's name are candidates;
        Namespaces and Secrets never are."""
        namespace = namespace or self.namespace
        wanted = {identity(_with_namespace(o, namespace)) for o in desired}
        live = self.read_managed(gateway_name, namespace)
        doomed = [o for o in live
                  if identity(o) not in wanted and is_owned_by(o, gateway_name)]
        pruned: list[str] = []
        query = [("propagationPolicy", "Background")] + ([("dryRun", "All")] if dry_run else [])
        for i, obj in enumerate(reversed(doomed), 1):
            info, meta = kind_info(obj), obj["metadata"]
            try:
                self.request("DELETE", info.object_path(meta["namespace"], meta["name"]),
                             query=query, what=f"prune {ref(obj)}")
            except KubeNotFound:
                continue  # already gone
            pruned.append(ref(obj))
            if on_progress:
                on_progress(Progress("pruned", ref(obj), i, len(doomed)))
        return pruned

    # -- lock ----------------------------------------------------------------------------

    def _lease_request(
        self, method: str, path: str, *, body: Any = None, what: str,
        query: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any]:
        # Lease writes carry a resourceVersion precondition, so only reads are retried.
        return self.request(method, path, body=body, what=what, query=query,
                            idempotent=method == "GET")

    def acquire_lease(
        self, name: str, namespace: str | None, holder: str, ttl: float
    ) -> Lease:
        """Take the lock, or raise LockHeldError naming the current holder."""
        return lease_mod.acquire(self._lease_request, name, namespace or self.namespace,
                                 holder, ttl)

    def release_lease(self, lease: Lease) -> bool:
        return lease_mod.release(self._lease_request, lease)

    # -- rollout -------------------------------------------------------------------------

    def wait_for_rollout(
        self,
        name: str,
        namespace: str | None = None,
        timeout: float = 300.0,
        on_progress: ProgressCallback | None = None,
        poll_interval: float = 1.0,
    ) -> KubeObject:
        """Poll the Deployment until its new pods are all updated and available."""
        namespace = namespace or self.namespace
        deployments = next(k for k in KINDS if k.kind == "Deployment")
        deadline = time.monotonic() + timeout
        last_message = "not observed yet"
        while True:
            obj = self.request("GET", deployments.object_path(namespace, name),
                               what=f"read deployment {namespace}/{name}")
            done, message = rollout_state(obj)
            if message != last_message and on_progress:
                on_progress(Progress("rollout", f"Deployment {namespace}/{name}",
                                     detail=message))
            last_message = message
            if done:
                return obj
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RolloutTimeoutError(name, namespace, timeout, last_message)
            time.sleep(min(poll_interval, remaining))


def _with_namespace(obj: KubeObject, namespace: str) -> KubeObject:
    meta = obj.get("metadata") or {}
    if meta.get("namespace") or not kind_info(obj).namespaced:
        return obj
    return {**obj, "metadata": {**meta, "namespace": namespace}}


def rollout_state(obj: KubeObject) -> tuple[bool, str]:
    """(finished, message) for a Deployment, with `kubectl rollout status`'s rules.

    Raises RolloutFailedError when the Deployment exceeded its progress deadline."""
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    name = meta["name"]
    if int(status.get("observedGeneration", 0)) < int(meta.get("generation", 0)):
        return False, "waiting for the deployment spec update to be observed"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and \
                condition.get("reason") == "ProgressDeadlineExceeded":
            raise RolloutFailedError(name, meta.get("namespace", ""),
                                     condition.get("message", "progress deadline exceeded"))
    replicas = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas", 0))
    current = int(status.get("replicas", 0))
    available = int(status.get("availableReplicas", 0))
    if updated < replicas:
        return False, f"{updated} of {replicas} new replicas have been updated"
    if current > updated:
        return False, f"{current - updated} old replicas are pending termination"
    if available < updated:
        return False, f"{available} of {updated} updated replicas are available"
    return True, f"successfully rolled out ({available} of {replicas} replicas available)"
