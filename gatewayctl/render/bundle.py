"""The rendered bundle on disk: IR, Envoy config and Kubernetes manifests, written atomically.

Layout of `render --out DIR`:

    DIR/ir.json                     the compiled intermediate representation
    DIR/envoy/bootstrap.yaml        Envoy bootstrap (LDS/CDS from files in the config dir)
    DIR/envoy/lds.json, cds.json    listeners and clusters, hot-reloaded by Envoy
    DIR/envoy/validate.yaml         the same config as one static file, for envoy --mode validate
    DIR/kubernetes/*.yaml           one file per Kubernetes object
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import yaml

from gatewayctl.errors import UsageError
from gatewayctl.gcpause import cycle_collection_paused
from gatewayctl.ir import GatewayIR, to_json
from gatewayctl.render.envoy import EnvoyOptions, render_envoy
from gatewayctl.render.k8s import SourceInfo, render_helm_values, render_kubernetes
from gatewayctl.render.k8s.writer import dump_object, manifest_filename

FORMATS = ("bundle", "helm-values")


def render_files(
    ir: GatewayIR, *, source: SourceInfo | None = None, fmt: str = "bundle"
) -> dict[str, str]:
    """Relative path -> text of every file of the bundle. Pure and deterministic."""
    with cycle_collection_paused():
        envoy = render_envoy(ir, EnvoyOptions())
        if fmt == "helm-values":
            values = render_helm_values(ir, envoy)
            return {"values.yaml": yaml.safe_dump(values, sort_keys=True, width=100)}
        files = {"ir.json": to_json(ir)}
        for name, text in envoy.files().items():
            files[f"envoy/{name}"] = text
        for obj in render_kubernetes(ir, envoy, source):
            files[f"kubernetes/{manifest_filename(obj)}"] = dump_object(obj)
        return dict(sorted(files.items()))


def write_tree(files: dict[str, str], out: Path) -> None:
    """Replace `out` with exactly these files, all or nothing."""
    out = out.resolve()
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder", hint="choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for rel, text in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o755)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            old.rmdir()
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
