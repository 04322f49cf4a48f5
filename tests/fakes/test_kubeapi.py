"""The fake API server answers like the documented Kubernetes API (raw HTTP, no client)."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.kubeapi import FaultRule, KubeAPIServer, Rule

NS = "ai-gateway"
CMS = f"/api/v1/namespaces/{NS}/configmaps"


@pytest.fixture
def server() -> Iterator[KubeAPIServer]:
    with KubeAPIServer(namespaces=(NS,)) as srv:
        yield srv


def call(server: KubeAPIServer, method: str, path: str, body: Any = None,
         content_type: str = "application/json", token: str | None = None
         ) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(server.url + path, data=data, method=method)
    req.add_header("Content-Type", content_type)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def cm(name: str, data: dict[str, Any], labels: dict[str, str] | None = None
       ) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **({"labels": labels} if labels else {})}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def apply(server: KubeAPIServer, path: str, body: dict[str, Any], manager: str | None,
          extra: str = "") -> tuple[int, dict[str, Any]]:
    query = f"?fieldManager={manager}{extra}" if manager else ("?" + extra.lstrip("&"))
    return call(server, "PATCH", path + query, body, "application/apply-patch+yaml")


def test_discovery_documents(server: KubeAPIServer) -> None:
    assert call(server, "GET", "/version")[1]["major"] == "1"
    _, apps = call(server, "GET", "/apis/apps/v1")
    assert apps["groupVersion"] == "apps/v1"
    assert [r["name"] for r in apps["resources"]] == ["deployments", "deployments/status"]
    _, groups = call(server, "GET", "/apis")
    assert "monitoring.coreos.com" in [g["name"] for g in groups["groups"]]


def test_create_duplicate_and_missing_namespace(server: KubeAPIServer) -> None:
    code, created = call(server, "POST", CMS, cm("a", {"k": "v"}))
    assert code == 201
    assert created["metadata"]["uid"] and created["metadata"]["resourceVersion"]
    assert created["metadata"]["managedFields"][0]["operation"] == "Update"

    assert call(server, "POST", CMS, cm("a", {"k": "v"})) == (409, {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'configmaps "a" already exists', "reason": "AlreadyExists",
        "details": {"name": "a", "kind": "configmaps"}, "code": 409})
    code, body = call(server, "POST", "/api/v1/namespaces/nope/configmaps", cm("a", {}))
    assert (code, body["message"]) == (404, 'namespaces "nope" not found')


def test_update_with_stale_resource_version_conflicts(server: KubeAPIServer) -> None:
    _, created = call(server, "POST", CMS, cm("a", {"k": "v"}))
    fresh = dict(created, data={"k": "w"})
    assert call(server, "PUT", f"{CMS}/a", fresh)[0] == 200

    code, body = call(server, "PUT", f"{CMS}/a", dict(created, data={"k": "x"}))

    assert (code, body["reason"]) == (409, "Conflict")
    assert body["message"] == (
        'Operation cannot be fulfilled on configmaps "a": the object has been modified; '
        "please apply your changes to the latest version and try again")


def test_list_with_label_selectors(server: KubeAPIServer) -> None:
    for name, labels in [("a", {"app": "x", "tier": "web"}), ("b", {"app": "y"}),
                         ("c", {"tier": "db"})]:
        call(server, "POST", CMS, cm(name, {}, labels))

    def names(selector: str) -> list[str]:
        _, listed = call(server, "GET", f"{CMS}?labelSelector={selector}")
        assert listed["kind"] == "ConfigMapList" and listed["metadata"]["resourceVersion"]
        assert all("kind" not in i for i in listed["items"])
        return [i["metadata"]["name"] for i in listed["items"]]

    assert names("app=x") == ["a"]
    assert names("app!=x") == ["b", "c"]
    assert names("tier") == ["a", "c"]
    assert names("app%20in%20(x,y),tier") == ["a"]


def test_apply_requires_field_manager(server: KubeAPIServer) -> None:
    code, body = apply(server, f"{CMS}/a", cm("a", {"k": "v"}), None)

    assert (code, body["reason"]) == (422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "fieldManager"


def test_apply_tracks_ownership_and_removes_dropped_fields(server: KubeAPIServer) -> None:
    assert apply(server, f"{CMS}/a", cm("a", {"one": "1", "two": "2"}), "tool")[0] == 201

    code, body = apply(server, f"{CMS}/a", cm("a", {"one": "1"}), "tool")

    assert code == 200
    assert body["data"] == {"one": "1"}
    [entry] = body["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"], entry["fieldsType"]) == (
        "tool", "Apply", "FieldsV1")
    assert entry["fieldsV1"] == {"f:data": {"f:one": {}}}


def test_apply_conflicts_list_every_field(server: KubeAPIServer) -> None:
    call(server, "POST", f"{CMS}?fieldManager=kubectl-edit", cm("a", {"x": "1", "y": "1"}))

    code, body = apply(server, f"{CMS}/a", cm("a", {"x": "2", "y": "2"}), "gatewayctl")

    assert code == 409
    assert body["message"] == ('Apply failed with 2 conflicts: conflicts with "kubectl-edit" '
                               "using v1:\n- .data.x\n- .data.y")
    assert body["details"]["causes"] == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "kubectl-edit" using v1',
         "field": f} for f in (".data.x", ".data.y")]
    assert apply(server, f"{CMS}/a", cm("a", {"x": "1"}), "gatewayctl")[0] == 200  # same value


def test_dry_run_stores_nothing(server: KubeAPIServer) -> None:
    code, body = call(server, "POST", f"{CMS}?dryRun=All", cm("a", {"k": "v"}))

    assert (code, body["data"]) == (201, {"k": "v"})
    assert server.dump().get("configmaps") is None
    assert call(server, "GET", f"{CMS}/a")[0] == 404


@pytest.mark.parametrize(("obj", "field"), [
    (cm("Bad_Name", {}), "metadata.name"),
    (cm("a", {"k": 1}), "data[k]"),
    (cm("a", {"k": "x" * (1024 * 1024 + 1)}), "[]"),
])
def test_invalid_objects_name_the_field(server: KubeAPIServer, obj: dict[str, Any],
                                        field: str) -> None:
    code, body = call(server, "POST", CMS, obj)

    assert (code, body["reason"]) == (422, "Invalid")
    assert [c["field"] for c in body["details"]["causes"]] == [field]


def test_service_and_deployment_defaults(server: KubeAPIServer) -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"ports": [{"port": 80}]}}
    _, body = call(server, "POST", f"/api/v1/namespaces/{NS}/services", svc)
    assert body["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert body["spec"]["clusterIP"].startswith("10.96.")

    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
           "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
               "metadata": {"labels": {"a": "b"}},
               "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    _, body = call(server, "POST", f"/apis/apps/v1/namespaces/{NS}/deployments", dep)
    pod = body["spec"]["template"]["spec"]
    assert pod["containers"][0]["imagePullPolicy"] == "Always"
    assert (pod["restartPolicy"], pod["dnsPolicy"], pod["schedulerName"]) == (
        "Always", "ClusterFirst", "default-scheduler")
    assert body["metadata"]["generation"] == 1


def test_token_required_when_configured() -> None:
    with KubeAPIServer(token="t") as srv:
        assert call(srv, "GET", "/api/v1/namespaces")[0] == 401
        assert call(srv, "GET", "/api/v1/namespaces", token="t")[0] == 200


def test_rbac_identity_may_only_do_what_its_rules_grant(server: KubeAPIServer) -> None:
    server.add_identity("ro", "system:serviceaccount:ci:planner",
                        [Rule(("get", "list"), ("configmaps",))])
    assert apply(server, CMS + "/a", cm("a", {"k": "v"}), "admin")[0] == 201

    listed = call(server, "GET", CMS, token="ro")
    got = call(server, "GET", f"{CMS}/a", token="ro")
    dry = call(server, "PATCH", f"{CMS}/a?fieldManager=gatewayctl&dryRun=All",
               cm("a", {"k": "w"}), "application/apply-patch+yaml", token="ro")
    other = call(server, "GET", f"/api/v1/namespaces/{NS}/secrets", token="ro")

    assert (listed[0], got[0]) == (200, 200)
    # A dry run is authorised as the write it previews (documented): 403 with a Status.
    assert dry[0] == 403
    assert dry[1] == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'configmaps "a" is forbidden: User "system:serviceaccount:ci:planner" '
                   'cannot patch resource "configmaps" in API group "" in the namespace '
                   f'"{NS}"',
        "reason": "Forbidden", "details": {"name": "a", "kind": "configmaps"}, "code": 403}
    assert other[0] == 403 and 'cannot list resource "secrets"' in other[1]["message"]
    assert server.writes("system:serviceaccount:ci:planner") == []
    assert [r.status for r in server.requests if r.user.endswith("planner")] == [
        200, 200, 403, 403]
    assert len(server.writes()) == 1  # the admin's apply


def test_fault_rules_and_request_log(server: KubeAPIServer) -> None:
    rule = server.inject(FaultRule("GET", r"/configmaps$", nth=2, status=503))
    server.inject(FaultRule("GET", r"/configmaps/drop$", close=True))

    codes = [call(server, "GET", CMS)[0] for _ in range(3)]
    with pytest.raises((http.client.RemoteDisconnected, urllib.error.URLError,
                        ConnectionError)):
        call(server, "GET", f"{CMS}/drop")

    assert codes == [200, 503, 200]
    assert (rule.seen, rule.fired) == (3, 1)
    logged = server.requests_matching("GET", r"/configmaps")
    assert [r.path for r in logged] == [CMS] * 3 + [f"{CMS}/drop"]
