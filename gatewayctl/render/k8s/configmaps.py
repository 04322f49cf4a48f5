"""The three ConfigMaps of a gateway, and the size limit they must respect.

- `<gateway>-bootstrap` (`bootstrap.yaml`): read once at start; a change rolls the pods
  through the Deployment's restart checksum.
- `<gateway>-config` (`lds.json`, `cds.json`): mounted as the directory Envoy watches; kubelet's
  atomic `..data` swap makes routing, weights, prompts and policies hot-reloadable.
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
import gzip
import hashlib
import json

from gatewayctl.ir import GatewayIR, from_json, to_json
from gatewayctl.render.k8s.layout import BOOTSTRAP_FILE, CDS_FILE, LDS_FILE, EnvoyLayout
from gatewayctl.render.k8s.meta import (
    CONFIG,
    IR_SHA256,
    IR_VERSION_ANNOTATION,
    KubeObject,
    KubernetesRenderError,
    bootstrap_configmap_name,
    config_configmap_name,
    ir_configmap_name,
    metadata,
)
from gatewayctl.render.k8s.source import SourceInfo

IR_KEY = "ir.json.gz"
# The API server rejects a ConfigMap whose data and binaryData values (binaryData decoded)
# add up to more than 1 MiB, and etcd any object over 1.5 MiB (its default request limit).
MAX_CONFIGMAP_DATA_BYTES = 1024 * 1024
MAX_OBJECT_BYTES = 1536 * 1024


def ir_json(ir: GatewayIR) -> str:
    """The canonical text of the IR: compact, keys sorted."""
    return to_json(ir, indent=None)


def ir_sha256(ir: GatewayIR) -> str:
    return hashlib.sha256(ir_json(ir).encode()).hexdigest()


def _configmap(meta: dict[str, object]) -> KubeObject:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}


def render_bootstrap_configmap(ir: GatewayIR, layout: EnvoyLayout) -> KubeObject:
    obj = _configmap(metadata(ir, bootstrap_configmap_name(ir), CONFIG))
    obj["data"] = {BOOTSTRAP_FILE: layout.bootstrap}
    return obj


def _tracking_annotations(ir: GatewayIR, source: SourceInfo) -> dict[str, str]:
    return {
        IR_SHA256: ir_sha256(ir),
        IR_VERSION_ANNOTATION: ir.version,
        **source.annotations(),
    }


def render_config_configmap(ir: GatewayIR, layout: EnvoyLayout, source: SourceInfo) -> KubeObject:
    meta = metadata(ir, config_configmap_name(ir), CONFIG, _tracking_annotations(ir, source))
    obj = _configmap(meta)
    obj["data"] = {CDS_FILE: layout.cds, LDS_FILE: layout.lds}
    return obj


def render_ir_configmap(ir: GatewayIR, source: SourceInfo) -> KubeObject:
    meta = metadata(ir, ir_configmap_name(ir), CONFIG, _tracking_annotations(ir, source))
    packed = gzip.compress(ir_json(ir).encode(), compresslevel=9, mtime=0)
    obj = _configmap(meta)
    obj["binaryData"] = {IR_KEY: base64.b64encode(packed).decode("ascii")}
    return obj


def decode_ir(configmap: KubeObject) -> GatewayIR:
    """The IR a live `<gateway>-ir` ConfigMap carries."""
    name = (configmap.get("metadata") or {}).get("name")
    try:
        packed = base64.b64decode((configmap.get("binaryData") or {})[IR_KEY], validate=True)
        return from_json(gzip.decompress(packed).decode())
    except (KeyError, ValueError, TypeError, OSError, EOFError) as err:
        raise KubernetesRenderError(
            f"ConfigMap {name} does not hold a readable gatewayctl IR ({err})",
            hint="render and apply the gateway again with this gatewayctl version",
        ) from err


def check_size(obj: KubeObject) -> None:
    """Fail, naming the biggest entries, when an object is over a Kubernetes size limit."""
    meta = obj["metadata"]
    what = f"{obj['kind']} {meta['namespace']}/{meta['name']}"
    entries = {key: len(value.encode()) for key, value in (obj.get("data") or {}).items()}
    entries |= {
        key: len(base64.b64decode(value)) for key, value in (obj.get("binaryData") or {}).items()
    }
    data_size = sum(entries.values())
    if data_size > MAX_CONFIGMAP_DATA_BYTES:
        parts = ", ".join(
            f"{key} {_kib(size)}" for key, size in sorted(entries.items(), key=lambda kv: -kv[1])
        )
        raise KubernetesRenderError(
            f"{what} would hold {_kib(data_size)} of data, over Kubernetes' 1024 KiB "
            f"ConfigMap limit ({parts})",
            hint=_SPLIT_HINT,
        )
    size = len(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_OBJECT_BYTES:
        raise KubernetesRenderError(
            f"{what} would be {_kib(size)}, over the 1536 KiB that etcd stores per object",
            hint=_SPLIT_HINT,
        )


_SPLIT_HINT = (
    "split the routes over several Gateways, or remove unused routes, models and prompt versions"
)


def _kib(size: int) -> str:
    return f"{size / 1024:.0f} KiB"
