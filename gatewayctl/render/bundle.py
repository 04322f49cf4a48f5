"""The rendered bundle: IR, Envoy config and Kubernetes manifests, as files.

Layout of `render --out DIR` (written by `render.output_folder`, which also records them in
DIR/gatewayctl-bundle.json):

    DIR/ir.json                     the compiled intermediate representation
    DIR/envoy/bootstrap.yaml        Envoy bootstrap (LDS/CDS from files in the config dir)
    DIR/envoy/lds.json, rds.json, cds.json    listener, route table and clusters, hot-reloaded
    DIR/envoy/validate.yaml         the same config as one static file, for envoy --mode validate
    DIR/kubernetes/*.yaml           one file per Kubernetes object
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from gatewayctl.gcpause import cycle_collection_paused
from gatewayctl.ir import GatewayIR, to_json
from gatewayctl.render.envoy import EnvoyOptions, render_envoy
from gatewayctl.render.k8s import Provenance, render_helm_values, render_kubernetes
from gatewayctl.render.k8s.objects import KubeObject
from gatewayctl.render.k8s.writer import dump_object, manifest_filename

FORMATS = ("bundle", "helm-values")
ENVOY_FILES = ("bootstrap.yaml", "cds.json", "lds.json", "rds.json", "validate.yaml")


def render_files(
    ir: GatewayIR, *, provenance: Provenance | None = None, fmt: str = "bundle"
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
        for obj in render_kubernetes(ir, envoy, provenance):
            files[f"kubernetes/{manifest_filename(obj)}"] = dump_object(obj)
        return dict(sorted(files.items()))


def bundle_paths(objects: Iterable[dict[str, Any]]) -> frozenset[str]:
    """The paths `render_files` gives for a bundle with these Kubernetes objects, without
    rendering it."""
    return frozenset({"ir.json", *(f"envoy/{name}" for name in ENVOY_FILES),
                      *(f"kubernetes/{manifest_filename(o)}" for o in objects)})


def render_objects(ir: GatewayIR, provenance: Provenance | None = None) -> list[KubeObject]:
    """The gateway's Kubernetes objects, exactly as `render_files` writes them."""
    with cycle_collection_paused():
        return render_kubernetes(ir, render_envoy(ir, EnvoyOptions()), provenance)
