"""A packed ConfigMap (gzip in binaryData) diffs as the JSON inside it."""

from __future__ import annotations

import base64
import gzip
import json

from gatewayctl.plan.resource_diff import normalize


def packed(doc: dict[str, object], level: int) -> str:
    raw = json.dumps(doc, indent=1).encode()
    return base64.b64encode(gzip.compress(raw, compresslevel=level, mtime=0)).decode()


def configmap(binary: dict[str, str]) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "gw-config", "namespace": "gw"}, "binaryData": binary}


def test_packed_json_is_compared_by_content() -> None:
    doc = {"resources": [{"name": "r", "weight": 90}]}
    one = normalize(configmap({"lds.json.gz": packed(doc, 9)}))
    other = normalize(configmap({"lds.json.gz": packed(doc, 1)}))
    assert one == other  # different gzip bytes, same content
    assert json.loads(one["binaryData"]["lds.json.gz"]) == doc


def test_other_binary_data_is_left_alone() -> None:
    obj = normalize(configmap({"blob.bin": "AAEC", "bad.json.gz": "not base64!"}))
    assert obj["binaryData"] == {"blob.bin": "AAEC", "bad.json.gz": "not base64!"}
