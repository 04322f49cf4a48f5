"""The resource layer of a plan: live Kubernetes objects vs what applying would leave behind.

The only user of deepdiff. Both sides are normalised first, so that nothing but a real change
shows: server-populated fields are stripped (`render.k8s.objects.strip_server_fields`),
bookkeeping annotations (source commit, merge request, pipeline, IR hash) are ignored, and the
gzipped IR record is compared by the hash of its decoded text, never by its compressed bytes.
Against a cluster, the "after" side is what server-side apply would store (a dry run's answer
or its client-side preview), so API-server defaults are on both sides and never show as drift.
Lists are compared item by item by their key (containers, volumes, env and ports by name,
mounts by path), and long text through `text_diff` (JSON and Lua data as data).

Also computes the fingerprint of a live state, which a saved plan carries. Pure functions.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

from gatewayctl.plan.model import Action, Change, Detail, sort_changes
from gatewayctl.plan.text_diff import text_details
from gatewayctl.render.k8s.objects import (
    KubeObject,
    identity,
    is_owned_by,
    ref,
    strip_server_fields,
)
from gatewayctl.render.k8s.packing import IR_RECORD_KEY, unpack

IR_RECORD_NOTE = "the compiled IR record; what it means is in the manifest changes"
BOOKKEEPING_ANNOTATIONS = (
    "gatewayctl.dev/source-commit",
    "gatewayctl.dev/source-ref",
    "gatewayctl.dev/source-merge-request",
    "gatewayctl.dev/source-pipeline",
    "gatewayctl.dev/ir-sha256",
)
_LONG_TEXT = 120
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _ir_record_hash(value: str) -> str:
    try:
        text = unpack(value)
    except ValueError:
        return "unreadable:" + hashlib.sha256(value.encode()).hexdigest()
    return "sha256:" + hashlib.sha256(text).hexdigest()


def normalize(obj: KubeObject) -> KubeObject:
    """A copy without server bookkeeping and gatewayctl's own bookkeeping annotations."""
    out = strip_server_fields(obj)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            for key in BOOKKEEPING_ANNOTATIONS:
                annotations.pop(key, None)
            if not annotations:
                meta.pop("annotations", None)
    binary = out.get("binaryData")
    if out.get("kind") == "ConfigMap" and isinstance(binary, dict):
        if IR_RECORD_KEY in binary:
            binary[IR_RECORD_KEY] = _ir_record_hash(str(binary[IR_RECORD_KEY]))
        for key, value in binary.items():
            if key.endswith(".json.gz") and isinstance(value, str):
                # A packed Envoy config: compare the JSON inside, not base64 of gzip bytes
                # (which also differ between zlib builds for the same content).
                binary[key] = _unpacked(value)
    return out


def _unpacked(value: str) -> str:
    try:
        return unpack(value).decode("utf-8")
    except ValueError:  # UnicodeDecodeError too
        return value


def display_path(path: Sequence[Any]) -> str:
    """`spec.template.spec.containers[0].image`, `data["lds.json"]`."""
    out = ""
    for part in path:
        if isinstance(part, (int, ItemKey)):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(str(part)):
            out += f".{part}" if out else str(part)
        else:
            out += f"[{json.dumps(str(part))}]"
    return out


def _short_hash(value: Any) -> Any:
    return value[:19] + "…" if isinstance(value, str) and len(value) > 20 else value


def _value_details(path: list[Any], before: Any, after: Any) -> list[Detail]:
    field = display_path(path)
    if len(path) == 2 and path[0] == "binaryData" and path[1] == IR_RECORD_KEY:
        return [Detail(field, _short_hash(before), _short_hash(after), IR_RECORD_NOTE)]
    long = (isinstance(before, str) and ("\n" in before or len(before) > _LONG_TEXT)) or (
        isinstance(after, str) and ("\n" in after or len(after) > _LONG_TEXT))
    if long and isinstance(before, str) and isinstance(after, str):
        return text_details(field, before, after)
    return [Detail(field, _keyed_back(before), _keyed_back(after))]


class ItemKey(str):
    """A list item's key (its `name`, a mount's path, a port) standing for its index."""

    __slots__ = ()


# Lists diffed item by item by a key, as server-side apply merges them: a new mount or
# volume reads as added, not as every later one shifting.
_ITEM_KEYS = {"volumeMounts": ("mountPath",), "ports": ("name", "containerPort", "port")}


def _by_key(field: str, items: list[Any]) -> str | None:
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    for key in _ITEM_KEYS.get(field, ("name",)):
        values = [i.get(key) for i in items]
        if all(v is not None for v in values) and len(set(map(str, values))) == len(values):
            return key
    return None


def keyed(value: Any, field: str = "") -> Any:
    """`value` with its keyed lists turned into maps from ItemKey to item."""
    if isinstance(value, dict):
        return {k: keyed(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        key = _by_key(field, value)
        if key is not None:
            return {ItemKey(str(i[key])): keyed(i) for i in value}
        return [keyed(v) for v in value]
    return value


def _keyed_back(value: Any) -> Any:
    if isinstance(value, dict) and value and all(isinstance(k, ItemKey) for k in value):
        return [_keyed_back(v) for v in value.values()]
    if isinstance(value, dict):
        return {k: _keyed_back(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_keyed_back(v) for v in value]
    return value


def field_details(before: KubeObject, after: KubeObject) -> tuple[Detail, ...]:
    """Every changed field of one object (both sides normalised), sorted by path."""
    from deepdiff import DeepDiff

    details: list[tuple[list[Any], list[Detail]]] = []
    # ConfigMap entries are compared per key by hand: deepdiff would run difflib on them.
    b_rest, a_rest = dict(before), dict(after)
    for section in ("data", "binaryData"):
        b_map = b_rest.pop(section, None) or {}
        a_map = a_rest.pop(section, None) or {}
        for key in sorted(set(b_map) | set(a_map)):
            if b_map.get(key) != a_map.get(key):
                path = [section, key]
                details.append((path, _value_details(path, b_map.get(key), a_map.get(key))))
    if b_rest != a_rest:
        tree: Any = DeepDiff(keyed(b_rest), keyed(a_rest), view="tree", verbose_level=2)
        for category, levels in tree.items():
            for level in levels:
                path = list(level.path(output_format="list"))
                added = category.endswith("_added")
                removed = category.endswith("_removed")
                details.append((path, _value_details(
                    path, None if added else level.t1, None if removed else level.t2)))
    details.sort(key=lambda pd: [str(p).zfill(8) if isinstance(p, int) else str(p)
                                 for p in pd[0]])
    return tuple(d for _, ds in details for d in ds)


def restart_warnings(kind: str, details: tuple[Detail, ...]) -> tuple[str, ...]:
    """A Deployment whose pod template changes rolls its pods: say so, and why."""
    if kind != "Deployment":
        return ()
    why = []
    for d in details:
        if not d.field.startswith("spec.template."):
            continue
        field = d.field.removeprefix("spec.template.").removeprefix("spec.")
        if "restart-checksum" in field:
            why.append("the bootstrap or the set of mounted Secrets changed")
        else:
            verb = "added" if d.before is None else "removed" if d.after is None else "changed"
            why.append(f"{field} {verb}")
    if not why:
        return ()
    shown = "; ".join(dict.fromkeys(why[:6])) + ("; ..." if len(why) > 6 else "")
    return (f"pods will restart (a rolling update) because the pod template changes: {shown}",)


def resource_name(obj: KubeObject) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta['namespace']}/{meta.get('name')}" if meta.get("namespace") \
        else str(meta.get("name"))


def diff_resources(
    live: Sequence[KubeObject],
    planned: Sequence[KubeObject],
    gateway: str,
    warnings: dict[str, tuple[str, ...]] | None = None,
) -> tuple[Change, ...]:
    """One change per planned object (create, update or no-op) and one delete per live object
    of this gateway that is no longer planned.

    `planned` is what each desired object would be once applied: a dry run's answer against a
    cluster, the rendered object itself elsewhere. Live objects without this gateway's
    ownership labels are never candidates for deletion. `warnings` are keyed by `ref(obj)`."""
    warnings = warnings or {}
    live_by_id = {identity(o): o for o in live}
    changes: list[Change] = []
    for obj in planned:
        after = normalize(obj)
        current = live_by_id.get(identity(obj))
        extra = warnings.get(ref(obj), ())
        kind, name = str(obj.get("kind")), resource_name(obj)
        if current is None:
            changes.append(Change("resource", kind, name, "create", (), None, after,
                                  warnings=extra))
            continue
        before = normalize(current)
        details = () if before == after else field_details(before, after)
        extra = (*extra, *restart_warnings(kind, details))
        action: Action = "update" if details else "no-op"
        changes.append(Change("resource", kind, name, action, details,
                              before if details else None, after if details else None,
                              warnings=extra))
    planned_ids = {identity(o) for o in planned}
    for obj in live:
        if identity(obj) not in planned_ids and is_owned_by(obj, gateway):
            changes.append(Change("resource", str(obj.get("kind")), resource_name(obj),
                                  "delete", (), normalize(obj), None))
    return sort_changes(changes)


# -- fingerprint ------------------------------------------------------------------------------

def _project(live: Any, shape: Any) -> Any:
    """The part of `live` that `shape` (a desired object) speaks about."""
    if isinstance(live, dict) and isinstance(shape, dict):
        return {k: _project(live[k], shape[k]) for k in shape if k in live}
    if isinstance(live, list) and isinstance(shape, list) and len(live) == len(shape):
        return [_project(x, y) for x, y in zip(live, shape, strict=True)]
    return live


def fingerprint(
    live: Sequence[KubeObject], desired: Sequence[KubeObject], ir_json: str | None = None,
    extra: str = "",
) -> str:
    """A hash of the live state as far as a plan depends on it.

    Which objects exist, and for each one gatewayctl would write, the values of the fields it
    sets: fields owned by others (the replica count the autoscaler sets, status) do not make
    a saved plan stale; an edit to anything gatewayctl manages does."""
    shapes = {identity(o): normalize(o) for o in desired}
    entries = []
    for obj in sorted(live, key=identity):
        key = identity(obj)
        shape = shapes.get(key)
        entries.append([list(key), None if shape is None else _project(normalize(obj), shape)])
    h = hashlib.sha256()
    h.update(json.dumps(entries, sort_keys=True, separators=(",", ":")).encode())
    h.update(b"\0" + (ir_json or "").encode() + b"\0" + extra.encode())
    return "sha256:" + h.hexdigest()
