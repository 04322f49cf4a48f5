"""`--live git:REF`: the manifests of the same root at another Git ref. Read-only.

The ref's tree is read with `git archive` (the checkout is never touched), compiled, and
rendered the same way as the desired side; apply refuses.
"""

from __future__ import annotations

import contextlib
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from gatewayctl.errors import GatewayctlError
from gatewayctl.ir import GatewayIR, to_json
from gatewayctl.plan.model import DesiredState, ObservedState, Plan
from gatewayctl.plan.resource_diff import fingerprint
from gatewayctl.render.k8s.objects import KubeObject
from gatewayctl.render.k8s.provenance import Provenance
from gatewayctl.targets.base import (
    ApplyOptions,
    ApplyReport,
    ReadOnlyTarget,
    Say,
    kubernetes_objects,
)

_FETCH_HINT = ("check the ref; in CI, fetch enough history (GIT_DEPTH: 0, or "
               "git fetch origin REF)")


def _git(args: list[str], cwd: Path, what: str, hint: str = _FETCH_HINT) -> bytes:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=60,
                              check=False)
    except FileNotFoundError:
        raise GatewayctlError("git is not installed", hint="install git, or use another --live"
                              ) from None
    except subprocess.TimeoutExpired:
        raise GatewayctlError(f"{what}: git did not answer within 60s") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise GatewayctlError(f"{what}: {message[-1] if message else 'git failed'}",
                              hint=hint)
    return done.stdout


class GitTarget:
    writable = False

    def __init__(self, spec: str, gitref: str, root: Path,
                 namespace_override: str | None = None) -> None:
        self.spec = spec
        self.ref = gitref
        self.root = root
        self.namespace_override = namespace_override
        self.commit: str | None = None

    def where(self) -> None:
        return None  # a spec of this kind names exactly one place

    def close(self) -> None:
        return None

    def render(self, ir: GatewayIR, provenance: Provenance) -> tuple[KubeObject, ...]:
        return kubernetes_objects(ir, provenance)

    def envoy_config(self, ir: GatewayIR) -> str:
        raise ReadOnlyTarget(self.spec)

    def envoy_env(self) -> None:
        return None

    @contextlib.contextmanager
    def lock(self, gateway: str, namespace: str, timeout: float) -> Iterator[None]:
        raise ReadOnlyTarget(self.spec)
        yield  # pragma: no cover

    def apply(self, plan: Plan, options: ApplyOptions, say: Say) -> ApplyReport:
        raise ReadOnlyTarget(self.spec)

    def load_ir(self) -> GatewayIR | None:
        """The IR compiled from the root's manifests at the ref; None if the root was absent."""
        from gatewayctl.pipeline import compile_root

        root = self.root.resolve()
        cwd = root if root.is_dir() else root.parent
        top = Path(_git(["rev-parse", "--show-toplevel"], cwd, "find the Git checkout",
                        "--live git:REF needs the root inside a Git checkout").decode().strip())
        self.commit = _git(["rev-parse", "--verify", f"{self.ref}^{{commit}}"], top,
                           f'resolve "{self.ref}"').decode().strip()
        rel = root.relative_to(top.resolve()).as_posix()
        rel = "" if rel == "." else rel
        listing = _git(["ls-tree", "--name-only", self.commit, "--", rel or "."], top,
                       "list the manifests")
        if rel and not listing.strip():
            return None
        with tempfile.TemporaryDirectory(prefix="gatewayctl-git-") as tmp:
            archive = Path(tmp) / "tree.tar"
            archive.write_bytes(_git(["archive", "--format=tar", self.commit, "--", rel or "."],
                                     top, f"read the manifests at {self.ref}"))
            with tarfile.open(archive) as tar:
                tar.extractall(Path(tmp) / "tree", filter="data")
            try:
                return compile_root(Path(tmp) / "tree" / rel).ir
            except GatewayctlError as err:
                raise GatewayctlError(
                    f"the manifests at {self.ref} ({self.commit[:12]}) do not compile:\n"
                    f"{err.message}", hint="plan against another ref") from None

    def read(self, desired: DesiredState) -> ObservedState:
        from gatewayctl.render.bundle import render_objects

        ir = self.load_ir()
        if ir is not None and ir.name != desired.ir.name:
            ir = None  # another gateway lived there: from this gateway's view, nothing did
        if ir is not None and self.namespace_override:
            ir = replace(ir, namespace=self.namespace_override)
        objects: tuple[KubeObject, ...] = ()
        if ir is not None and ir == desired.ir:
            # Rendering is deterministic: the same IR renders the same objects (the
            # provenance annotations aside, which plans ignore).
            ir, objects = desired.ir, desired.objects
        elif ir is not None and desired.objects:
            objects = tuple(render_objects(ir, Provenance(commit=self.commit, ref=self.ref)))
        return ObservedState(ir, objects,
                             fingerprint(objects, desired.objects, to_json(ir) if ir else ""),
                             tuple(desired.objects))
