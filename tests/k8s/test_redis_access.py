"""The user's Redis with AUTH and TLS (Gateway.spec.limits.redis) on Kubernetes: the rate
limit service and the cache store take the password from its Secret through secretKeyRef
(never the value), an ACL user through $(REDIS_PASSWORD), TLS and the CA bundle as the
official service reads them; the same from the Helm chart; all valid for
`kubernetes-validate --strict`."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from gatewayctl.ir import CacheIR, GatewayIR, LimitsIR, SecretRefIR
from gatewayctl.render.k8s import render_helm_values, render_kubernetes
from tests.k8s.bundles import envoy_bundle
from tests.k8s.validation import validate_object

PASSWORD = SecretRefIR("redis-auth", "password")
CA = SecretRefIR("redis-ca", "ca.pem")
SERVICES = ("ai-gateway-ratelimit", "ai-gateway-cache-store")


def with_redis(ir: GatewayIR, **redis: Any) -> GatewayIR:
    route = ir.routes[0]
    cached = dataclasses.replace(route, policy=dataclasses.replace(
        route.policy, cache=CacheIR(ttl_s=600)))
    limits = LimitsIR(scope="global", redis_address="redis.example.com:6380", **redis)
    return dataclasses.replace(ir, limits=limits, routes=(cached, *ir.routes[1:]))


def containers(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    return {name: found[name]["spec"]["template"]["spec"] for name in SERVICES}


def redis_env(pod: dict[str, Any]) -> list[dict[str, Any]]:
    [container] = pod["containers"]
    return [e for e in container.get("env", []) if e["name"].startswith("REDIS_")
            and e["name"] not in ("REDIS_URL", "REDIS_SOCKET_TYPE")]


def test_a_password_comes_from_its_secret(multi_team: GatewayIR) -> None:
    ir = with_redis(multi_team, redis_password=PASSWORD)
    objects = render_kubernetes(ir, envoy_bundle(ir))
    for obj in objects:
        validate_object(obj)
    for name, pod in containers(objects).items():
        assert redis_env(pod) == [{"name": "REDIS_AUTH", "valueFrom": {
            "secretKeyRef": {"name": "redis-auth", "key": "password"}}}], name
        assert "volumes" not in pod or all(v["name"] != "redis-ca" for v in pod["volumes"])


def test_an_acl_user_refers_to_the_password_variable_defined_before(
        multi_team: GatewayIR) -> None:
    ir = with_redis(multi_team, redis_password=PASSWORD, redis_username="gateway")
    objects = render_kubernetes(ir, envoy_bundle(ir))
    for obj in objects:
        validate_object(obj)
    for name, pod in containers(objects).items():
        env = redis_env(pod)
        assert env == [
            {"name": "REDIS_PASSWORD",
             "valueFrom": {"secretKeyRef": {"name": "redis-auth", "key": "password"}}},
            {"name": "REDIS_AUTH", "value": "gateway:$(REDIS_PASSWORD)"},
        ], name


def test_tls_with_a_ca_bundle_mounts_only_that_key(multi_team: GatewayIR) -> None:
    ir = with_redis(multi_team, redis_password=PASSWORD, redis_tls=True, redis_ca=CA)
    objects = render_kubernetes(ir, envoy_bundle(ir))
    for obj in objects:
        validate_object(obj)
    for name, pod in containers(objects).items():
        env = {e["name"]: e.get("value") for e in redis_env(pod)}
        assert env["REDIS_TLS"] == "true", name
        [container] = pod["containers"]
        [mount] = [m for m in container["volumeMounts"] if m["name"] == "redis-ca"]
        assert env["REDIS_TLS_CACERT"] == mount["mountPath"] + "/ca.crt"
        assert mount["readOnly"] is True
        [volume] = [v for v in pod["volumes"] if v["name"] == "redis-ca"]
        assert volume["secret"] == {"secretName": "redis-ca",
                                    "items": [{"key": "ca.pem", "path": "ca.crt"}]}


def test_tls_without_a_ca_uses_the_system_cas(multi_team: GatewayIR) -> None:
    ir = with_redis(multi_team, redis_tls=True)
    for name, pod in containers(render_kubernetes(ir, envoy_bundle(ir))).items():
        assert redis_env(pod) == [{"name": "REDIS_TLS", "value": "true"}], name


def test_no_auth_and_no_tls_add_nothing(multi_team: GatewayIR) -> None:
    ir = with_redis(multi_team)
    for name, pod in containers(render_kubernetes(ir, envoy_bundle(ir))).items():
        assert redis_env(pod) == [], name


helm = pytest.importorskip("helm_python")


@pytest.mark.parametrize("redis", [
    {"redis_password": PASSWORD},
    {"redis_password": PASSWORD, "redis_username": "gateway", "redis_tls": True,
     "redis_ca": CA},
    {"redis_tls": True},
], ids=["password", "acl-user-tls-ca", "tls"])
def test_the_chart_reaches_redis_the_same_way(multi_team: GatewayIR,
                                              redis: dict[str, Any]) -> None:
    from tests.k8s.test_helm import lint, render_chart

    ir = with_redis(multi_team, **redis)
    bundle = envoy_bundle(ir)
    values = render_helm_values(ir, bundle)
    expected = redis.get("redis_password")
    assert values["redis"]["passwordSecretRef"] == (
        {"name": expected.name, "key": expected.key} if expected else {"name": "", "key": ""})
    lint(values)
    charted = render_chart(values, name=ir.name, namespace=ir.namespace)
    for obj in charted:
        validate_object(obj)
    assert containers(charted) == containers(render_kubernetes(ir, bundle))


def test_the_chart_refuses_a_username_without_a_password() -> None:
    from tests.k8s.test_helm import render_chart

    values = {"rateLimit": {"enabled": True, "redisUrl": "redis:6379"},
              "redis": {"username": "gateway"}}
    with pytest.raises(helm.HelmError, match="redis.username needs redis.passwordSecretRef"):
        render_chart(values)
    values = {"cacheStore": {"enabled": True, "redisUrl": "redis:6379"},
              "redis": {"caSecretRef": {"name": "ca", "key": "ca.crt"}}}
    with pytest.raises(helm.HelmError, match="only used with redis.tls: true"):
        render_chart(values)
