"""IR + Envoy bundle -> values for the `charts/gatewayctl-gateway` Helm chart.

The values carry the compiled Envoy config inline (`config.bootstrap`, and `config.lds` /
`config.cds`, or, when the plain files would not fit in one ConfigMap, `config.ldsGz` /
`config.cdsGz` (base64 of gzip) and `config.cdsSha256`: the same choice `render_kubernetes`
makes, done here because Helm cannot gzip; the chart then creates `<name>-config-clusters` too)
and everything else the chart needs to deploy the same pods `render_kubernetes` describes:
installing the chart with these values and the gateway's name as release name gives
a Deployment whose pod spec equals the rendered one. Helm's own labels differ
(`app.kubernetes.io/managed-by: Helm`), so `gatewayctl apply` never prunes a Helm release.
"""

from __future__ import annotations

from typing import Any

from gatewayctl.ir import GatewayIR, SecretRefIR
from gatewayctl.render.envoy.cache import CACHE_STORE_PORT, shared_store
from gatewayctl.render.envoy.dynamic_module import IMAGE_MODULE_DIR
from gatewayctl.render.envoy.global_limits import RATELIMIT_GRPC_PORT
from gatewayctl.render.k8s.alerts import render_prometheus_groups
from gatewayctl.render.k8s.cachestore import REPLICAS as CACHE_STORE_REPLICAS
from gatewayctl.render.k8s.configmaps import CDS_SHA256_KEY, PACKED_SUFFIX, config_entries
from gatewayctl.render.k8s.layout import EnvoyFiles, read_layout
from gatewayctl.render.k8s.meta import check_gateway_name
from gatewayctl.render.k8s.ratelimit import RATELIMIT_IMAGE, REPLICAS
from gatewayctl.render.k8s.unpack import POLL_SECONDS, UNPACK_RESOURCES
from gatewayctl.render.k8s.workload import (
    CONCURRENCY,
    DRAIN_SECONDS,
    TERMINATION_GRACE_SECONDS,
    container_resources,
)
from gatewayctl.render.ratelimit_config import dump_ratelimit_config, render_ratelimit_config

_VALUE_NAMES = {CDS_SHA256_KEY: "cdsSha256"}


def split_image(image: str) -> dict[str, str]:
    """`registry:5000/repo:tag@sha256:...` -> repository, tag and digest (each may be '')."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return {"digest": digest, "repository": name[:colon], "tag": name[colon + 1 :]}
    return {"digest": digest, "repository": name, "tag": ""}


def render_helm_values(ir: GatewayIR, envoy: EnvoyFiles) -> dict[str, Any]:
    check_gateway_name(ir)
    layout = read_layout(ir, envoy)
    groups = render_prometheus_groups(ir)
    config = {"bootstrap": layout.bootstrap, "dir": layout.config_dir}
    entries = config_entries(layout)
    for part in (entries.config, entries.clusters or {}):
        for name, text in part.get("data", {}).items():
            config[_VALUE_NAMES.get(name) or name.removesuffix(".json")] = text
        for name, packed in part.get("binaryData", {}).items():
            config[name.removesuffix(".json" + PACKED_SUFFIX) + "Gz"] = packed
    k8s = ir.kubernetes
    values: dict[str, Any] = {
        "admin": {"address": layout.admin_address, "port": layout.admin_port},
        "config": dict(sorted(config.items())),
        "configUnpack": {
            "pollSeconds": POLL_SECONDS,
            "resources": {k: dict(v) for k, v in UNPACK_RESOURCES.items()},
        },
        "envoy": {
            "concurrency": CONCURRENCY,
            "drainSeconds": DRAIN_SECONDS,
            "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
            **({"moduleSearchPath": IMAGE_MODULE_DIR} if ir.data_plane_filters == "module"
               else {}),
        },
        "gateway": {"name": ir.name},
        "image": {**split_image(ir.image), "pullPolicy": "IfNotPresent"},
        "listener": {"containerPort": layout.listener_port, "port": ir.listener_port},
        "prometheusRule": {"enabled": bool(groups), "groups": groups},
        "replicas": {
            "max": ir.replicas_max,
            "min": ir.replicas_min,
            "targetCPUUtilization": ir.target_cpu,
        },
        "resources": container_resources(ir),
        "secrets": {
            "dir": layout.secrets_dir,
            "mounts": [{"keys": list(m.keys), "name": m.name} for m in layout.secrets],
        },
        # Gateway.spec.kubernetes, as the chart's own values
        "affinity": dict(k8s.affinity),
        "commonAnnotations": dict(k8s.annotations),
        "commonLabels": dict(k8s.labels),
        "networkPolicy": {
            "enabled": k8s.network_policy,
            "providerPorts": sorted({p.port for p in ir.providers}),
        },
        "nodeSelector": dict(k8s.node_selector),
        "podMonitor": {
            "enabled": k8s.pod_monitor,
            "interval": k8s.pod_monitor_interval,
            "labels": dict(k8s.pod_monitor_labels),
        },
        "priorityClassName": k8s.priority_class_name or "",
        "service": {"annotations": dict(k8s.service_annotations), "type": k8s.service_type},
        "tolerations": [dict(t) for t in k8s.tolerations],
    }
    if layout.stats_port is not None:
        values["stats"] = {"port": layout.stats_port}
    values["rateLimit"] = _rate_limit_values(ir)
    values["cacheStore"] = _cache_store_values(ir)
    values["redis"] = _redis_values(ir)
    return dict(sorted(values.items()))


def _redis_values(ir: GatewayIR) -> dict[str, Any]:
    """The chart's `redis` block: Secret names and keys only, never a value."""
    limits = ir.limits

    def ref(secret: SecretRefIR | None) -> dict[str, str]:
        return {"key": secret.key, "name": secret.name} if secret else {"key": "", "name": ""}

    return {
        "caSecretRef": ref(limits.redis_ca),
        "passwordSecretRef": ref(limits.redis_password),
        "tls": limits.redis_tls,
        "username": limits.redis_username or "",
    }


def _cache_store_values(ir: GatewayIR) -> dict[str, Any]:
    if not shared_store(ir):
        return {"enabled": False}
    redis = ir.limits.redis_address or ""
    return {
        "enabled": True,
        "image": {**split_image(ir.kubernetes.cache_store_image), "pullPolicy": "IfNotPresent"},
        "port": CACHE_STORE_PORT,
        "redisPort": int(redis.rpartition(":")[2]),
        "redisUrl": redis,
        "replicas": CACHE_STORE_REPLICAS,
    }


def _rate_limit_values(ir: GatewayIR) -> dict[str, Any]:
    config = render_ratelimit_config(ir)
    if config is None:
        return {"enabled": False}
    redis = ir.limits.redis_address or ""
    return {
        "config": dump_ratelimit_config(config),
        "enabled": True,
        "grpcPort": RATELIMIT_GRPC_PORT,
        "image": {**split_image(RATELIMIT_IMAGE), "pullPolicy": "IfNotPresent"},
        "redisPort": int(redis.rpartition(":")[2]),
        "redisUrl": redis,
        "replicas": REPLICAS,
    }
