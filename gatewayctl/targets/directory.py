"""`--live dir:PATH`: a rendered bundle on disk (`gatewayctl render --out PATH`).

read: the bundle's Kubernetes objects and its `ir.json`. lock: a lock file beside PATH.
apply: render the plan's IR and swap the bundle in atomically, after checking that the rendered
Kubernetes files are exactly the plan's objects.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gatewayctl.errors import GatewayctlError, UsageError
from gatewayctl.ir import GatewayIR
from gatewayctl.plan.model import DesiredState, ObservedState, Plan
from gatewayctl.plan.resource_diff import fingerprint
from gatewayctl.render.k8s.objects import KubeObject, is_owned_by
from gatewayctl.render.k8s.provenance import Provenance
from gatewayctl.targets.base import (
    ApplyOptions,
    ApplyReport,
    Say,
    default_envoy_config,
    kubernetes_objects,
    resource_counts_summary,
)
from gatewayctl.targets.records import ir_of_objects, parse_ir


def read_bundle_objects(path: Path) -> list[KubeObject]:
    """The Kubernetes objects of a rendered bundle (`PATH/kubernetes/*.yaml`)."""
    import yaml

    loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    objects: list[KubeObject] = []
    folder = path / "kubernetes"
    for file in sorted(folder.glob("*.yaml")) if folder.is_dir() else ():
        try:
            docs = list(yaml.load_all(file.read_text(encoding="utf-8"), Loader=loader))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            raise GatewayctlError(f"cannot read the rendered object {file}: {err}",
                                  hint="render the bundle again") from None
        objects.extend(d for d in docs if isinstance(d, dict) and d.get("kind"))
    return objects


class DirTarget:
    writable = True

    def __init__(self, spec: str, path: Path, root: Path | None = None) -> None:
        self.spec = spec
        self.path = path
        self.root = root

    def where(self) -> None:
        return None  # a spec of this kind names exactly one place

    def close(self) -> None:
        return None

    def render(self, ir: GatewayIR, provenance: Provenance) -> tuple[KubeObject, ...]:
        return kubernetes_objects(ir, provenance)

    def envoy_config(self, ir: GatewayIR) -> str:
        return default_envoy_config(ir)

    def envoy_env(self) -> None:
        return None

    def read(self, desired: DesiredState) -> ObservedState:
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"{self.path} is not a folder",
                             hint="dir:PATH names a folder written by `gatewayctl render`")
        from gatewayctl.render.bundle import bundle_paths
        from gatewayctl.render.output_folder import plan_folder

        gateway = desired.ir.name
        # The folder rules of `apply` hold for its plan too: a refused folder is refused here.
        doomed = plan_folder(self.path, dict.fromkeys(bundle_paths(desired.objects)),
                             root=self.root).delete
        objects = [o for o in read_bundle_objects(self.path) if is_owned_by(o, gateway)]
        ir = self._ir(objects, gateway, desired.ir)
        return ObservedState(ir, tuple(objects),
                             fingerprint(objects, desired.objects, None, "\n".join(doomed)),
                             tuple(desired.objects), files_to_delete=tuple(doomed))

    def _ir(self, objects: list[KubeObject], gateway: str,
            known: GatewayIR | None) -> GatewayIR | None:
        ir_file = self.path / "ir.json"
        if ir_file.is_file():
            try:
                text = ir_file.read_bytes()
            except OSError as err:
                raise GatewayctlError(f"cannot read {ir_file}: {err.strerror}") from None
            ir = parse_ir(text, known, str(ir_file))
            return ir if ir.name == gateway else None
        return ir_of_objects(objects, gateway, known)

    @contextlib.contextmanager
    def lock(self, gateway: str, namespace: str, timeout: float) -> Iterator[None]:
        from gatewayctl.render.output_folder import check_folder

        target = check_folder(self.path, root=self.root)  # a refused folder gets no lock file
        target.parent.mkdir(parents=True, exist_ok=True)
        lock_path = target.parent / f".gatewayctl-apply-{target.name}.lock"
        with open(lock_path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise GatewayctlError(f"another apply to {target} is in progress",
                                      hint=f"wait for it, or remove {lock_path} if stale"
                                      ) from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def apply(self, plan: Plan, options: ApplyOptions, say: Say) -> ApplyReport:
        from gatewayctl.render.bundle import render_files
        from gatewayctl.render.k8s.writer import dump_object, manifest_filename
        from gatewayctl.render.output_folder import plan_folder, write_folder

        assert plan.desired is not None
        files = render_files(plan.desired.ir, provenance=Provenance(**dict(plan.provenance)))
        planned = {f"kubernetes/{manifest_filename(o)}": dump_object(o)
                   for o in plan.desired.objects}
        rendered = {k: v for k, v in files.items() if k.startswith("kubernetes/")}
        if planned != rendered:
            raise GatewayctlError(
                "this gatewayctl renders the plan's IR differently from the gatewayctl that "
                "made the plan; nothing was written", hint="plan again with this version")
        shown = sorted(c.name for c in plan.pending("resource") if c.kind == "File")
        if list(plan_folder(self.path, files, root=self.root).delete) != shown:
            raise GatewayctlError(f"the files in {self.path} changed since the plan; nothing "
                                  "was written", hint="run `gatewayctl plan` again")
        done = write_folder(self.path, files, root=self.root)
        line = (f"wrote {len(done.create) + len(done.update)} files to {self.path} "
                f"({len(done.create)} new, {len(done.update)} changed, {len(done.unchanged)} "
                f"unchanged), removed {len(done.delete)}")
        lines = (line, *(f"removed {self.path}/{rel}" for rel in done.delete))
        for each in lines:
            say(each)
        return ApplyReport(self.spec, lines, resource_counts_summary(plan) + ".")
