"""The ConfigMaps of a gateway, and the size limit they must respect.

- `<gateway>-bootstrap` (`bootstrap.yaml`): read once at start; a change rolls the pods
  through the Deployment's restart checksum.
- `<gateway>-config` (`lds.json`, `cds.json` in `data`; or, when they would not fit in one
  ConfigMap, packed: `lds.json.gz` in `binaryData` and `cds.json.sha256` in `data`, with
  `cds.json.gz` in its own `<gateway>-config-clusters`): both are projected into one volume,
  whose files the pod's unpacker (`unpack.py`) publishes into the directory Envoy watches after
  each of kubelet's atomic `..data` swaps, which makes routing, weights, prompts and policies
  hot-reloadable. Plain whenever it fits: the text stays readable in plans and
  `kubectl get -o yaml`, its bytes do not depend on the zlib build, and one ConfigMap updates
  atomically. `<gateway>-config-clusters` exists only while packed; `apply` prunes it after.
- `<gateway>-ir` (`ir.json.gz`, gzip then base64 in binaryData): the compiled IR, not mounted,
  so that a later plan can compare against what is running. Kept apart from the mounted config
  so that a large IR cannot push the hot-reloaded ConfigMap over the limit, and so that an
  IR-only change (pricing, say) does not make every kubelet rewrite Envoy's directory.

`<gateway>-config` and `<gateway>-ir` carry the source annotations and `gatewayctl.dev/ir-sha256`
(the SHA-256 of the IR's compact, key-sorted JSON). The gzip bytes depend on the zlib build;
readers compare the decoded IR or the hash, never the compressed bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

from gatewayctl.ir import GatewayIR, to_json
from gatewayctl.render.k8s.layout import (
    BOOTSTRAP_FILE,
    CDS_FILE,
    LDS_FILE,
    RDS_FILE,
    EnvoyLayout,
)
from gatewayctl.render.k8s.meta import (
    CONFIG,
    IR_SHA256,
    IR_VERSION_ANNOTATION,
    KubeObject,
    KubernetesRenderError,
    bootstrap_configmap_name,
    config_clusters_configmap_name,
    config_configmap_name,
    ir_configmap_name,
    metadata,
)
from gatewayctl.render.k8s.packing import IR_RECORD_KEY, pack
from gatewayctl.render.k8s.packing import PACKED_SUFFIX as PACKED_SUFFIX  # helm.py reads it here
from gatewayctl.render.k8s.provenance import Provenance

CDS_SHA256_KEY = "cds.json.sha256"  # in a packed <gateway>-config: the cds.json it goes with
# The API server rejects a ConfigMap whose data and binaryData values (binaryData decoded)
# add up to more than 1 MiB, and etcd any object over 1.5 MiB (its default request limit).
MAX_CONFIGMAP_DATA_BYTES = 1024 * 1024
MAX_OBJECT_BYTES = 1536 * 1024
METADATA_ROOM = 16 * 1024  # labels and annotations of a ConfigMap, with a wide margin


def ir_json(ir: GatewayIR) -> str:
    """The canonical text of the IR: compact, keys sorted. A large IR takes a while to
    serialise: a render does it once and passes the text to what needs it."""
    return to_json(ir, indent=None)


def ir_sha256(ir_text: str) -> str:
    """`gatewayctl.dev/ir-sha256` of the IR whose `ir_json` is `ir_text`."""
    return hashlib.sha256(ir_text.encode()).hexdigest()


def _configmap(meta: dict[str, object]) -> KubeObject:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}


def render_bootstrap_configmap(ir: GatewayIR, layout: EnvoyLayout) -> KubeObject:
    obj = _configmap(metadata(ir, bootstrap_configmap_name(ir), CONFIG))
    obj["data"] = {BOOTSTRAP_FILE: layout.bootstrap}
    return obj


def _tracking_annotations(ir: GatewayIR, ir_text: str, provenance: Provenance) -> dict[str, str]:
    return {
        IR_SHA256: ir_sha256(ir_text),
        IR_VERSION_ANNOTATION: ir.version,
        **provenance.annotations(),
    }


@dataclass(frozen=True)
class ConfigEntries:
    """The entries (`data` / `binaryData`) of `<gateway>-config` and, when packed, of
    `<gateway>-config-clusters`."""

    config: dict[str, dict[str, str]]
    clusters: dict[str, dict[str, str]] | None = None


def config_entries(layout: EnvoyLayout) -> ConfigEntries:
    """Plain, `lds.json`, `rds.json` and `cds.json` in `<gateway>-config`'s `data`, when that
    fits in one ConfigMap; else packed: gzipped, the clusters in a ConfigMap of their own
    (`lds.json.gz` and `rds.json.gz` in `<gateway>-config`, `cds.json.gz` in
    `<gateway>-config-clusters`), so that each file has a
    whole ConfigMap's limit to grow into. A packed `<gateway>-config` also carries
    `cds.json.sha256`, the hash of the `cds.json` its `lds.json` was rendered with: the unpacker
    publishes nothing until the two ConfigMaps it sees belong together, as they may not for a
    moment while an apply updates one and then the other.

    Decided on the files alone (with room for metadata), so that gatewayctl's and the Helm
    chart's ConfigMaps agree."""
    plain = {"data": {CDS_FILE: layout.cds, LDS_FILE: layout.lds, RDS_FILE: layout.rds}}
    probe = {"kind": "ConfigMap", "metadata": {"name": "config"}, **plain}
    if size_problem(probe, METADATA_ROOM) is None:
        return ConfigEntries(config=plain)
    return ConfigEntries(
        config={
            "binaryData": {
                LDS_FILE + PACKED_SUFFIX: pack(layout.lds),
                RDS_FILE + PACKED_SUFFIX: pack(layout.rds),
            },
            "data": {CDS_SHA256_KEY: hashlib.sha256(layout.cds.encode()).hexdigest()},
        },
        clusters={"binaryData": {CDS_FILE + PACKED_SUFFIX: pack(layout.cds)}},
    )


def render_config_configmaps(
    ir: GatewayIR, layout: EnvoyLayout, provenance: Provenance, ir_text: str
) -> list[KubeObject]:
    """`<gateway>-config`, preceded, when packed, by `<gateway>-config-clusters` (applied first:
    the clusters a new listener routes to should be there before it). `ir_text`: `ir_json(ir)`."""
    annotations = _tracking_annotations(ir, ir_text, provenance)
    entries = config_entries(layout)
    objects = [
        {
            **_configmap(metadata(ir, config_configmap_name(ir), CONFIG, annotations)),
            **entries.config,
        }
    ]
    if entries.clusters is not None:
        meta = metadata(ir, config_clusters_configmap_name(ir), CONFIG, annotations)
        objects.insert(0, {**_configmap(meta), **entries.clusters})
    return objects


def render_ir_configmap(ir: GatewayIR, provenance: Provenance, ir_text: str) -> KubeObject:
    """`<gateway>-ir`; `ir_text`: `ir_json(ir)`."""
    annotations = _tracking_annotations(ir, ir_text, provenance)
    meta = metadata(ir, ir_configmap_name(ir), CONFIG, annotations)
    obj = _configmap(meta)
    obj["binaryData"] = {IR_RECORD_KEY: pack(ir_text)}
    return obj


def check_size(obj: KubeObject) -> None:
    """Fail, naming the biggest entries, when an object is over a Kubernetes size limit."""
    problem = size_problem(obj)
    if problem is not None:
        raise KubernetesRenderError(problem, hint=_SPLIT_HINT)


def size_problem(obj: KubeObject, room: int = 0) -> str | None:
    """What is over a limit (keeping `room` bytes of the object limit free), or None."""
    meta = obj["metadata"]
    what = f"{obj['kind']} {meta.get('namespace', '')}/{meta['name']}"
    entries = {key: len(value.encode()) for key, value in (obj.get("data") or {}).items()}
    entries |= {
        key: len(base64.b64decode(value)) for key, value in (obj.get("binaryData") or {}).items()
    }
    data_size = sum(entries.values())
    if data_size > MAX_CONFIGMAP_DATA_BYTES:
        parts = ", ".join(
            f"{key} {_kib(size)}" for key, size in sorted(entries.items(), key=lambda kv: -kv[1])
        )
        return (
            f"{what} would hold {_kib(data_size)} of data, over Kubernetes' 1024 KiB "
            f"ConfigMap limit ({parts})"
        )
    size = len(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode())
    if size + room > MAX_OBJECT_BYTES:
        return f"{what} would be {_kib(size)}, over the 1536 KiB that etcd stores per object"
    return None


_SPLIT_HINT = (
    "split the routes over several Gateways, or remove unused routes, models and prompt versions"
)


def _kib(size: int) -> str:
    return f"{size / 1024:.0f} KiB"
