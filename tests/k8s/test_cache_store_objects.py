"""The response cache's shared store on Kubernetes (global limits with a cache): the cache store
service's Deployment and Service from gatewayctl's own image, the NetworkPolicies that let the
gateway reach it and it reach Redis; valid for `kubernetes-validate --strict`."""

from __future__ import annotations

import dataclasses

from gatewayctl.ir import CacheIR, GatewayIR, KubernetesIR, LimitsIR
from gatewayctl.render.envoy.cache import CACHE_STORE_CLUSTER, cache_store_address
from gatewayctl.render.envoy.options import EnvoyOptions
from gatewayctl.render.k8s import render_kubernetes
from tests.k8s.bundles import envoy_bundle
from tests.k8s.validation import validate_object

GLOBAL = LimitsIR(scope="global", redis_address="redis.cache.svc:6380")


def with_cache(ir: GatewayIR) -> GatewayIR:
    route = ir.routes[0]
    policy = dataclasses.replace(route.policy, cache=CacheIR(ttl_s=600))
    return dataclasses.replace(
        ir, routes=(dataclasses.replace(route, policy=policy), *ir.routes[1:]))


def by_kind_name(objects: list[dict]) -> dict[tuple[str, str], dict]:  # type: ignore[type-arg]
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def test_global_scope_with_a_cache_renders_the_store_service(multi_team: GatewayIR) -> None:
    ir = dataclasses.replace(
        with_cache(multi_team), limits=GLOBAL,
        kubernetes=dataclasses.replace(multi_team.kubernetes,
                                       cache_store_image="registry.example/gatewayctl:0.1.0"),
    )
    objects = render_kubernetes(ir, envoy_bundle(ir))
    for obj in objects:
        validate_object(obj)
    found = by_kind_name(objects)
    name = "ai-gateway-cache-store"
    deployment = found[("Deployment", name)]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example/gatewayctl:0.1.0"
    assert container["command"] == [
        "gatewayctl", "cache-store", "--gateway", "ai-gateway", "--redis",
        "redis.cache.svc:6380", "--host", "0.0.0.0", "--port", "8090"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    service = found[("Service", name)]
    pods = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pods.items()
    assert service["spec"]["ports"][0]["port"] == 8090
    # Envoy's cluster names exactly this Service
    host, port = cache_store_address(ir, EnvoyOptions())
    assert (host, port) == (f"{name}.ai-gateway.svc.cluster.local", 8090)
    gateway_selector = found[("Service", "ai-gateway")]["spec"]["selector"]
    assert not gateway_selector.items() <= pods.items()
    egress = found[("NetworkPolicy", "ai-gateway")]["spec"]["egress"]
    assert {"ports": [{"port": 8090, "protocol": "TCP"}],
            "to": [{"podSelector": {"matchLabels": service["spec"]["selector"]}}]} in egress
    own = found[("NetworkPolicy", name)]["spec"]
    assert own["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == gateway_selector
    assert own["ingress"][0]["ports"] == [{"port": 8090, "protocol": "TCP"}]
    assert {"ports": [{"port": 6380, "protocol": "TCP"}]} in own["egress"]


def test_no_store_service_without_a_cache_or_in_replica_scope(multi_team: GatewayIR) -> None:
    for ir in (dataclasses.replace(multi_team, limits=GLOBAL), with_cache(multi_team)):
        objects = render_kubernetes(ir, envoy_bundle(ir))
        assert not [o for o in objects if o["metadata"]["name"].endswith("-cache-store")]
        assert CACHE_STORE_CLUSTER not in envoy_bundle(ir).contents["cds.json"]


def test_the_image_default_is_the_projects_own(multi_team: GatewayIR) -> None:
    from gatewayctl import __version__

    assert KubernetesIR().cache_store_image == f"gatewayctl:{__version__}"
    assert multi_team.kubernetes.cache_store_image == f"gatewayctl:{__version__}"
