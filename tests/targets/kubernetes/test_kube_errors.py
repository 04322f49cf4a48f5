"""Every failure reaches callers once, as a typed error keeping the server's message."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayctl.errors import GatewayctlError
from gatewayctl.render.k8s.objects import strip_server_fields
from gatewayctl.targets.kubernetes.api import KubeClient
from gatewayctl.targets.kubernetes.errors import (
    KubeConfigError,
    KubeForbidden,
    KubeInvalid,
    KubeNotFound,
    KubeUnauthorized,
    KubeUnreachable,
    error_from_status,
)
from gatewayctl.targets.kubernetes.options import KubeOptions
from tests.fakes.kubeapi import KubeAPIServer
from tests.targets.kubernetes import NAMESPACE, gateway_objects

DEPLOYER = "system:serviceaccount:ci:deployer"


@pytest.fixture
def server() -> Iterator[KubeAPIServer]:
    with KubeAPIServer(namespaces=(NAMESPACE,), token="s3cret", user=DEPLOYER) as srv:
        yield srv


def _client(server: KubeAPIServer, tmp_path: Path, token: str | None = "s3cret") -> KubeClient:
    path = server.write_kubeconfig(tmp_path / "kubeconfig", token=token)
    return KubeClient(KubeOptions(kubeconfig=str(path), request_timeout=10, retries=1,
                                 backoff=0.01))


def test_forbidden_names_verb_and_resource(server: KubeAPIServer, tmp_path: Path) -> None:
    server.deny("patch", "configmaps")

    with _client(server, tmp_path) as kube, pytest.raises(KubeForbidden) as caught:
        kube.apply_objects(gateway_objects())

    err = caught.value
    assert (err.verb, err.resource, err.api_group, err.namespace, err.user) == (
        "patch", "configmaps", "", NAMESPACE, DEPLOYER)
    assert err.message == (
        "dry-run apply ConfigMap ai-gateway/ai-gateway-envoy: forbidden: "
        f'"{DEPLOYER}" may not patch configmaps in namespace "ai-gateway": '
        f'configmaps "ai-gateway-envoy" is forbidden: User "{DEPLOYER}" cannot patch resource '
        '"configmaps" in API group "" in the namespace "ai-gateway"')
    assert err.hint == (f'grant RBAC verb "patch" on resource "configmaps" (apiGroup "") '
                        f'in namespace "ai-gateway" to "{DEPLOYER}"')


def test_missing_token_is_unauthorized(server: KubeAPIServer, tmp_path: Path) -> None:
    with _client(server, tmp_path, token=None) as kube, \
            pytest.raises(KubeUnauthorized) as caught:
        kube.read_managed("ai-gateway", NAMESPACE)

    assert caught.value.code == 401
    assert "rejected the credentials (401 Unauthorized): Unauthorized" in caught.value.message
    assert len(server.requests) == 1  # a 401 is not retried


def test_missing_namespace_is_not_found(server: KubeAPIServer, tmp_path: Path) -> None:
    objects = gateway_objects()
    for o in objects:
        o["metadata"]["namespace"] = "nowhere"

    with _client(server, tmp_path) as kube, pytest.raises(KubeNotFound) as caught:
        kube.dry_run_apply(objects)

    assert caught.value.kind == "namespaces"
    assert caught.value.name == "nowhere"
    assert caught.value.message.endswith('not found: namespaces "nowhere" not found')


def test_unreachable_server(tmp_path: Path) -> None:
    stopped = KubeAPIServer().start()
    url = stopped.url
    path = stopped.write_kubeconfig(tmp_path / "kubeconfig")
    stopped.stop()  # nothing listens on that port any more
    kube = KubeClient(KubeOptions(kubeconfig=str(path), request_timeout=0.5, retries=1,
                                 backoff=0.01))

    with pytest.raises(KubeUnreachable) as caught:
        kube.read_managed("ai-gateway", NAMESPACE)

    assert caught.value.message.startswith(
        f"list serviceaccounts in ai-gateway: cannot reach the Kubernetes API server at {url}")
    assert caught.value.message.endswith("(after 2 attempts)")
    assert isinstance(caught.value, GatewayctlError)


def test_missing_kubeconfig_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError) as caught:
        KubeClient(KubeOptions(kubeconfig=str(tmp_path / "absent")))

    assert str(tmp_path / "absent") in caught.value.message


def test_status_422_lists_every_field() -> None:
    status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 422,
              "reason": "Invalid", "message": 'ConfigMap "x" is invalid: [data[a]: ..., []: ...]',
              "details": {"causes": [{"field": "data[a]"}, {"field": "[]"}]}}

    err = error_from_status(422, status, "", "apply ConfigMap ai-gateway/x")

    assert isinstance(err, KubeInvalid)
    assert err.fields == ("data[a]", "[]")
    assert err.message == ('apply ConfigMap ai-gateway/x: rejected as invalid: '
                           'ConfigMap "x" is invalid: [data[a]: ..., []: ...]')


def test_strip_server_fields_removes_server_bookkeeping_only() -> None:
    obj = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "s", "namespace": "n", "uid": "u", "resourceVersion": "7",
                        "generation": 2, "creationTimestamp": "2030-01-01T00:00:00Z",
                        "managedFields": [{}], "labels": {"a": "b"},
                        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}",
                                        "keep": "me"}},
           "spec": {"clusterIP": "10.96.0.11", "clusterIPs": ["10.96.0.11"], "ports": []},
           "status": {"loadBalancer": {}}}

    stripped = strip_server_fields(obj)

    assert stripped == {"apiVersion": "v1", "kind": "Service",
                        "metadata": {"name": "s", "namespace": "n", "labels": {"a": "b"},
                                     "annotations": {"keep": "me"}},
                        "spec": {"ports": []}}
    assert obj["metadata"]["uid"] == "u"  # the input is left alone
