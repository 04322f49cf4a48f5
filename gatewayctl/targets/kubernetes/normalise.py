"""What server-side apply would store, computed client-side: the plan of a read-only identity.

A server-side-apply dry run is authorised as the write it previews, so an identity that may
only get and list (a merge-request pipeline's) cannot ask the server. For the fields
gatewayctl owns, the result is predictable from the live object: apply merges the applied
configuration into it (maps by key, named lists item by item by their merge key, other lists
whole), removes the fields gatewayctl set last time and no longer sets (from the live object's
`managedFields`, unless another manager owns them too), and the API server then fills in its
documented defaults for what is new. Pure functions over object dicts.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from gatewayctl.render.k8s.objects import KubeObject

Path = tuple[str, ...]  # fieldsV1 segments: "f:<key>" or "k:{<merge key fields>}"

# Merge keys of the lists gatewayctl renders (the Kubernetes API's patchMergeKey / listMapKeys).
MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",), "initContainers": ("name",), "volumes": ("name",),
    "env": ("name",), "volumeMounts": ("mountPath",), "imagePullSecrets": ("name",),
}
_UNTRACKED_META = {"name", "namespace", "uid", "resourceVersion", "generation",
                   "creationTimestamp", "managedFields", "selfLink"}


FieldPath = tuple[str, ...]  # field names from the object's root, list items skipped


def learned_keys(obj: KubeObject | None) -> dict[FieldPath, tuple[str, ...]]:
    """The merge key of each list, as the server itself recorded it in `managedFields`
    (`k:{"name":...}` under `f:ports`): the server's schema, not a guess."""
    out: dict[FieldPath, tuple[str, ...]] = {}

    def walk(tree: dict[str, Any], where: FieldPath) -> None:
        for seg, sub in tree.items():
            if seg.startswith("f:"):
                walk(sub or {}, (*where, seg[2:]))
            elif seg.startswith("k:"):
                out[where] = tuple(json.loads(seg[2:]))
                walk(sub or {}, where)

    for entry in ((obj or {}).get("metadata") or {}).get("managedFields") or []:
        walk(entry.get("fieldsV1") or {}, ())
    return out


def _key_fields(where: FieldPath, items: list[Any],
                learned: dict[FieldPath, tuple[str, ...]]) -> tuple[str, ...] | None:
    """The merge key of the list at `where`, or None for an atomic list."""
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    key: tuple[str, ...]
    if where in learned:
        key = learned[where]
        return key if all(all(k in i or k == "protocol" for k in key) for i in items) \
            else None
    field = where[-1] if where else ""
    if field == "ports":
        key = ("containerPort",) if all("containerPort" in i for i in items) else ("port",)
        return (*key, "protocol") if any("protocol" in i for i in items) else key
    key = MERGE_KEYS.get(field, ("name",))
    return key if all(all(k in i for k in key) for i in items) else None


def _matches(item: Any, key: dict[str, Any]) -> bool:
    """An item matches a key when the key's fields agree; protocol defaults to TCP."""
    if not isinstance(item, dict):
        return False
    return all(item.get(k, "TCP" if k == "protocol" else None) == v for k, v in key.items())


def _merge(live: Any, applied: Any, where: FieldPath,
           learned: dict[FieldPath, tuple[str, ...]]) -> Any:
    if isinstance(applied, dict) and isinstance(live, dict):
        out = copy.deepcopy(live)
        for k, v in applied.items():
            out[k] = _merge(out.get(k), v, (*where, k), learned)
        return out
    if isinstance(applied, list) and isinstance(live, list):
        key = _key_fields(where, applied, learned)
        if key is not None and _key_fields(where, live, learned) == key:
            def key_of(item: dict[str, Any]) -> dict[str, Any]:
                return {k: item.get(k, "TCP" if k == "protocol" else None) for k in key}

            merged = []
            for item in applied:
                found = next((x for x in live if _matches(x, key_of(item))), None)
                merged.append(_merge(found, item, where, learned))
            merged += [copy.deepcopy(x) for x in live
                       if not any(_matches(x, key_of(a)) for a in applied)]
            return merged
    return copy.deepcopy(applied)


def _resolve(obj: Any, path: Path) -> tuple[list[Any], Any] | None:
    """(the chain of containers, the value) at `path`, or None when absent."""
    chain, node = [], obj
    for seg in path:
        chain.append(node)
        if seg.startswith("f:"):
            if not isinstance(node, dict) or seg[2:] not in node:
                return None
            node = node[seg[2:]]
        elif seg.startswith("k:"):
            key = json.loads(seg[2:])
            found = [i for i in node if _matches(i, key)] if isinstance(node, list) else []
            if not found:
                return None
            node = found[0]
        else:
            return None  # a value ("v:") or index ("i:") segment: not used by these kinds
    return chain, node


def owned_paths(obj: KubeObject, manager: str) -> tuple[set[Path], set[Path]]:
    """(leaf paths `manager` applied last time, leaf paths any other manager owns)."""
    mine: set[Path] = set()
    others: set[Path] = set()
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        paths = _leaves(entry.get("fieldsV1") or {})
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            mine |= paths
        else:
            others |= paths
    return mine, others


def _leaves(tree: dict[str, Any], prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for seg, sub in tree.items():
        if seg == ".":
            continue
        children = {k: v for k, v in (sub or {}).items() if k != "."}
        out |= _leaves(children, (*prefix, seg)) if children else {(*prefix, seg)}
    return out


def _delete(obj: Any, path: Path) -> None:
    """Remove the field at `path`, then the maps and list items it leaves empty."""
    found = _resolve(obj, path)
    if found is None:
        return
    chain, _ = found
    for depth in range(len(path) - 1, -1, -1):
        container, seg, last = chain[depth], path[depth], depth == len(path) - 1
        if seg.startswith("f:"):
            if not (last or container.get(seg[2:]) in ({}, [])):
                return
            container.pop(seg[2:], None)
        else:
            key = json.loads(seg[2:])
            item = next((i for i in container if _matches(i, key)), None)
            if item is None or not (last or set(item) <= set(key)):
                return
            container[:] = [i for i in container if not _matches(i, key)]


def preview_apply(live: KubeObject | None, applied: KubeObject,
                  manager: str = "gatewayctl") -> KubeObject:
    """What the server would store after `manager` applies `applied` over `live`."""
    if live is None:
        out = copy.deepcopy(applied)
    else:
        out = _merge(live, applied, (), learned_keys(live))
        mine, others = owned_paths(live, manager)
        # A list item's key fields go last, so that the item is found by them until then.
        def order(path: Path) -> tuple[bool, int]:
            parent = path[-2] if len(path) > 1 else ""
            is_key = parent.startswith("k:") and path[-1][2:] in json.loads(parent[2:])
            return (is_key, -len(path))

        for path in sorted(mine - others, key=order):
            if _resolve(applied, path) is None and not _untracked(path):
                _delete(out, path)
    apply_defaults(out)
    return out


def _untracked(path: Path) -> bool:
    return len(path) > 1 and path[0] == "f:metadata" and path[1][2:] in _UNTRACKED_META


# -- the API server's defaults for the kinds gatewayctl renders ------------------------------

def apply_defaults(obj: KubeObject) -> None:
    """Fill in, in place, the documented defaults of the API server for these kinds."""
    kind = obj.get("kind")
    if kind == "Deployment":
        _default_deployment(obj)
    elif kind == "Service":
        _default_service(obj)


def _default_deployment(obj: KubeObject) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    pod = spec.setdefault("template", {}).setdefault("spec", {})
    pod.setdefault("restartPolicy", "Always")
    pod.setdefault("terminationGracePeriodSeconds", 30)
    pod.setdefault("dnsPolicy", "ClusterFirst")
    pod.setdefault("securityContext", {})
    pod.setdefault("schedulerName", "default-scheduler")
    for container in [*(pod.get("containers") or []), *(pod.get("initContainers") or [])]:
        _default_container(container)
    for volume in pod.get("volumes") or []:
        for source in ("configMap", "secret"):
            if isinstance(volume.get(source), dict):
                volume[source].setdefault("defaultMode", 420)


def _default_container(container: dict[str, Any]) -> None:
    image = str(container.get("image", ""))
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    latest = tag in ("", "latest") and "@" not in image
    container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for name in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(name)
        if not isinstance(probe, dict):
            continue
        if isinstance(probe.get("httpGet"), dict):
            probe["httpGet"].setdefault("scheme", "HTTP")
        probe.setdefault("timeoutSeconds", 1)
        probe.setdefault("periodSeconds", 10)
        probe.setdefault("successThreshold", 1)
        probe.setdefault("failureThreshold", 3)


def _default_service(obj: KubeObject) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] != "ExternalName":
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        if "port" in port:
            port.setdefault("targetPort", port["port"])
