"""The resource layer, pure: normalisation, deletes of owned objects only, the fingerprint."""

from __future__ import annotations

import base64
import copy
import gzip
import json
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


def test_json_text_fields_are_compared_as_data_with_items_by_name() -> None:
    live, planned = live_objects(), planned_objects()

    config = next(c for c in diff_resources(live, planned, "ai-gateway")
                  if c.address == "ConfigMap ai-gateway/ai-gateway-config")

    assert [(d.field, d.before, d.after) for d in config.details] == [
        ('data["lds.json"].resources[gateway].routes[0].clusters[stable].weight', 95, 75),
        ('data["lds.json"].resources[gateway].routes[0].clusters[canary].weight', 5, 25)]


def test_lua_data_changes_show_as_data_and_code_changes_as_lines() -> None:
    from gatewayctl.plan.text_diff import text_details
    from gatewayctl.render.envoy.lua import lua_string, to_lua

    code = "local x = 1\nfunction envoy_on_request(h)\n  h:log(DATA.name)\nend\n"

    def source(data: dict[str, object], body: str = code) -> str:
        return "local DATA = " + to_lua(data) + "\n" + body

    big = {"name": "a\"b", "routes": {f"r{i}": {"weight": 50} for i in range(200)}}
    after = {**big, "routes": {**big["routes"], "r7": {"weight": 60}}}
    filters = lambda data, body=code: json.dumps(  # noqa: E731
        {"http_filters": [{"name": "lua", "typed_config": {"default_source_code": {
            "inline_string": source(data, body)}}}]})

    (detail,) = text_details("data", filters(big), filters(after))
    assert (detail.field, detail.before, detail.after) == (
        "data.http_filters[lua] (Lua) DATA.routes.r7.weight", 50, 60)
    assert lua_string('a"b') == '"a\\034b"'

    data_and_code = text_details("data", filters(big), filters(after, code.replace("1", "2")))
    assert [d.field for d in data_and_code] == [
        "data.http_filters[lua] (Lua) DATA.routes.r7.weight",
        "data.http_filters[lua] (Lua code)"]
    assert "-local x = 1\n+local x = 2\n" in data_and_code[1].diff
    assert "DATA = {" not in data_and_code[1].diff  # never the data line itself


def test_keyed_lists_read_as_items_added_not_shifted() -> None:
    def deployment(volumes: list[str]) -> dict[str, object]:
        return {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "gw", "namespace": "ns"},
                "spec": {"template": {"spec": {"volumes": [
                    {"name": v, "secret": {"secretName": v}} for v in volumes]}}}}

    (change,) = diff_resources([deployment(["a-key", "c-key"])],
                               [deployment(["a-key", "b-key", "c-key"])], "gw")

    assert [(d.field, d.before, d.after) for d in change.details] == [
        ("spec.template.spec.volumes[b-key]", None,
         {"name": "b-key", "secret": {"secretName": "b-key"}})]
    assert change.warnings == ("pods will restart (a rolling update) because the pod template "
                               "changes: volumes[b-key] added",)
