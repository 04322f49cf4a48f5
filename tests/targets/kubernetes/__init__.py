"""The Kubernetes target's client, run for real against tests.fakes.kubeapi over HTTP."""

from __future__ import annotations

import copy
from typing import Any

NAMESPACE = "ai-gateway"
GATEWAY = "ai-gateway"
LABELS = {"app.kubernetes.io/managed-by": "gatewayctl", "gatewayctl.dev/gateway": GATEWAY}


def _meta(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": NAMESPACE, "labels": dict(LABELS), **extra}


def gateway_objects() -> list[dict[str, Any]]:
    """A gateway's objects as the renderer would produce them, deliberately out of order."""
    pod_labels = {"app.kubernetes.io/name": "envoy", "gatewayctl.dev/gateway": GATEWAY}
    objects: list[dict[str, Any]] = [
        {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
         "metadata": _meta("ai-gateway"),
         "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": "ai-gateway"},
                  "minReplicas": 2, "maxReplicas": 10,
                  "metrics": [{"type": "Resource", "resource": {
                      "name": "cpu",
                      "target": {"type": "Utilization", "averageUtilization": 70}}}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta("ai-gateway"),
         "spec": {"selector": pod_labels,
                  "ports": [{"name": "http", "port": 8080}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta("ai-gateway"),
         "spec": {
             "replicas": 2,
             "selector": {"matchLabels": pod_labels},
             "template": {
                 "metadata": {"labels": pod_labels},
                 "spec": {
                     "containers": [{
                         "name": "envoy", "image": "envoyproxy/envoy:v1.40.0",
                         "args": ["-c", "/etc/envoy/envoy.yaml"],
                         "ports": [{"name": "http", "containerPort": 8080}],
                         "volumeMounts": [{"name": "config", "mountPath": "/etc/envoy"}],
                     }],
                     "volumes": [{"name": "config",
                                  "configMap": {"name": "ai-gateway-envoy"}}],
                 },
             },
         }},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("ai-gateway-envoy"),
         "data": {"envoy.yaml": "static_resources: {}\n"}},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
         "metadata": _meta("ai-gateway"),
         "spec": {"minAvailable": 1, "selector": {"matchLabels": pod_labels}}},
    ]
    return copy.deepcopy(objects)


APPLY_ORDER = [
    "ConfigMap ai-gateway/ai-gateway-envoy",
    "Deployment ai-gateway/ai-gateway",
    "Service ai-gateway/ai-gateway",
    "PodDisruptionBudget ai-gateway/ai-gateway",
    "HorizontalPodAutoscaler ai-gateway/ai-gateway",
]
