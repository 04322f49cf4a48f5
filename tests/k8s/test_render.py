"""render_kubernetes: objects, labels, mounts, the restart-checksum policy, limits."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from gatewayctl.compile import compile_gateway
from gatewayctl.ir import ConsumerIR, GatewayIR, SecretRefIR, from_json, to_json
from gatewayctl.manifests.credentials import find_credential
from gatewayctl.manifests.manifest_set import load_manifest_set
from gatewayctl.render.k8s import (
    KubernetesRenderError,
    Provenance,
    dump_all,
    render_kubernetes,
)
from gatewayctl.render.k8s.workload import secret_volume_name
from gatewayctl.render.k8s.writer import dump_object
from gatewayctl.targets.records import ir_of_objects
from tests.k8s.bundles import FilesBundle, envoy_bundle
from tests.k8s.conftest import ROOT
from tests.k8s.validation import validate_object

Objects = dict[tuple[str, str], dict[str, Any]]


def render(ir: GatewayIR, source: Provenance | None = None, **options: Any) -> list[dict[str, Any]]:
    return render_kubernetes(ir, envoy_bundle(ir, **options), source)


def index(objects: list[dict[str, Any]]) -> Objects:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == "Deployment")


def pod_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment(objects)["spec"]["template"]["spec"]
    return spec


def checksum(objects: list[dict[str, Any]]) -> str:
    annotations = deployment(objects)["spec"]["template"]["metadata"]["annotations"]
    return str(annotations["gatewayctl.dev/restart-checksum"])


def with_route_weights(ir: GatewayIR, route: str, weights: tuple[int, ...]) -> GatewayIR:
    routes = []
    for r in ir.routes:
        if r.name == route:
            backends = tuple(
                dataclasses.replace(b, weight=w) for b, w in zip(r.backends, weights, strict=True)
            )
            r = dataclasses.replace(r, backends=backends)
        routes.append(r)
    return dataclasses.replace(ir, routes=tuple(routes))


def test_objects_come_in_dependency_order(multi_team: GatewayIR) -> None:
    objects = render(multi_team)
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("ServiceAccount", "ai-gateway"),
        ("ConfigMap", "ai-gateway-bootstrap"),
        ("ConfigMap", "ai-gateway-config"),
        ("ConfigMap", "ai-gateway-ir"),
        ("Service", "ai-gateway"),
        ("Deployment", "ai-gateway"),
        ("PodDisruptionBudget", "ai-gateway"),
        ("HorizontalPodAutoscaler", "ai-gateway"),
        ("NetworkPolicy", "ai-gateway"),
        ("PodMonitor", "ai-gateway"),
        ("PrometheusRule", "ai-gateway"),
    ]


@pytest.mark.parametrize("example", ["multi-team", "quickstart"])
def test_every_object_passes_strict_validation(example: str, request: Any) -> None:
    ir = request.getfixturevalue(example.replace("-", "_"))
    for obj in render(ir, Provenance(commit="0" * 40, ref="main")):
        validate_object(obj)


def test_low_listener_port_validates_and_lowers_the_unprivileged_port_start(
    multi_team: GatewayIR,
) -> None:
    objects = render(dataclasses.replace(multi_team, listener_port=80))
    for obj in objects:
        validate_object(obj)
    assert pod_spec(objects)["securityContext"]["sysctls"] == [
        {"name": "net.ipv4.ip_unprivileged_port_start", "value": "80"}
    ]
    assert "sysctls" not in pod_spec(render(multi_team))["securityContext"]


def test_every_object_is_labelled_and_namespaced(multi_team: GatewayIR) -> None:
    for obj in render(multi_team):
        meta = obj["metadata"]
        assert meta["namespace"] == "ai-gateway"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "gatewayctl"
        assert meta["labels"]["gatewayctl.dev/gateway"] == "ai-gateway"
        assert meta["labels"]["app.kubernetes.io/name"] == "gatewayctl-gateway"
        assert meta["labels"]["app.kubernetes.io/instance"] == "ai-gateway"
        assert meta["labels"]["app.kubernetes.io/component"] in ("proxy", "config", "monitoring")


def test_selectors_agree_with_the_pod_labels(multi_team: GatewayIR) -> None:
    objects = index(render(multi_team))
    deploy = objects["Deployment", "ai-gateway"]
    selector = deploy["spec"]["selector"]["matchLabels"]
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    assert objects["Service", "ai-gateway"]["spec"]["selector"] == selector
    assert objects["PodDisruptionBudget", "ai-gateway"]["spec"]["selector"]["matchLabels"] == (
        selector
    )
    for spread in deploy["spec"]["template"]["spec"]["topologySpreadConstraints"]:
        assert spread["labelSelector"]["matchLabels"] == selector
    target = objects["HorizontalPodAutoscaler", "ai-gateway"]["spec"]["scaleTargetRef"]
    assert target == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ai-gateway"}
    assert deploy["spec"]["template"]["spec"]["serviceAccountName"] == "ai-gateway"


def test_pods_mount_what_the_envoy_config_reads(multi_team: GatewayIR) -> None:
    spec = pod_spec(render(multi_team))
    container = spec["containers"][0]
    assert container["args"][:2] == ["-c", "/etc/envoy/bootstrap/bootstrap.yaml"]
    assert "--reject-unknown-dynamic-fields" in container["args"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    # Envoy watches the emptyDir the unpacker fills, never the ConfigMap volume itself.
    assert mounts["envoy-config"] == {
        "mountPath": "/etc/envoy/config", "name": "envoy-config", "readOnly": True,
    }  # fmt: skip
    assert "config" not in mounts
    assert mounts["bootstrap"]["mountPath"] == "/etc/envoy/bootstrap"
    assert mounts["tmp"]["mountPath"] == "/tmp"
    volumes = {v["name"]: v for v in spec["volumes"]}
    # <gateway>-config-clusters exists only while packed; the volume is the same either way.
    assert volumes["config"] == {
        "name": "config",
        "projected": {
            "sources": [
                {"configMap": {"name": "ai-gateway-config"}},
                {"configMap": {"name": "ai-gateway-config-clusters", "optional": True}},
            ]
        },
    }
    assert volumes["envoy-config"] == {"emptyDir": {"sizeLimit": "256Mi"}, "name": "envoy-config"}
    [init] = spec["initContainers"]
    sidecar = spec["containers"][1]
    assert (init["name"], sidecar["name"]) == ("config-unpack", "config-sync")
    for unpacker, args in ((init, ["once"]), (sidecar, ["watch"])):
        assert unpacker["image"] == container["image"]
        assert unpacker["command"][:2] == ["sh", "-c"]
        assert unpacker["command"][3:7] == [
            "config-unpack", *args, "/etc/gatewayctl/configmap", "/etc/envoy/config",
        ]  # fmt: skip
        assert unpacker["volumeMounts"] == [
            {"mountPath": "/etc/gatewayctl/configmap", "name": "config", "readOnly": True},
            {"mountPath": "/etc/envoy/config", "name": "envoy-config"},
        ]
        assert unpacker["securityContext"] == container["securityContext"]
        assert unpacker["resources"]["requests"] == {"cpu": "10m", "memory": "16Mi"}
    assert sidecar["command"][7:] == ["2"]  # seconds between looks at the ConfigMap volume
    assert volumes["bootstrap"]["configMap"]["name"] == "ai-gateway-bootstrap"
    # Admin listens on the pod's loopback: no port; Prometheus and liveness use the stats
    # listener, readiness the gateway listener itself.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080, "metrics": 9902}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz/ready", "port": "http"}
    for probe in ("livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz/live", "port": "metrics"}


def test_the_layout_follows_the_envoy_options(multi_team: GatewayIR) -> None:
    objects = render(
        multi_team,
        config_dir="/srv/envoy",
        secrets_dir="/run/gw-secrets",
        admin_port=9000,
        stats_port=9100,
        listener_port=10080,
    )
    container = pod_spec(objects)["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["envoy-config"] == "/srv/envoy"
    for unpacker in (pod_spec(objects)["initContainers"][0], pod_spec(objects)["containers"][1]):
        assert unpacker["command"][6] == "/srv/envoy"
        assert unpacker["volumeMounts"][1]["mountPath"] == "/srv/envoy"
    assert mounts["secret-openai-credentials"] == "/run/gw-secrets/openai-credentials"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": 10080,
        "metrics": 9100,
    }
    assert "/dev/tcp/127.0.0.1/9000" in container["lifecycle"]["preStop"]["exec"]["command"][2]
    service = index(objects)["Service", "ai-gateway"]["spec"]["ports"]
    assert [(p["name"], p["port"], p["targetPort"]) for p in service] == [("http", 8080, "http")]
    policy = index(objects)["NetworkPolicy", "ai-gateway"]["spec"]
    assert policy["ingress"] == [
        {"ports": [{"port": 10080, "protocol": "TCP"}, {"port": 9100, "protocol": "TCP"}]}
    ]


def test_secrets_are_mounted_read_only_with_only_their_referenced_keys(
    multi_team: GatewayIR,
) -> None:
    # Two references to one Secret with different keys become one volume with both keys.
    anthropic = dataclasses.replace(
        multi_team.provider("anthropic"),
        credential=SecretRefIR("openai-credentials", "anthropic-key"),
    )
    ir = dataclasses.replace(
        multi_team,
        providers=tuple(anthropic if p.name == "anthropic" else p for p in multi_team.providers),
    )
    spec = pod_spec(render(ir))
    secrets = {v["secret"]["secretName"]: v for v in spec["volumes"] if "secret" in v}
    assert sorted(secrets) == ["helpdesk-key", "openai-credentials", "search-app-key"]
    assert secrets["openai-credentials"]["secret"]["items"] == [
        {"key": "anthropic-key", "path": "anthropic-key"},
        {"key": "api-key", "path": "api-key"},
    ]
    assert secrets["helpdesk-key"]["secret"]["items"] == [{"key": "key", "path": "key"}]
    for volume in secrets.values():
        assert volume["secret"]["defaultMode"] == 0o440
        assert volume["secret"]["optional"] is False
    mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
    for name, volume in secrets.items():
        mount = mounts[volume["name"]]
        assert mount["readOnly"] is True
        assert mount["mountPath"] == f"/etc/gatewayctl/secrets/{name}"
    assert all(m.get("readOnly") for m in mounts.values() if m["name"] != "tmp")


def test_no_secret_is_copied(tmp_path: Path) -> None:
    # A checkout with local secret files (what `gatewayctl up` reads): none of it may leak.
    root = tmp_path / "root"
    shutil.copytree(ROOT / "examples" / "multi-team", root)
    key = "sk-live-" + "Q7wX2" * 8
    (root / ".secrets" / "openai-credentials").mkdir(parents=True)
    (root / ".secrets" / "openai-credentials" / "api-key").write_text(key)
    manifests, _ = load_manifest_set(root)
    ir = compile_gateway(manifests)
    objects = render(ir)
    assert not [o for o in objects if o["kind"] in ("Secret", "SealedSecret")]
    ir_configmap = index(objects)["ConfigMap", "ai-gateway-ir"]
    texts = [dump_all(objects), to_json(ir_of_objects([ir_configmap], "ai-gateway"))]
    for text in texts:
        assert key not in text
        assert find_credential(text) is None
    volumes = pod_spec(objects)["volumes"]
    assert {"key": "api-key", "path": "api-key"} in next(
        v["secret"]["items"] for v in volumes if v["name"] == "secret-openai-credentials"
    )


def test_weight_change_changes_only_the_hot_reloaded_config(multi_team: GatewayIR) -> None:
    before = index(render(multi_team))
    after = index(render(with_route_weights(multi_team, "chat", (50, 50))))
    assert before["ConfigMap", "ai-gateway-config"] != after["ConfigMap", "ai-gateway-config"]
    assert before["ConfigMap", "ai-gateway-ir"] != after["ConfigMap", "ai-gateway-ir"]
    for key in [
        ("Deployment", "ai-gateway"),
        ("ConfigMap", "ai-gateway-bootstrap"),
        ("Service", "ai-gateway"),
        ("HorizontalPodAutoscaler", "ai-gateway"),
        ("PodDisruptionBudget", "ai-gateway"),
        ("ServiceAccount", "ai-gateway"),
    ]:
        assert dump_object(before[key]) == dump_object(after[key]), key


def test_source_annotations_change_only_the_config_and_ir(multi_team: GatewayIR) -> None:
    plain = index(render(multi_team))
    sourced = index(render(multi_team, Provenance(commit="abc123", pipeline_url="https://p/1")))
    for key in plain:
        if key in (("ConfigMap", "ai-gateway-config"), ("ConfigMap", "ai-gateway-ir")):
            annotations = sourced[key]["metadata"]["annotations"]
            assert annotations["gatewayctl.dev/source-commit"] == "abc123"
            assert annotations["gatewayctl.dev/source-pipeline"] == "https://p/1"
        else:
            assert dump_object(plain[key]) == dump_object(sourced[key]), key


def test_bootstrap_change_rolls_the_pods(multi_team: GatewayIR) -> None:
    base = render(multi_team)
    renamed = render(multi_team, node_id="gateway-node")
    assert checksum(renamed) != checksum(base)
    assert pod_spec(renamed) == pod_spec(base)  # only the checksum moved
    assert checksum(render(multi_team, admin_port=9000)) != checksum(base)


def test_listener_port_change_changes_the_pod_template(multi_team: GatewayIR) -> None:
    base = render(multi_team)
    moved = render(dataclasses.replace(multi_team, listener_port=9090))
    assert pod_spec(moved)["containers"][0]["ports"][0]["containerPort"] == 9090
    assert pod_spec(moved) != pod_spec(base)


def test_a_new_secret_or_key_changes_the_checksum(multi_team: GatewayIR) -> None:
    base = checksum(render(multi_team))
    newcomer = ConsumerIR("batch", "search", SecretRefIR("batch-key", "key"), None)
    added = dataclasses.replace(multi_team, consumers=(*multi_team.consumers, newcomer))
    assert checksum(render(added)) != base
    rekeyed = dataclasses.replace(
        multi_team,
        consumers=tuple(
            dataclasses.replace(c, api_key=SecretRefIR(c.api_key.name, "key-v2"))
            if c.name == "helpdesk"
            else c
            for c in multi_team.consumers
        ),
    )
    assert checksum(render(rekeyed)) != base


def test_rendering_is_deterministic(multi_team: GatewayIR) -> None:
    source = Provenance(commit="c0ffee", ref="main")
    first = dump_all(render(multi_team, source))
    second = dump_all(render(from_json(to_json(multi_team)), source))
    assert first == second


def test_hpa_and_pdb_follow_the_ir(multi_team: GatewayIR) -> None:
    ir = dataclasses.replace(multi_team, replicas_min=3, replicas_max=7, target_cpu=55)
    objects = index(render(ir))
    hpa = objects["HorizontalPodAutoscaler", "ai-gateway"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 7)
    assert hpa["metrics"][0]["resource"]["target"] == {
        "averageUtilization": 55,
        "type": "Utilization",
    }
    assert objects["PodDisruptionBudget", "ai-gateway"]["spec"]["maxUnavailable"] == 1
    # The HPA owns the replica count.
    assert "replicas" not in objects["Deployment", "ai-gateway"]["spec"]


def test_the_ir_configmap_carries_the_ir_and_its_hash(multi_team: GatewayIR) -> None:
    objects = index(render(multi_team))
    cm = objects["ConfigMap", "ai-gateway-ir"]
    assert ir_of_objects([cm], "ai-gateway") == multi_team
    canonical = to_json(multi_team, indent=None).encode()
    assert cm["metadata"]["annotations"]["gatewayctl.dev/ir-sha256"] == (
        hashlib.sha256(canonical).hexdigest()
    )
    config = objects["ConfigMap", "ai-gateway-config"]
    assert sorted(config["data"]) == ["cds.json", "lds.json", "rds.json"]
    assert (
        config["metadata"]["annotations"]["gatewayctl.dev/ir-sha256"]
        == (cm["metadata"]["annotations"]["gatewayctl.dev/ir-sha256"])
    )


def test_an_object_over_one_mebibyte_even_packed_is_refused(multi_team: GatewayIR) -> None:
    bundle = envoy_bundle(multi_team)
    lds = json.loads(bundle.files()["lds.json"])
    # Incompressible: gzip cannot bring it under the limit.
    lds["padding"] = base64.b64encode(random.Random(0).randbytes(1100 * 1024)).decode()
    with pytest.raises(KubernetesRenderError) as err:
        render_kubernetes(multi_team, bundle.replace("lds.json", json.dumps(lds)))
    assert err.value.message.startswith("ConfigMap ai-gateway/ai-gateway-config would hold 1")
    assert "KiB of data, over Kubernetes' 1024 KiB ConfigMap limit (lds.json.gz 1" in (
        err.value.message
    )
    assert err.value.hint


def test_a_gateway_name_that_cannot_name_a_service_is_refused(multi_team: GatewayIR) -> None:
    with pytest.raises(KubernetesRenderError, match="cannot name a Kubernetes Service"):
        render(dataclasses.replace(multi_team, name="1st-gateway"))


def test_a_bootstrap_without_watched_files_is_refused(multi_team: GatewayIR) -> None:
    bundle = envoy_bundle(multi_team)
    bootstrap = "admin: {address: {socket_address: {address: 0.0.0.0, port_value: 9901}}}\n"
    with pytest.raises(KubernetesRenderError, match="does not read lds_config from a watched"):
        render_kubernetes(multi_team, bundle.replace("bootstrap.yaml", bootstrap))
    with pytest.raises(KubernetesRenderError, match="lacks cds.json"):
        render_kubernetes(multi_team, FilesBundle({"bootstrap.yaml": "", "lds.json": "{}"}))


def test_secret_volume_names_are_valid_and_stable() -> None:
    assert secret_volume_name("openai-credentials") == "secret-openai-credentials"
    for name in ("tls.example.com", "x" * 80, "..."):
        volume = secret_volume_name(name)
        assert len(volume) <= 63
        assert volume == secret_volume_name(name)
        assert volume.replace("-", "").isalnum() and volume.islower()
    assert secret_volume_name("a.b") != secret_volume_name("a-b")


def test_a_configmap_just_under_the_limit_is_accepted(multi_team: GatewayIR) -> None:
    bundle = envoy_bundle(multi_team)
    files = bundle.files()
    others = len(files["cds.json"].encode()) + len(files["rds.json"].encode())
    room = 1024 * 1024 - len(files["lds.json"].encode()) - others
    lds = files["lds.json"].rstrip("\n")
    padded = lds[:-1] + ',"padding":"' + "x" * (room - 16) + '"}'
    assert len(padded.encode()) + others <= 1024 * 1024
    objects = render_kubernetes(multi_team, bundle.replace("lds.json", padded))
    assert index(objects)["ConfigMap", "ai-gateway-config"]["data"]["lds.json"] == padded


def test_a_generated_forty_route_gateway_fits_and_validates(tmp_path: Path) -> None:
    from benchmarks.corpus import generate

    manifests, _ = load_manifest_set(generate(40, tmp_path / "root"))
    ir = compile_gateway(manifests)
    objects = render(ir)
    for obj in objects:
        validate_object(obj)
    mounts = pod_spec(objects)["volumes"]
    assert len([v for v in mounts if "secret" in v]) == len(
        {p.credential.name for p in ir.providers if p.credential}
        | {c.api_key.name for c in ir.consumers}
    )
