"""Live sources for `--live`: where the running gateway's state is read from.

    kubernetes   the cluster of the kubeconfig context (or in-cluster config inside a pod)
    dir:PATH     a rendered bundle (`gatewayctl render --out PATH`, or `apply --live dir:PATH`)
    git:REF      the manifests at another Git ref, compiled and rendered the same way
    local        the local gateway started by `gatewayctl up`

Each returns a LiveState: the IR the live gateway runs (None when nothing is deployed), its
objects, what each desired object would become once applied ("planned": a server-side-apply
dry run against a cluster, the rendered object elsewhere), and a fingerprint. Cluster I/O goes
through `gatewayctl.live.kube`, imported lazily; this module never imports the client itself.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from gatewayctl.errors import GatewayctlError, UsageError
from gatewayctl.ir import GatewayIR, from_dict, to_dict, to_json
from gatewayctl.live.objects import is_owned_by, ref
from gatewayctl.plan.resource_diff import IR_RECORD_KEY, fingerprint

KubeObject = dict[str, Any]
LIVE_KINDS = ("kubernetes", "dir:PATH", "git:REF", "local")


@dataclass(frozen=True)
class LiveState:
    ir: GatewayIR | None
    objects: list[KubeObject]
    fingerprint: str
    planned: list[KubeObject] = field(default_factory=list)
    warnings: tuple[str, ...] = ()
    object_warnings: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # dir: the files gatewayctl wrote there earlier that the desired bundle no longer has
    files_to_delete: tuple[str, ...] = ()


class LiveSource(Protocol):
    spec: str  # as the user wrote it: "kubernetes", "dir:out", "git:HEAD~1", "local"

    def read(self, gateway: str, namespace: str, desired: Sequence[KubeObject],
             known: GatewayIR | None = None) -> LiveState:
        """The live state of `gateway`, and what `desired` would become there. `known` is an
        IR the caller holds (the desired one): returned as the live IR when the live IR is
        equal to it, which spares parsing a large IR again."""
        ...

    def target(self) -> str | None:
        """Where the source is, when the same --live could name another place: the API
        server of a Kubernetes source (the kubeconfig and context decide it), else None."""
        ...


@dataclass(frozen=True)
class KubeOptions:
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    request_timeout: float = 30.0
    retries: int = 3
    backoff: float = 0.5


def parse_live(spec: str, root: Path | None, kube: KubeOptions | None = None) -> LiveSource:
    """The live source named by `--live`; `root` is the manifest root (None for a saved
    plan): a dir: bundle may not be written inside it, and git: reads it at another ref."""
    spec = spec.strip()
    if spec == "kubernetes":
        return KubernetesSource(spec, kube or KubeOptions())
    if spec == "local":
        return LocalSource(spec)
    if spec.startswith("dir:") and spec[4:]:
        return DirSource(spec, Path(spec[4:]), root)
    if spec.startswith("git:") and spec[4:]:
        return GitSource(spec, spec[4:], root or Path("."), (kube or KubeOptions()).namespace)
    raise UsageError(f'unknown live source "{spec}"', hint=f"use one of: {', '.join(LIVE_KINDS)}")


def parse_ir(text: str | bytes, known: GatewayIR | None, where: str) -> GatewayIR:
    """An IR from its JSON text; `known` itself when the text describes exactly it."""
    try:
        data = json.loads(text)
        if known is not None and data == to_dict(known):
            return known
        return from_dict(data)
    except (ValueError, TypeError, KeyError) as err:
        raise GatewayctlError(f"{where} does not hold a readable gatewayctl IR ({err})",
                              hint="apply the gateway again with this gatewayctl version"
                              ) from None


def ir_of_objects(objects: Sequence[KubeObject], gateway: str,
                  known: GatewayIR | None = None) -> GatewayIR | None:
    """The IR recorded in the gateway's `<gateway>-ir` ConfigMap, if there is one."""
    for obj in objects:
        record = (obj.get("binaryData") or {}).get(IR_RECORD_KEY)
        if obj.get("kind") == "ConfigMap" and record and is_owned_by(obj, gateway):
            where = f"ConfigMap {ref(obj)}"
            try:
                text = gzip.decompress(base64.b64decode(record, validate=True))
            except (binascii.Error, ValueError, OSError, EOFError, zlib.error) as err:
                raise GatewayctlError(f"{where} does not hold a readable gatewayctl IR ({err})",
                                      hint="apply the gateway again") from None
            return parse_ir(text, known, where)
    return None


# -- kubernetes -------------------------------------------------------------------------------

class KubernetesSource:
    def __init__(self, spec: str, options: KubeOptions) -> None:
        self.spec = spec
        self.options = options
        self._client: Any = None

    def client(self) -> Any:
        """The connected `gatewayctl.live.kube.KubeClient` (created on first use)."""
        if self._client is None:
            from gatewayctl.live.kube import KubeClient, KubeTarget

            o = self.options
            self._client = KubeClient(KubeTarget(
                kubeconfig=o.kubeconfig, context=o.context, namespace=o.namespace,
                request_timeout=o.request_timeout, retries=o.retries, backoff=o.backoff))
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def target(self) -> str:
        """The API server the kubeconfig and context point at."""
        return str(self.client().server)

    def read(self, gateway: str, namespace: str, desired: Sequence[KubeObject],
             known: GatewayIR | None = None) -> LiveState:
        client = self.client()
        objects: list[KubeObject] = client.read_managed(gateway, namespace)
        planned, warnings, per_object = self.preview(desired)
        return LiveState(ir_of_objects(objects, gateway, known), objects,
                         fingerprint(objects, desired), planned, warnings, per_object)

    def preview(
        self, desired: Sequence[KubeObject]
    ) -> tuple[list[KubeObject], tuple[str, ...], dict[str, tuple[str, ...]]]:
        """Server-side-apply dry runs: what the server would store for each desired object.

        A field-ownership conflict does not stop the plan: the object is previewed as
        `--force-conflicts` would leave it, and the conflict becomes a warning on it."""
        from gatewayctl.live.errors import KubeConflict, KubeNotFound

        client = self.client()
        planned: list[KubeObject] = []
        warnings: list[str] = []
        per_object: dict[str, tuple[str, ...]] = {}
        missing_namespaces: set[str] = set()
        for obj in desired:
            namespace = (obj.get("metadata") or {}).get("namespace", "")
            if namespace in missing_namespaces:
                planned.append(obj)
                continue
            try:
                planned.append(client.dry_run_apply([obj])[0])
            except KubeConflict as err:
                fields = ", ".join(f"{c.field} (owned by {c.manager})" for c in err.conflicts)
                per_object[ref(obj)] = (
                    f"conflict: {fields or err.server_message}; apply needs --force-conflicts "
                    "to take these fields over",)
                planned.append(client.dry_run_apply([obj], force=True)[0])
            except KubeNotFound as err:
                if err.kind != "namespaces":
                    raise
                missing_namespaces.add(namespace)
                warnings.append(f'namespace "{namespace}" does not exist: create it before '
                                "applying (gatewayctl does not create namespaces)")
                planned.append(obj)
        return planned, tuple(warnings), per_object


# -- dir:PATH ---------------------------------------------------------------------------------

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


class DirSource:
    def __init__(self, spec: str, path: Path, root: Path | None = None) -> None:
        self.spec = spec
        self.path = path
        self.root = root

    def target(self) -> None:
        return None  # a --live of this kind names exactly one place

    def read(self, gateway: str, namespace: str, desired: Sequence[KubeObject],
             known: GatewayIR | None = None) -> LiveState:
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"{self.path} is not a folder",
                             hint="dir:PATH names a folder written by `gatewayctl render`")
        from gatewayctl.render.bundle import bundle_paths
        from gatewayctl.render.output_folder import plan_folder

        # The folder rules of `apply` hold for its plan too: a refused folder is refused here.
        doomed = plan_folder(self.path, dict.fromkeys(bundle_paths(desired)),
                             root=self.root).delete
        objects = [o for o in read_bundle_objects(self.path) if is_owned_by(o, gateway)]
        ir = self._ir(objects, gateway, known)
        return LiveState(ir, objects, fingerprint(objects, desired, None, "\n".join(doomed)),
                         list(desired), files_to_delete=doomed)

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


# -- git:REF ----------------------------------------------------------------------------------

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


class GitSource:
    """The manifests at another ref: read with `git archive`, never touching the checkout."""

    def __init__(self, spec: str, gitref: str, root: Path,
                 namespace_override: str | None = None) -> None:
        self.spec = spec
        self.ref = gitref
        self.root = root
        self.namespace_override = namespace_override
        self.commit: str | None = None

    def target(self) -> None:
        return None  # a --live of this kind names exactly one place

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

    def read(self, gateway: str, namespace: str, desired: Sequence[KubeObject],
             known: GatewayIR | None = None) -> LiveState:
        from gatewayctl.plan.compute import render_objects
        from gatewayctl.render.k8s import SourceInfo

        ir = self.load_ir()
        if ir is not None and ir.name != gateway:
            ir = None  # another gateway lived there: from this gateway's view, nothing did
        if ir is not None and self.namespace_override:
            ir = replace(ir, namespace=self.namespace_override)
        objects: list[KubeObject] = []
        if ir is not None and ir == known:
            # Rendering is deterministic: the same IR renders the same objects (the source
            # annotations aside, which plans ignore).
            ir, objects = known, list(desired)
        elif ir is not None and desired:
            objects = render_objects(ir, SourceInfo(commit=self.commit, ref=self.ref))
        return LiveState(ir, objects, fingerprint(objects, desired, to_json(ir) if ir else ""),
                         list(desired))


# -- local ------------------------------------------------------------------------------------

class LocalSource:
    """The local gateway (`gatewayctl up`): its recorded IR and what Envoy really serves."""

    def __init__(self, spec: str, state_dir: Path | None = None) -> None:
        self.spec = spec
        self.state_dir = state_dir

    def target(self) -> None:
        return None  # a --live of this kind names exactly one place

    def read(self, gateway: str, namespace: str, desired: Sequence[KubeObject],
             known: GatewayIR | None = None) -> LiveState:
        from gatewayctl.local.gateway import read_live_local

        live = read_live_local(state_dir=self.state_dir)
        warnings = tuple(f"the local gateway drifted from its recorded configuration: {d}"
                         for d in live.drift)
        served = repr(live.served)
        return LiveState(live.ir, [], fingerprint([], [], to_json(live.ir) if live.ir else "",
                                                  served), [], warnings)
