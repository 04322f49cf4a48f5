"""The response cache's shared store on Kubernetes (global limits scope with a cache).

Two objects when the gateway's cache routes share their store (render/envoy/cache.py
shared_store; none otherwise):

- Deployment `<gateway>-cache-store`: `gatewayctl cache-store` (local/cachestore/) from
  gatewayctl's own image (Dockerfile at the project's top; Gateway.spec.kubernetes.
  cacheStoreImage), two replicas (it keeps no state: the entries are in the user's Redis at
  LimitsIR.redis_address, under the gateway's own prefix, reached with its AUTH and TLS
  settings: redis_access.py), HTTP/1.1 on CACHE_STORE_PORT,
  probes on `/healthz`.
- Service `<gateway>-cache-store`: that port, which the gateway's Envoys reach (cluster
  gatewayctl_cache_store).

The NetworkPolicies (network.py) let the gateway's pods reach this service and this service
reach DNS and Redis.
"""

from __future__ import annotations

from gatewayctl.ir import GatewayIR
from gatewayctl.render.envoy.cache import CACHE_STORE_PORT, cache_store_service, shared_store
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

CACHE_STORE = "cache-store"
REPLICAS = 2
UID = 10001  # the image's own user (Dockerfile)


def cache_store_name(ir: GatewayIR) -> str:
    return cache_store_service(ir)


def cache_store_selector(ir: GatewayIR) -> dict[str, str]:
    """The service's pods: the gateway's labels with component `cache-store`."""
    return {NAME_LABEL: APP_NAME, INSTANCE_LABEL: ir.name, COMPONENT_LABEL: CACHE_STORE}


def cache_store_command(ir: GatewayIR) -> list[str]:
    return ["gatewayctl", "cache-store", "--gateway", ir.name,
            "--redis", ir.limits.redis_address or "", "--host", "0.0.0.0",
            "--port", str(CACHE_STORE_PORT)]


def _deployment(ir: GatewayIR) -> KubeObject:
    security = container_security(UID)

    def probe(period_s: int, failures: int) -> dict[str, object]:
        return {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": period_s,
            "timeoutSeconds": 2,
            "failureThreshold": failures,
        }

    container = {
        "name": CACHE_STORE,
        "image": ir.kubernetes.cache_store_image,
        "imagePullPolicy": "IfNotPresent",
        "command": cache_store_command(ir),
        "ports": [{"containerPort": CACHE_STORE_PORT, "name": "http", "protocol": "TCP"}],
        "readinessProbe": probe(5, 3),
        "livenessProbe": probe(10, 6),
        # an entry (up to maxEntryBytes, 64 MiB at most) passes through memory once per call
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"memory": "512Mi"},
        },
        "securityContext": security,
    }
    env, mounts = redis_env(ir.limits), redis_mounts(ir.limits)
    if env:
        container["env"] = env
    if mounts:
        container["volumeMounts"] = mounts
    return side_deployment(ir, cache_store_name(ir), CACHE_STORE, cache_store_selector(ir),
                           REPLICAS, container, redis_volumes(ir.limits))


def render_cache_store_objects(ir: GatewayIR) -> list[KubeObject]:
    """Deployment, Service (apply order); none unless the cache's stores are shared."""
    if not shared_store(ir):
        return []
    service: KubeObject = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(ir, cache_store_name(ir), CACHE_STORE),
        "spec": {
            "type": "ClusterIP",
            "selector": cache_store_selector(ir),
            "ports": [
                {
                    "name": "http",
                    "port": CACHE_STORE_PORT,
                    "targetPort": "http",
                    "protocol": "TCP",
                    "appProtocol": "http",
                }
            ],
        },
    }
    return [_deployment(ir), service]
