"""Global limits on Kubernetes: the rate limit service's ConfigMap, Deployment and Service,
the NetworkPolicies that let the gateway reach it and it reach Redis, and the alert; all valid
for `kubernetes-validate --strict`."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from gatewayctl.ir import GatewayIR, LimitsIR
from gatewayctl.render.k8s import render_kubernetes
from gatewayctl.render.ratelimit_config import render_ratelimit_config
from tests.k8s.bundles import envoy_bundle
from tests.k8s.validation import validate_object


@pytest.fixture
def global_team(multi_team: GatewayIR) -> GatewayIR:
    consumers = tuple(dataclasses.replace(c, budget_enforce=c.budget_usd_per_month is not None)
                      for c in multi_team.consumers)
    return dataclasses.replace(
        multi_team,
        limits=LimitsIR(scope="global", redis_address="redis.cache.svc:6380"),
        consumers=consumers,
    )


def by_kind_name(objects: list[dict]) -> dict[tuple[str, str], dict]:  # type: ignore[type-arg]
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def test_global_limits_render_the_rate_limit_service(global_team: GatewayIR) -> None:
    objects = render_kubernetes(global_team, envoy_bundle(global_team))
    for obj in objects:
        validate_object(obj)
    found = by_kind_name(objects)
    config = found[("ConfigMap", "ai-gateway-ratelimit")]
    assert yaml.safe_load(config["data"]["config.yaml"]) == render_ratelimit_config(global_team)
    deployment = found[("Deployment", "ai-gateway-ratelimit")]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert "@sha256:" in container["image"] and ":05c08d03@" in container["image"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["REDIS_URL"] == "redis.cache.svc:6380"
    assert env["RUNTIME_WATCH_ROOT"] == "false"
    mount = container["volumeMounts"][0]["mountPath"]
    assert mount == f"{env['RUNTIME_ROOT']}/{env['RUNTIME_SUBDIRECTORY']}/config"
    service = found[("Service", "ai-gateway-ratelimit")]
    pods = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pods.items()
    # the gateway's own Service and Deployment do not select the rate limit pods
    gateway_selector = found[("Service", "ai-gateway")]["spec"]["selector"]
    assert not gateway_selector.items() <= pods.items()
    # the gateway's pods may reach the service; its pods only take gRPC from the gateway
    egress = found[("NetworkPolicy", "ai-gateway")]["spec"]["egress"]
    assert {"ports": [{"port": 8081, "protocol": "TCP"}],
            "to": [{"podSelector": {"matchLabels": service["spec"]["selector"]}}]} in egress
    own = found[("NetworkPolicy", "ai-gateway-ratelimit")]["spec"]
    assert own["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == gateway_selector
    assert {"ports": [{"port": 6380, "protocol": "TCP"}]} in own["egress"]
    groups = {g["name"] for g in found[("PrometheusRule", "ai-gateway")]["spec"]["groups"]}
    assert "gatewayctl.ai-gateway.limits" in groups


def test_replica_scope_renders_no_rate_limit_service(multi_team: GatewayIR) -> None:
    objects = render_kubernetes(multi_team, envoy_bundle(multi_team))
    assert not [o for o in objects if o["metadata"]["name"].endswith("-ratelimit")]
    egress = by_kind_name(objects)[("NetworkPolicy", "ai-gateway")]["spec"]["egress"]
    assert all("to" not in rule for rule in egress)
