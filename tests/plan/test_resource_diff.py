"""The resource layer, pure: normalisation, deletes of owned objects only, the fingerprint."""

from __future__ import annotations

import base64
import copy
import gzip
from typing import Any

from gatewayctl.plan.resource_diff import (
    diff_resources,
    display_path,
    fingerprint,
    normalize,
)
from tests.plan.scenario import live_objects, planned_objects

LABELS = {"app.kubernetes.io/managed-by": "gatewayctl", "gatewayctl.dev/gateway": "ai-gateway"}


def ir_record(text: str, level: int) -> dict[str, Any]:
    packed = gzip.compress(text.encode(), compresslevel=level, mtime=0)
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "ai-gateway-ir", "namespace": "ai-gateway",
                         "labels": dict(LABELS),
                         "annotations": {"gatewayctl.dev/ir-sha256": "x"}},
            "binaryData": {"ir.json.gz": base64.b64encode(packed).decode()}}


def test_server_fields_and_bookkeeping_annotations_are_not_drift() -> None:
    planned = planned_objects()[:1]
    live = copy.deepcopy(planned)
    live[0]["metadata"].update({
        "uid": "u", "resourceVersion": "7", "generation": 2, "managedFields": [{}],
        "creationTimestamp": "2030-01-01T00:00:00Z",
        "annotations": {"gatewayctl.dev/source-commit": "abc",
                        "kubectl.kubernetes.io/last-applied-configuration": "{}"}})
    live[0]["status"] = {"anything": True}

    changes = diff_resources(live, planned, "ai-gateway")

    assert [(c.address, c.action) for c in changes] == [
        ("ServiceAccount ai-gateway/ai-gateway", "no-op")]


def test_ir_record_is_compared_by_its_decoded_text_not_its_gzip_bytes() -> None:
    a, b = ir_record('{"name":"x"}', 1), ir_record('{"name":"x"}', 9)
    assert a["binaryData"] != b["binaryData"]
    assert normalize(a) == normalize(b)

    changed = diff_resources([a], [ir_record('{"name":"y"}', 9)], "ai-gateway")[0]
    assert changed.action == "update"
    assert [d.field for d in changed.details] == ['binaryData["ir.json.gz"]']
    assert changed.details[0].note.startswith("the compiled IR record")


def test_only_objects_with_both_ownership_labels_of_this_gateway_are_deleted() -> None:
    def cm(name: str, labels: dict[str, str] | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "namespace": "ai-gateway"}
        if labels is not None:
            meta["labels"] = labels
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}

    live = [cm("ours", dict(LABELS)), cm("unlabelled", None),
            cm("other", {**LABELS, "gatewayctl.dev/gateway": "other"}),
            cm("half", {"gatewayctl.dev/gateway": "ai-gateway"})]

    changes = diff_resources(live, [], "ai-gateway")

    assert [(c.address, c.action) for c in changes] == [
        ("ConfigMap ai-gateway/ours", "delete")]


def test_field_paths_read_like_kubectl() -> None:
    assert display_path(["spec", "template", "spec", "containers", 0, "image"]) == \
        "spec.template.spec.containers[0].image"
    assert display_path(["data", "lds.json"]) == 'data["lds.json"]'
    assert display_path(["metadata", "labels", "app.kubernetes.io/name"]) == \
        'metadata.labels["app.kubernetes.io/name"]'


def test_fingerprint_covers_managed_fields_and_the_set_of_objects_only() -> None:
    live, planned = live_objects(), planned_objects()
    base = fingerprint(live, planned)

    scaled = copy.deepcopy(live)
    scaled[2]["spec"]["replicas"] = 7  # the autoscaler's field, not gatewayctl's
    scaled[2]["status"] = {"replicas": 7}
    assert fingerprint(scaled, planned) == base

    edited = copy.deepcopy(live)
    edited[2]["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:latest"
    assert fingerprint(edited, planned) != base

    assert fingerprint(live[:-1], planned) != base  # an object went away
    assert fingerprint(list(reversed(live)), planned) == base  # order does not matter


def test_long_text_fields_get_a_unified_diff_of_pretty_json() -> None:
    live, planned = live_objects(), planned_objects()

    config = next(c for c in diff_resources(live, planned, "ai-gateway")
                  if c.address == "ConfigMap ai-gateway/ai-gateway-config")

    (detail,) = config.details
    assert (detail.field, detail.before, detail.after) == ('data["lds.json"]', None, None)
    assert detail.note == "text: +2 -2 lines"
    assert '-              "weight": 95\n+              "weight": 75\n' in detail.diff
