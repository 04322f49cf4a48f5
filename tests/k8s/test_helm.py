"""The Helm chart, through Helm's Go SDK (helm-python-sdk): lint, render, validate, and the
same data plane as render_kubernetes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gatewayctl.ir import GatewayIR
from gatewayctl.render.k8s import render_helm_values, render_kubernetes
from tests.k8s.bundles import envoy_bundle
from tests.k8s.validation import validate_object

helm = pytest.importorskip("helm_python")

CHART = Path(__file__).resolve().parents[2] / "charts" / "gatewayctl-gateway"
KUBE_VERSION = "v1.30.0"
MODULE_IMAGE = "registry.example.com/gatewayctl-envoy:v1.40.0"  # docker/envoy-module.Dockerfile

# A team that deploys with Helm and lets gatewayctl manage only the config ConfigMaps.
EXISTING_CONFIG_VALUES: dict[str, Any] = {
    "gateway": {"name": "team-gateway"},
    "image": {
        "repository": "registry.example.com/mirror/envoy",
        "tag": "v1.40.0",
        "digest": "sha256:" + "ab" * 32,
    },
    "imagePullSecrets": [{"name": "registry-pull"}],
    "listener": {"port": 80},
    "autoscaling": {"enabled": False},
    "replicas": {"min": 3, "max": 3},
    "config": {"existingConfigMap": "team-gateway-routes"},
    "secrets": {
        "mounts": [
            {"name": "openai-credentials", "keys": ["api-key"]},
            {"name": "tls.partner.example.com", "keys": ["token", "token-next"]},
        ]
    },
    "serviceAccount": {"create": False, "name": "gateway-runner"},
    "podDisruptionBudget": {"maxUnavailable": "50%"},
    "podAnnotations": {"team.example.com/owner": "platform"},
    "podLabels": {"team.example.com/cost-center": "ml"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "gateway", "effect": "NoSchedule"}
    ],
    "priorityClassName": "system-cluster-critical",
    "podMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "networkPolicy": {"enabled": True, "providerPorts": [443, 8443]},
    "commonLabels": {"team.example.com/cost-center": "ml"},
    "commonAnnotations": {"team.example.com/contact": "platform@example.com"},
}


def render_chart(
    values: dict[str, Any], name: str = "gw", namespace: str = "gw"
) -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values)
        manifests = chart.render(values=values, name=name, namespace=namespace)
    return [
        doc
        for path, text in sorted(manifests.items())
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def lint(values: dict[str, Any]) -> None:
    report = helm.lint(CHART, values, strict=True, kube_version=KUBE_VERSION)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds = [o["kind"] for o in objects]
    return {o["kind"]: o for o in objects if kinds.count(o["kind"]) == 1}


@pytest.fixture(scope="module")
def gateway_values(multi_team: GatewayIR) -> dict[str, Any]:
    values = render_helm_values(multi_team, envoy_bundle(multi_team))
    return {**values, "podMonitor": {"enabled": True}}


def value_sets(gateway_values: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "defaults", {}
    yield "compiled gateway", gateway_values
    yield "existing config", EXISTING_CONFIG_VALUES


def test_chart_lints_and_renders_valid_objects(gateway_values: dict[str, Any]) -> None:
    for label, values in value_sets(gateway_values):
        lint(values)
        objects = render_chart(values)
        assert objects, label
        for obj in objects:
            validate_object(obj)
            assert obj["metadata"]["namespace"] == "gw"
            assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_default_values_reference_the_configmaps_gatewayctl_manages() -> None:
    objects = render_chart({}, name="ai-gateway")
    assert sorted(o["kind"] for o in objects) == [
        "Deployment", "HorizontalPodAutoscaler", "NetworkPolicy", "PodDisruptionBudget",
        "Service", "ServiceAccount",
    ]  # fmt: skip
    volumes = by_kind(objects)["Deployment"]["spec"]["template"]["spec"]["volumes"]
    assert volumes[:2] == [
        {"configMap": {"name": "ai-gateway-bootstrap"}, "name": "bootstrap"},
        {
            "name": "config",
            "projected": {
                "sources": [
                    {"configMap": {"name": "ai-gateway-config"}},
                    {"configMap": {"name": "ai-gateway-config-clusters", "optional": True}},
                ]
            },
        },
    ]


def test_existing_config_values_shape_the_pods() -> None:
    kinds = by_kind(render_chart(EXISTING_CONFIG_VALUES))
    deploy = kinds["Deployment"]
    spec = deploy["spec"]["template"]["spec"]
    assert deploy["spec"]["replicas"] == 3
    assert "HorizontalPodAutoscaler" not in kinds and "ServiceAccount" not in kinds
    assert spec["serviceAccountName"] == "gateway-runner"
    assert spec["containers"][0]["image"] == (
        "registry.example.com/mirror/envoy:v1.40.0@sha256:" + "ab" * 32
    )
    assert spec["securityContext"]["sysctls"] == [
        {"name": "net.ipv4.ip_unprivileged_port_start", "value": "80"}
    ]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["config"]["projected"]["sources"] == [
        {"configMap": {"name": "team-gateway-routes"}},
        {"configMap": {"name": "team-gateway-routes-clusters", "optional": True}},
    ]
    assert volumes["bootstrap"]["configMap"]["name"] == "team-gateway-bootstrap"
    dotted = [
        v for v in spec["volumes"] if v.get("secret", {}).get("secretName", "").startswith("tls.")
    ]
    assert dotted[0]["secret"]["items"] == [
        {"key": "token", "path": "token"},
        {"key": "token-next", "path": "token-next"},
    ]
    assert kinds["PodMonitor"]["spec"]["podMetricsEndpoints"] == [
        {"interval": "30s", "path": "/stats/prometheus", "port": "metrics"}
    ]
    assert kinds["Service"]["spec"]["ports"] == [
        {"appProtocol": "http", "name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}
    ]
    assert kinds["NetworkPolicy"]["spec"]["egress"][1]["ports"] == [
        {"port": 443, "protocol": "TCP"},
        {"port": 8443, "protocol": "TCP"},
    ]
    for obj in kinds.values():
        assert obj["metadata"]["labels"]["team.example.com/cost-center"] == "ml"
        assert obj["metadata"]["annotations"]["team.example.com/contact"] == (
            "platform@example.com"
        )
    assert kinds["PodDisruptionBudget"]["spec"]["maxUnavailable"] == "50%"


@pytest.mark.parametrize("filters", ["lua", "module"])
def test_the_chart_deploys_the_same_data_plane_as_render_kubernetes(
    multi_team: GatewayIR, filters: str
) -> None:
    """With Lua filters, and with the compiled module (its image and search path)."""
    if filters == "module":
        multi_team = dataclasses.replace(multi_team, data_plane_filters="module",
                                         image=MODULE_IMAGE)
    bundle = envoy_bundle(multi_team)
    rendered = render_kubernetes(multi_team, bundle)
    charted = render_chart(
        render_helm_values(multi_team, bundle), name=multi_team.name, namespace=multi_team.namespace
    )
    ours = {(o["kind"], o["metadata"]["name"]): o for o in rendered}
    theirs = {(o["kind"], o["metadata"]["name"]): o for o in charted}
    # The Envoy configuration, byte for byte.
    for name in ("ai-gateway-bootstrap", "ai-gateway-config"):
        assert theirs["ConfigMap", name]["data"] == ours["ConfigMap", name]["data"]
    # The pods, their restart checksum, and what serves and scales them.
    key = ("Deployment", "ai-gateway")
    assert theirs[key]["spec"]["template"]["spec"] == ours[key]["spec"]["template"]["spec"]
    assert (
        theirs[key]["spec"]["template"]["metadata"]["annotations"]
        == (ours[key]["spec"]["template"]["metadata"]["annotations"])
    )
    assert theirs[key]["spec"]["selector"] == ours[key]["spec"]["selector"]
    for kind in (
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "PrometheusRule",
        "NetworkPolicy",
        "PodMonitor",
    ):
        assert theirs[kind, "ai-gateway"]["spec"] == ours[kind, "ai-gateway"]["spec"], kind
    for kind in ("Service", "PodMonitor"):
        ours_meta, theirs_meta = (
            ours[kind, "ai-gateway"]["metadata"],
            theirs[kind, "ai-gateway"]["metadata"],
        )
        assert theirs_meta.get("annotations") == ours_meta.get("annotations"), kind
        for key, value in ours_meta["labels"].items():
            if key != "app.kubernetes.io/managed-by":
                assert theirs_meta["labels"][key] == value, (kind, key)
    assert ("ConfigMap", "ai-gateway-ir") not in theirs
    deployment = ours["Deployment", "ai-gateway"]
    envoy = deployment["spec"]["template"]["spec"]["containers"][0]
    if filters == "module":
        assert envoy["image"] == MODULE_IMAGE
        assert envoy["env"] == [{"name": "ENVOY_DYNAMIC_MODULES_SEARCH_PATH",
                                 "value": "/usr/local/lib/gatewayctl"}]
        validate_object(deployment)
    else:
        assert "env" not in envoy


def test_inconsistent_config_values_fail_with_a_clear_message() -> None:
    with pytest.raises(helm.HelmError, match="give all of config.bootstrap, config.lds"):
        render_chart({"config": {"lds": "{}"}})
    with pytest.raises(helm.HelmError, match="config.cdsGz and config.cdsSha256"):
        render_chart({"config": {"bootstrap": "a", "ldsGz": "AA==", "cdsGz": "AA=="}})
    with pytest.raises(helm.HelmError, match="not both"):
        render_chart(
            {"config": {"bootstrap": "a", "lds": "{}", "rds": "{}", "cds": "{}",
                        "existingConfigMap": "x"}}
        )
    with pytest.raises(helm.HelmError):
        render_chart({"replicas": {"min": 0}})


def test_the_chart_deploys_the_same_rate_limit_service_for_global_limits(
    multi_team: GatewayIR,
) -> None:
    import dataclasses

    from gatewayctl.ir import LimitsIR

    ir = dataclasses.replace(
        multi_team, limits=LimitsIR(scope="global", redis_address="redis.cache.svc:6380")
    )
    bundle = envoy_bundle(ir)
    values = render_helm_values(ir, bundle)
    lint(values)
    charted = render_chart(values, name=ir.name, namespace=ir.namespace)
    for obj in charted:
        validate_object(obj)
    ours = {(o["kind"], o["metadata"]["name"]): o for o in render_kubernetes(ir, bundle)}
    theirs = {(o["kind"], o["metadata"]["name"]): o for o in charted}
    name = "ai-gateway-ratelimit"
    assert theirs["ConfigMap", name]["data"] == ours["ConfigMap", name]["data"]
    deployment = ("Deployment", name)
    assert theirs[deployment]["spec"]["template"]["spec"] == (
        ours[deployment]["spec"]["template"]["spec"])
    assert theirs[deployment]["spec"]["selector"] == ours[deployment]["spec"]["selector"]
    for kind, obj_name in (("Service", name), ("NetworkPolicy", name),
                           ("NetworkPolicy", "ai-gateway")):
        assert theirs[kind, obj_name]["spec"] == ours[kind, obj_name]["spec"], (kind, obj_name)
    # without global limits the chart deploys none of it
    plain = render_chart(render_helm_values(multi_team, envoy_bundle(multi_team)))
    assert not [o for o in plain if o["metadata"]["name"].endswith("-ratelimit")]


def test_the_chart_deploys_the_same_cache_store_for_a_shared_cache(
    multi_team: GatewayIR,
) -> None:
    import dataclasses

    from gatewayctl.ir import CacheIR, LimitsIR

    route = multi_team.routes[0]
    cached = dataclasses.replace(route, policy=dataclasses.replace(
        route.policy, cache=CacheIR(ttl_s=600)))
    ir = dataclasses.replace(
        multi_team, limits=LimitsIR(scope="global", redis_address="redis.cache.svc:6380"),
        routes=(cached, *multi_team.routes[1:]),
        kubernetes=dataclasses.replace(
            multi_team.kubernetes, cache_store_image="registry.example:5000/gatewayctl:0.1.0"),
    )
    bundle = envoy_bundle(ir)
    values = render_helm_values(ir, bundle)
    lint(values)
    charted = render_chart(values, name=ir.name, namespace=ir.namespace)
    for obj in charted:
        validate_object(obj)
    ours = {(o["kind"], o["metadata"]["name"]): o for o in render_kubernetes(ir, bundle)}
    theirs = {(o["kind"], o["metadata"]["name"]): o for o in charted}
    name = "ai-gateway-cache-store"
    deployment = ("Deployment", name)
    assert theirs[deployment]["spec"]["template"]["spec"] == (
        ours[deployment]["spec"]["template"]["spec"])
    assert theirs[deployment]["spec"]["selector"] == ours[deployment]["spec"]["selector"]
    for kind, obj_name in (("Service", name), ("NetworkPolicy", name),
                           ("NetworkPolicy", "ai-gateway")):
        assert theirs[kind, obj_name]["spec"] == ours[kind, obj_name]["spec"], (kind, obj_name)
    # without a cache (global limits alone) the chart deploys none of it
    plain_ir = dataclasses.replace(ir, routes=multi_team.routes)
    plain = render_chart(render_helm_values(plain_ir, envoy_bundle(plain_ir)))
    assert not [o for o in plain if o["metadata"]["name"].endswith("-cache-store")]
