"""Global limits on Kubernetes: Envoy's own rate limit service beside the gateway.

Three objects when LimitsIR.scope is "global" (none otherwise):

- ConfigMap `<gateway>-ratelimit`: `config.yaml`, the service's configuration in its own
  format (render/ratelimit_config.py), mounted where the service reads it
  (RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/config). RUNTIME_WATCH_ROOT=false makes the service
  notice kubelet's `..data` swap, so a changed limit reaches it without a restart.
- Deployment `<gateway>-ratelimit`: `envoyproxy/ratelimit` (RATELIMIT_IMAGE, pinned by
  tag and digest), two replicas (it keeps no state of its own: the counts are in the user's
  Redis at LimitsIR.redis_address, reached with its AUTH and TLS settings: redis_access.py),
  gRPC on 8081, health on 8080 (`/healthcheck`).
- Service `<gateway>-ratelimit`: the gRPC port, which the gateway's Envoys reach
  (render/envoy/global_limits.py).

The NetworkPolicies (network.py) let the gateway's pods reach this service and this service
reach DNS and Redis.
"""

from __future__ import annotations

from typing import Any

from gatewayctl.ir import GatewayIR
from gatewayctl.render.envoy.global_limits import RATELIMIT_GRPC_PORT
from gatewayctl.render.k8s.meta import (
    APP_NAME,
    COMPONENT_LABEL,
    INSTANCE_LABEL,
    NAME_LABEL,
    KubeObject,
    container_security,
    metadata,
    side_deployment,
)
from gatewayctl.render.k8s.redis_access import redis_env, redis_mounts, redis_volumes
from gatewayctl.render.ratelimit_config import (
    CONFIG_FILE,
    dump_ratelimit_config,
    render_ratelimit_config,
)

# envoyproxy/ratelimit publishes commit-named tags only; the digest pins the exact image.
# 05c08d03 is the service Envoy Gateway v1.7 ships (2026); it reads per-descriptor hits_addend
# (envoyproxy/ratelimit#802, 2024-12), 0 included, which the token and budget charges need.
RATELIMIT_IMAGE = (
    "docker.io/envoyproxy/ratelimit:05c08d03"
    "@sha256:bf9447467c659cffac57c7b7064fbd584ad9c1afcc983ba1a90816e603f18900"
)
RATELIMIT = "ratelimit"
HEALTH_PORT = 8080
RUNTIME_ROOT = "/data"
RUNTIME_SUBDIRECTORY = "ratelimit"
REPLICAS = 2
UID = 65532  # any non-root user: the service writes nothing


def ratelimit_name(ir: GatewayIR) -> str:
    return f"{ir.name}-ratelimit"


def ratelimit_selector(ir: GatewayIR) -> dict[str, str]:
    """The service's pods: the gateway's labels with component `ratelimit`, so the gateway's
    own selector (component `proxy`) never matches them."""
    return {NAME_LABEL: APP_NAME, INSTANCE_LABEL: ir.name, COMPONENT_LABEL: RATELIMIT}


def _env(ir: GatewayIR) -> list[dict[str, Any]]:
    values = {
        "GRPC_PORT": str(RATELIMIT_GRPC_PORT),
        "PORT": str(HEALTH_PORT),
        "LOG_LEVEL": "warn",
        "REDIS_SOCKET_TYPE": "tcp",
        "REDIS_URL": ir.limits.redis_address or "",
        "RUNTIME_ROOT": RUNTIME_ROOT,
        "RUNTIME_SUBDIRECTORY": RUNTIME_SUBDIRECTORY,
        "RUNTIME_IGNOREDOTFILES": "true",
        "RUNTIME_WATCH_ROOT": "false",
        "USE_STATSD": "false",
    }
    plain: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(values.items())]
    return plain + redis_env(ir.limits)


def _deployment(ir: GatewayIR) -> KubeObject:
    security = container_security(UID)
    probe = {
        "httpGet": {"path": "/healthcheck", "port": "health"},
        "periodSeconds": 5,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }
    container = {
        "name": RATELIMIT,
        "image": RATELIMIT_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/ratelimit"],
        "env": _env(ir),
        "ports": [
            {"containerPort": RATELIMIT_GRPC_PORT, "name": "grpc", "protocol": "TCP"},
            {"containerPort": HEALTH_PORT, "name": "health", "protocol": "TCP"},
        ],
        "readinessProbe": probe,
        "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 6},
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"memory": "256Mi"},
        },
        "securityContext": security,
        "volumeMounts": [
            {
                "name": "config",
                "mountPath": f"{RUNTIME_ROOT}/{RUNTIME_SUBDIRECTORY}/config",
                "readOnly": True,
            },
            *redis_mounts(ir.limits),
        ],
    }
    return side_deployment(ir, ratelimit_name(ir), RATELIMIT, ratelimit_selector(ir), REPLICAS,
                           container,
                           [{"name": "config", "configMap": {"name": ratelimit_name(ir)}},
                            *redis_volumes(ir.limits)])


def render_ratelimit_objects(ir: GatewayIR) -> list[KubeObject]:
    """ConfigMap, Deployment, Service (apply order); none in replica scope."""
    config = render_ratelimit_config(ir)
    if config is None:
        return []
    configmap: KubeObject = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(ir, ratelimit_name(ir), RATELIMIT),
        "data": {CONFIG_FILE: dump_ratelimit_config(config)},
    }
    service: KubeObject = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(ir, ratelimit_name(ir), RATELIMIT),
        "spec": {
            "type": "ClusterIP",
            "selector": ratelimit_selector(ir),
            "ports": [
                {
                    "name": "grpc",
                    "port": RATELIMIT_GRPC_PORT,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    "appProtocol": "grpc",
                }
            ],
        },
    }
    return [configmap, _deployment(ir), service]
