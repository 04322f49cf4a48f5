"""The fake cluster's state: objects, resourceVersions, field ownership, rollout simulation.

All methods are thread-safe (one re-entrant lock) and return deep copies; none knows HTTP.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from . import fields as fp
from .defaults import apply_defaults, validate
from .resources import RESOURCE_TYPES, ResourceType, find_type_by_kind
from .selectors import parse_selector
from .status import (
    APIError,
    already_exists,
    apply_conflicts,
    invalid,
    namespace_not_found,
    not_found,
    update_conflict,
)

Key = tuple[str, str, str]  # (qualified resource, namespace or "", name)
OwnerKey = tuple[str, str, str]  # (manager, operation, subresource)
RolloutMode = Literal["complete", "never", "deadline-exceeded"]

_NAMESPACE = next(rt for rt in RESOURCE_TYPES if rt.kind == "Namespace")


@dataclass
class RolloutSimulation:
    """How Deployments progress after a spec change."""

    delay: float = 0.0
    mode: RolloutMode = "complete"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _spec_part(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


class Store:
    def __init__(self, namespaces: tuple[str, ...] = ()) -> None:
        self.lock = threading.RLock()
        self.rollout = RolloutSimulation()
        self._objects: dict[Key, dict[str, Any]] = {}
        self._rollout_started: dict[Key, float] = {}
        self._rv = 1000
        self._next_ip = 10
        for ns in ("default", "kube-system", "kube-public", *namespaces):
            if (_NAMESPACE.qualified_resource, "", ns) not in self._objects:
                self.create(_NAMESPACE, None, {"metadata": {"name": ns}}, "kube-apiserver")

    # -- reads ---------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        with self.lock:
            key = self._key(rt, namespace, name)
            if key not in self._objects:
                raise not_found(rt, name)
            self._refresh_status(rt, key)
            return copy.deepcopy(self._objects[key])

    def list(
        self, rt: ResourceType, namespace: str | None, label_selector: str | None = None
    ) -> dict[str, Any]:
        match = parse_selector(label_selector)
        with self.lock:
            items = []
            for key in sorted(self._objects):
                if key[0] != rt.qualified_resource or (namespace and key[1] != namespace):
                    continue
                self._refresh_status(rt, key)
                obj = self._objects[key]
                if match(obj["metadata"].get("labels") or {}):
                    item = copy.deepcopy(obj)
                    # The real server leaves kind/apiVersion off list items.
                    item.pop("kind", None)
                    item.pop("apiVersion", None)
                    items.append(item)
            return {
                "kind": f"{rt.kind}List",
                "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(self._rv)},
                "items": items,
            }

    def get_or_none(
        self, rt: ResourceType, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        with self.lock:
            obj = self._objects.get(self._key(rt, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """Every stored object by qualified resource, sorted by namespace and name."""
        with self.lock:
            out: dict[str, list[dict[str, Any]]] = {}
            for key in sorted(self._objects):
                out.setdefault(key[0], []).append(copy.deepcopy(self._objects[key]))
            return out

    # -- writes --------------------------------------------------------------------------

    def create(
        self,
        rt: ResourceType,
        namespace: str | None,
        body: dict[str, Any],
        manager: str,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        with self.lock:
            obj = self._incoming(rt, namespace, body)
            name = obj["metadata"].get("name") or ""
            if not name and obj["metadata"].get("generateName"):
                name = obj["metadata"]["generateName"] + uuid.uuid4().hex[:5]
                obj["metadata"]["name"] = name
            self._check_namespace(rt, namespace)
            if name and self._key(rt, namespace, name) in self._objects:
                raise already_exists(rt, name)
            owned = self._update_ownership({}, None, obj, manager)
            return self._commit(rt, namespace, None, obj, owned, dry_run)

    def update(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        body: dict[str, Any],
        manager: str,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        with self.lock:
            obj = self._incoming(rt, namespace, body, url_name=name)
            old = self._existing(rt, namespace, name)
            rv = obj["metadata"].get("resourceVersion")
            if not rv:
                raise invalid(rt, name, [(
                    "FieldValueInvalid", "metadata.resourceVersion",
                    "Invalid value: 0x0: must be specified for an update")])
            if rv != old["metadata"]["resourceVersion"]:
                raise update_conflict(rt, name)
            obj["status"] = copy.deepcopy(old.get("status"))
            owned = self._update_ownership(self._owners(old), old, obj, manager)
            return self._commit(rt, namespace, old, obj, owned, dry_run)

    def merge_patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        patch: dict[str, Any],
        manager: str,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        with self.lock:
            old = self._existing(rt, namespace, name)
            rv = (patch.get("metadata") or {}).get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise update_conflict(rt, name)
            obj = _merge_patch(copy.deepcopy(old), patch)
            obj = self._incoming(rt, namespace, obj, url_name=name)
            obj["status"] = copy.deepcopy(old.get("status"))
            owned = self._update_ownership(self._owners(old), old, obj, manager)
            return self._commit(rt, namespace, old, obj, owned, dry_run)

    def apply(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        body: dict[str, Any],
        manager: str,
        force: bool = False,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        with self.lock:
            applied = self._incoming(rt, namespace, body, url_name=name)
            applied.pop("status", None)
            key = self._key(rt, namespace, name)
            old = self._objects.get(key)
            if old is None:
                self._check_namespace(rt, namespace)
            live = copy.deepcopy(old) if old else {}
            rv = applied["metadata"].pop("resourceVersion", None)
            if old and rv and rv != old["metadata"]["resourceVersion"]:
                raise update_conflict(rt, name)
            owned = self._owners(old) if old else {}
            wanted = fp.leaf_paths(applied)
            me: OwnerKey = (manager, "Apply", "")
            conflicts: list[tuple[str, fp.Path]] = []
            for owner, paths in sorted(owned.items()):
                if owner[0] == manager:
                    continue
                for path in sorted(wanted & paths):
                    if fp.get_at(live, path) != fp.get_at(applied, path):
                        conflicts.append((owner[0], path))
            if conflicts and not force:
                raise apply_conflicts(
                    [(m, fp.render_path(p)) for m, p in conflicts], rt.api_version)
            for owner_name, path in conflicts:
                for owner, paths in owned.items():
                    if owner[0] == owner_name:
                        paths.discard(path)
            dropped = owned.get(me, set()) - wanted
            others = set().union(*(p for o, p in owned.items() if o != me)) if owned else set()
            obj = fp.merge_applied(live, applied)
            fp.delete_paths(obj, dropped - others)
            owned[me] = wanted
            return self._commit(rt, namespace, old, obj, owned, dry_run)

    def delete(
        self, rt: ResourceType, namespace: str | None, name: str, dry_run: bool = False
    ) -> dict[str, Any]:
        with self.lock:
            key = self._key(rt, namespace, name)
            old = self._existing(rt, namespace, name)
            if not dry_run:
                del self._objects[key]
                self._rollout_started.pop(key, None)
                self._rv += 1
                if rt.kind == "Namespace":
                    for other in [k for k in self._objects if k[1] == name]:
                        del self._objects[other]
            details: dict[str, Any] = {"name": name, "kind": rt.plural,
                                       "uid": old["metadata"]["uid"]}
            if rt.group:
                details["group"] = rt.group
            return {"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Success", "details": details}

    # -- internals -----------------------------------------------------------------------

    def _key(self, rt: ResourceType, namespace: str | None, name: str) -> Key:
        return (rt.qualified_resource, namespace if rt.namespaced and namespace else "", name)

    def _existing(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        old = self._objects.get(self._key(rt, namespace, name))
        if old is None:
            raise not_found(rt, name)
        return copy.deepcopy(old)

    def _check_namespace(self, rt: ResourceType, namespace: str | None) -> None:
        if rt.namespaced and (_NAMESPACE.qualified_resource, "", namespace or "") \
                not in self._objects:
            raise namespace_not_found(namespace or "")

    def _incoming(
        self,
        rt: ResourceType,
        namespace: str | None,
        body: dict[str, Any],
        url_name: str | None = None,
    ) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise APIError(400, "the body of the request was in an unknown format", "BadRequest")
        obj = copy.deepcopy(body)
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if (api_version or kind) and find_type_by_kind(str(api_version), str(kind)) != rt:
            raise APIError(400, f"the API version in the data ({api_version}) does not match "
                                f"the expected API version ({rt.api_version})", "BadRequest")
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise APIError(400, "metadata must be an object", "BadRequest")
        if url_name is not None:
            if meta.get("name") and meta["name"] != url_name:
                raise APIError(400, f"the name of the object ({meta['name']}) does not match "
                                    f"the name on the URL ({url_name})", "BadRequest")
            meta["name"] = url_name
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise APIError(400, "the namespace of the provided object does not match the "
                                    "namespace sent on the request", "BadRequest")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        for server_field in ("uid", "creationTimestamp", "generation", "managedFields"):
            meta.pop(server_field, None)
        return obj

    @staticmethod
    def _owners(obj: dict[str, Any]) -> dict[OwnerKey, set[fp.Path]]:
        owned: dict[OwnerKey, set[fp.Path]] = {}
        for entry in obj["metadata"].get("managedFields") or []:
            key = (entry["manager"], entry["operation"], entry.get("subresource", ""))
            owned[key] = fp.from_fields_v1(entry.get("fieldsV1") or {})
        return owned

    @staticmethod
    def _update_ownership(
        owned: dict[OwnerKey, set[fp.Path]],
        old: dict[str, Any] | None,
        new: dict[str, Any],
        manager: str,
    ) -> dict[OwnerKey, set[fp.Path]]:
        """Non-apply writes take every field whose value they changed, without conflicts."""
        new_paths = fp.leaf_paths(new)
        old_paths = fp.leaf_paths(old) if old else set()
        changed = {p for p in new_paths
                   if old is None or fp.get_at(old, p) != fp.get_at(new, p)}
        gone = old_paths - new_paths
        result = {k: (v - changed - gone) for k, v in owned.items()}
        me: OwnerKey = (manager, "Update", "")
        result[me] = (result.get(me, set()) | changed) - gone
        return result

    def _commit(
        self,
        rt: ResourceType,
        namespace: str | None,
        old: dict[str, Any] | None,
        obj: dict[str, Any],
        owned: dict[OwnerKey, set[fp.Path]],
        dry_run: bool,
    ) -> dict[str, Any]:
        apply_defaults(rt, obj, old, self._allocate_ip if not dry_run else self._peek_ip)
        name = obj["metadata"].get("name") or ""
        causes = validate(rt, obj)
        if causes:
            raise invalid(rt, name, causes)
        meta = obj["metadata"]
        previous_fields = {
            (e["manager"], e["operation"], e.get("subresource", "")): e
            for e in ((old or {}).get("metadata", {}).get("managedFields") or [])
        }
        entries = []
        for owner in sorted(owned):
            paths = owned[owner]
            if not paths:
                continue
            tree = fp.to_fields_v1(paths)
            before = previous_fields.get(owner)
            entry: dict[str, Any] = {
                "manager": owner[0], "operation": owner[1], "apiVersion": rt.api_version,
                "time": before["time"] if before and before["fieldsV1"] == tree else _now(),
                "fieldsType": "FieldsV1", "fieldsV1": tree,
            }
            if owner[2]:
                entry["subresource"] = owner[2]
            entries.append(entry)
        meta["managedFields"] = entries
        if old is not None:
            for f in ("uid", "creationTimestamp", "resourceVersion"):
                meta[f] = old["metadata"][f]
            if rt.has_generation:
                changed_spec = _spec_part(old) != _spec_part(obj)
                meta["generation"] = old["metadata"]["generation"] + int(changed_spec)
            if obj == old:
                return copy.deepcopy(old)  # a no-op write stores nothing
        else:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = _now()
            if rt.has_generation:
                meta["generation"] = 1
            if rt.kind == "Deployment":
                obj["status"] = {}
        if dry_run:
            if old is None:
                meta.pop("resourceVersion", None)
            return copy.deepcopy(obj)
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        key = self._key(rt, namespace, name)
        self._objects[key] = obj
        if rt.kind == "Deployment" and (
                old is None or meta["generation"] != old["metadata"]["generation"]):
            self._rollout_started[key] = time.monotonic()
        return copy.deepcopy(obj)

    def _allocate_ip(self) -> str:
        self._next_ip += 1
        return self._peek_ip()

    def _peek_ip(self) -> str:
        return f"10.96.{self._next_ip // 250}.{self._next_ip % 250 + 1}"

    def _refresh_status(self, rt: ResourceType, key: Key) -> None:
        if rt.kind != "Deployment" or key not in self._rollout_started:
            return
        obj = self._objects[key]
        status = _deployment_status(
            obj, time.monotonic() - self._rollout_started[key], self.rollout)
        if status != obj.get("status"):
            obj["status"] = status
            self._rv += 1
            obj["metadata"]["resourceVersion"] = str(self._rv)
            entries = [e for e in obj["metadata"]["managedFields"]
                       if e.get("subresource") != "status"]
            entries.append({
                "manager": "kube-controller-manager", "operation": "Update",
                "apiVersion": rt.api_version, "time": _now(), "fieldsType": "FieldsV1",
                "fieldsV1": fp.to_fields_v1({("f:status", "f:" + k) for k in status}),
                "subresource": "status",
            })
            obj["metadata"]["managedFields"] = entries


def _deployment_status(
    obj: dict[str, Any], elapsed: float, sim: RolloutSimulation
) -> dict[str, Any]:
    spec = obj["spec"]
    replicas = int(spec.get("replicas", 1))
    generation = obj["metadata"]["generation"]
    template_hash = hashlib.sha256(
        json.dumps(spec.get("template"), sort_keys=True).encode()).hexdigest()[:10]
    rs_name = f'{obj["metadata"]["name"]}-{template_hash}'
    previous = obj.get("status") or {}
    if sim.mode == "complete" and elapsed >= sim.delay:
        return {
            "observedGeneration": generation,
            "replicas": replicas, "updatedReplicas": replicas,
            "readyReplicas": replicas, "availableReplicas": replicas,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                 "message": "Deployment has minimum availability."},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                 "message": f'ReplicaSet "{rs_name}" has successfully progressed.'},
            ],
        }
    available = int(previous.get("availableReplicas", 0))
    progressing: dict[str, Any] = {
        "type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
        "message": f'ReplicaSet "{rs_name}" is progressing.'}
    if sim.mode == "deadline-exceeded" and elapsed >= sim.delay:
        progressing = {
            "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
            "message": f'ReplicaSet "{rs_name}" has timed out progressing.'}
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "replicas": replicas, "updatedReplicas": 0,
        "readyReplicas": available, "availableReplicas": available,
        "unavailableReplicas": replicas - available,
        "conditions": [
            {"type": "Available", "status": "True" if available else "False",
             "reason": "MinimumReplicasAvailable" if available else
             "MinimumReplicasUnavailable",
             "message": "Deployment has minimum availability." if available else
             "Deployment does not have minimum availability."},
            progressing,
        ],
    }
    return status


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _merge_patch(target.get(key), value)
    return target
