"""The `--live` targets: one edge adapter per destination, behind `base.Target`.

`parse_target` maps a spec to its adapter through one table; each adapter module is imported
only when its target is used (the Kubernetes one pulls in the client). A new target is a new
module and a new row, never a new `isinstance` elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gatewayctl.errors import UsageError
from gatewayctl.targets.base import Target
from gatewayctl.targets.kubernetes.options import KubeOptions

TARGET_KINDS = ("kubernetes", "dir:PATH", "git:REF", "local")


def _kubernetes(spec: str, root: Path | None, kube: KubeOptions) -> Target:
    from gatewayctl.targets.kubernetes.target import KubernetesTarget

    return KubernetesTarget(spec, kube)


def _local(spec: str, root: Path | None, kube: KubeOptions) -> Target:
    from gatewayctl.targets.local import LocalTarget

    return LocalTarget(spec, root=root)


def _dir(spec: str, root: Path | None, kube: KubeOptions) -> Target:
    from gatewayctl.targets.directory import DirTarget

    return DirTarget(spec, Path(spec[4:]), root)


def _git(spec: str, root: Path | None, kube: KubeOptions) -> Target:
    from gatewayctl.targets.git import GitTarget

    return GitTarget(spec, spec[4:], root or Path("."), kube.namespace)


Factory = Callable[[str, Path | None, KubeOptions], Target]
# (exact spec, or prefix ending in ":") -> adapter
_TABLE: tuple[tuple[str, Factory], ...] = (
    ("kubernetes", _kubernetes), ("local", _local), ("dir:", _dir), ("git:", _git),
)


def is_local(spec: str | None) -> bool:
    """Whether `spec` (a `--live` value, None when there is none) names the local gateway: the
    one Envoy gatewayctl runs itself."""
    return spec is not None and spec.strip() == "local"


def parse_target(spec: str, root: Path | None, kube: KubeOptions | None = None) -> Target:
    """The target named by `--live`; `root` is the manifest root (None for a saved plan): a
    dir: bundle may not be written inside it, and git: reads it at another ref."""
    spec = spec.strip()
    for key, factory in _TABLE:
        # a kind with a colon needs its PATH or REF: a bare `dir:` is no folder
        named = spec.startswith(key) and spec[len(key):] if key.endswith(":") else spec == key
        if named:
            return factory(spec, root, kube or KubeOptions())
    raise UsageError(f'unknown live target "{spec}"',
                     hint=f"use one of: {', '.join(TARGET_KINDS)}")
