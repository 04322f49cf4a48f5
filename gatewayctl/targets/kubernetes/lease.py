"""The apply lock: a coordination.k8s.io/v1 Lease per gateway, so two applies never interleave.

Decides from a Lease's fields whether it is free, expired or held; the HTTP calls go through
the `Requester` given by `kube.py`, so this module imports no Kubernetes client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from .errors import KubeConflict, KubeNotFound, LockHeldError
from .kinds import LEASE

_ATTEMPTS = 3


class Requester(Protocol):
    def __call__(
        self, method: str, path: str, *, body: Any = None, what: str,
        query: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Lease:
    name: str
    namespace: str
    holder: str
    resource_version: str
    acquired_at: str


def _micro(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def acquire(
    request: Requester, name: str, namespace: str, holder: str, ttl: float,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Lease:
    path = LEASE.object_path(namespace, name)
    what = f"lock lease {namespace}/{name}"
    for _ in range(_ATTEMPTS):
        t = now()
        spec: dict[str, Any] = {"holderIdentity": holder, "leaseDurationSeconds": max(1, int(ttl)),
                "acquireTime": _micro(t), "renewTime": _micro(t)}
        try:
            live = request("GET", path, what=what)
        except KubeNotFound:
            body = {"apiVersion": LEASE.api_version, "kind": LEASE.kind,
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {**spec, "leaseTransitions": 0}}
            try:
                created = request("POST", LEASE.collection_path(namespace), body=body, what=what)
            except KubeConflict:
                continue  # created by someone else meanwhile: look again
            return _lease(created, spec["acquireTime"])
        current = live.get("spec") or {}
        current_holder = current.get("holderIdentity") or ""
        renewed = _parse(current.get("renewTime") or current.get("acquireTime"))
        duration = int(current.get("leaseDurationSeconds") or 0)
        expires = renewed + timedelta(seconds=duration) if renewed else None
        if current_holder and current_holder != holder and expires and expires > t:
            raise LockHeldError(name, namespace, current_holder, current.get("acquireTime"),
                                _micro(expires))
        if current_holder == holder:
            spec["acquireTime"] = current.get("acquireTime") or spec["acquireTime"]
        transitions = int(current.get("leaseTransitions") or 0)
        live["spec"] = {**spec, "leaseTransitions":
                        transitions + int(current_holder not in ("", holder))}
        try:
            updated = request("PUT", path, body=live, what=what)
        except KubeConflict:
            continue  # changed under us: evaluate the new state
        return _lease(updated, spec["acquireTime"])
    raise KubeConflict(f"{what}: it kept changing while gatewayctl tried to take it",
                       hint="another apply may be starting; try again")


def release(request: Requester, lease: Lease) -> bool:
    """Give the lease up if still ours; False when someone else holds it by now."""
    path = LEASE.object_path(lease.namespace, lease.name)
    what = f"release lease {lease.namespace}/{lease.name}"
    try:
        live = request("GET", path, what=what)
    except KubeNotFound:
        return False
    if (live.get("spec") or {}).get("holderIdentity") != lease.holder:
        return False
    live["spec"] = {k: v for k, v in live["spec"].items()
                    if k not in ("holderIdentity", "acquireTime", "renewTime")}
    live["spec"]["leaseDurationSeconds"] = 1
    try:
        request("PUT", path, body=live, what=what)
    except (KubeConflict, KubeNotFound):
        return False
    return True


def _lease(obj: dict[str, Any], acquired_at: str) -> Lease:
    meta = obj["metadata"]
    return Lease(meta["name"], meta["namespace"], obj["spec"]["holderIdentity"],
                 meta["resourceVersion"], acquired_at)
