"""Kubernetes objects -> YAML files: one `<kind>-<name>.yaml` per object, lowercase.

Deterministic bytes: keys sorted, block style, multi-line strings (the Envoy bootstrap) as
literal blocks, UTF-8, a trailing newline. One file per object keeps merge-request diffs
readable and lets a team apply a subset (only the ConfigMaps, say) with kubectl.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gatewayctl.render.k8s.meta import MANAGED_BY_LABEL, MANAGED_BY_VALUE, KubeObject


def manifest_filename(obj: KubeObject) -> str:
    return f"{obj['kind']}-{obj['metadata']['name']}.yaml".lower()


def dump_object(obj: KubeObject) -> str:
    """One object as a YAML document."""
    import yaml

    # libyaml's emitter when PyYAML has it: the pure-Python one takes seconds on a large
    # gateway's objects. Both emit the same text for what gatewayctl renders (golden tests).
    base: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

    class _Dumper(base):  # type: ignore[valid-type,misc]
        pass

    def _str(dumper: yaml.SafeDumper, value: str) -> Any:
        # Literal blocks only where they read back identically: PyYAML falls back to quoting
        # when a line has trailing spaces or the text has characters a block cannot hold.
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    text: str = yaml.dump(
        obj,
        Dumper=_Dumper,
        sort_keys=True,
        default_flow_style=False,
        allow_unicode=True,
        width=100_000,
    )
    return text


def dump_all(objects: list[KubeObject]) -> str:
    """All objects as one multi-document YAML stream, in the given order."""
    return "".join(f"---\n{dump_object(obj)}" for obj in objects)


def write_manifests(objects: list[KubeObject], out_dir: Path) -> list[Path]:
    """Write each object to `out_dir/<kind>-<name>.yaml`; returns the paths in object order.

    YAML files left by an earlier render for objects no longer rendered (a PrometheusRule
    after the last budget went, say) are removed, so `kubectl apply -f` on the directory never
    resurrects them. Other files in `out_dir` are left alone.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for obj in objects:
        path = out_dir / manifest_filename(obj)
        if path in paths:
            raise ValueError(f"two objects would be written to {path.name}")
        paths.append(path)
    for stale in sorted(set(out_dir.glob("*.yaml")) - set(paths)):
        if _is_rendered_manifest(stale):
            stale.unlink()
    for obj, path in zip(objects, paths, strict=True):
        path.write_text(dump_object(obj), encoding="utf-8", newline="\n")
    return paths


def _is_rendered_manifest(path: Path) -> bool:
    import yaml

    try:
        docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    if len(docs) != 1 or not isinstance(docs[0], dict):
        return False
    labels = (docs[0].get("metadata") or {}).get("labels") or {}
    return (
        isinstance(labels, dict)
        and labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE
        and path.name == manifest_filename(docs[0])
    )
