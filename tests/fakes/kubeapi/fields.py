"""Field sets for server-side apply: which leaf fields of an object a manager owns.

A path is a tuple of fieldsV1 segments (`f:<key>` for a map key, `k:{"name":...}` for an
item of a list keyed by `name`). Lists whose items are not all named maps are atomic: the
whole list is one leaf, as with the real server's `atomic` lists.
"""

from __future__ import annotations

import copy
import json
from typing import Any

Path = tuple[str, ...]

# Fields never tracked in managedFields (identity and server-owned metadata).
_UNTRACKED_TOP = {"apiVersion", "kind", "status"}
_UNTRACKED_META = {
    "name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
    "managedFields", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds",
}


def _is_keyed_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(i, dict) and isinstance(i.get("name"), str) for i in value)
    )


def _key_segment(name: str) -> str:
    return "k:" + json.dumps({"name": name}, separators=(",", ":"))


def leaf_paths(obj: dict[str, Any]) -> set[Path]:
    """Every tracked leaf path of an object."""
    out: set[Path] = set()
    for key, value in obj.items():
        if key in _UNTRACKED_TOP:
            continue
        if key == "metadata" and isinstance(value, dict):
            meta = {k: v for k, v in value.items() if k not in _UNTRACKED_META}
            _collect(meta, ("f:metadata",), out)
        else:
            _collect_value(value, ("f:" + key,), out)
    return out


def _collect(mapping: dict[str, Any], prefix: Path, out: set[Path]) -> None:
    for key, value in mapping.items():
        _collect_value(value, (*prefix, "f:" + key), out)


def _collect_value(value: Any, path: Path, out: set[Path]) -> None:
    if isinstance(value, dict) and value:
        _collect(value, path, out)
    elif _is_keyed_list(value):
        for item in value:
            _collect(item, (*path, _key_segment(item["name"])), out)
    else:
        out.add(path)


def get_at(obj: Any, path: Path) -> tuple[bool, Any]:
    node = obj
    for seg in path:
        if seg.startswith("f:"):
            if not isinstance(node, dict) or seg[2:] not in node:
                return False, None
            node = node[seg[2:]]
        else:
            name = json.loads(seg[2:])["name"]
            if not isinstance(node, list):
                return False, None
            found = [i for i in node if isinstance(i, dict) and i.get("name") == name]
            if not found:
                return False, None
            node = found[0]
    return True, node


def delete_at(obj: dict[str, Any], path: Path) -> None:
    """Delete a leaf, then any map or named list item the deletion left empty."""
    chain: list[Any] = [obj]
    for seg in path[:-1]:
        ok, node = get_at(chain[-1], (seg,))
        if not ok:
            return
        chain.append(node)
    for i in range(len(path) - 1, -1, -1):
        container, seg = chain[i], path[i]
        last = i == len(path) - 1
        if seg.startswith("f:"):
            if last or container.get(seg[2:]) in ({}, []):
                container.pop(seg[2:], None)
        else:
            name = json.loads(seg[2:])["name"]
            container[:] = [
                it for it in container if it and not (last and it.get("name") == name)
            ]
        if container:
            return


def delete_paths(obj: dict[str, Any], paths: set[Path]) -> None:
    # A named item's `name` goes last, so the item can still be found by it until then.
    for path in sorted(paths, key=lambda p: (p[-1] == "f:name", -len(p), p)):
        delete_at(obj, path)


def merge_applied(live: dict[str, Any], applied: dict[str, Any]) -> dict[str, Any]:
    """Merge an applied configuration into a live object (maps merge, named lists by name)."""
    result = copy.deepcopy(live)
    for key, value in applied.items():
        result[key] = _merge_value(result.get(key), value)
    return result


def _merge_value(live: Any, applied: Any) -> Any:
    if isinstance(applied, dict) and isinstance(live, dict):
        merged = copy.deepcopy(live)
        for k, v in applied.items():
            merged[k] = _merge_value(merged.get(k), v)
        return merged
    if _is_keyed_list(applied) and _is_keyed_list(live):
        by_name = {i["name"]: i for i in live}
        return [_merge_value(by_name.get(i["name"]), i) for i in applied] + [
            copy.deepcopy(i) for i in live if i["name"] not in {a["name"] for a in applied}
        ]
    return copy.deepcopy(applied)


def to_fields_v1(paths: set[Path]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path in sorted(paths):
        node = root
        for seg in path:
            node = node.setdefault(seg, {})
            if seg.startswith("k:"):
                node.setdefault(".", {})
    return root


def from_fields_v1(tree: dict[str, Any], prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for seg, sub in tree.items():
        if seg == ".":
            continue
        children = {k: v for k, v in sub.items() if k != "."}
        if children:
            out |= from_fields_v1(children, (*prefix, seg))
        else:
            out.add((*prefix, seg))
    return out


def render_path(path: Path) -> str:
    """`.spec.template.spec.containers[name="envoy"].image`, as conflict messages show it."""
    text = ""
    for seg in path:
        if seg.startswith("f:"):
            text += "." + seg[2:]
        else:
            key = json.loads(seg[2:])
            text += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in key.items()) + "]"
    return text
