"""How many Envoy pods run: the HorizontalPodAutoscaler and the PodDisruptionBudget."""

from __future__ import annotations

from typing import Any

from gatewayctl.ir import GatewayIR
from gatewayctl.render.k8s.meta import PROXY, KubeObject, metadata, selector_labels


# Scale up as fast as the HPA likes; scale down one pod a minute after five calm minutes, as
# every removed pod drains its long-running model requests first.
def hpa_behavior() -> dict[str, Any]:
    return {
        "scaleDown": {
            "policies": [{"periodSeconds": 60, "type": "Pods", "value": 1}],
            "stabilizationWindowSeconds": 300,
        },
    }


def render_hpa(ir: GatewayIR) -> KubeObject:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(ir, ir.name, PROXY),
        "spec": {
            "behavior": hpa_behavior(),
            "maxReplicas": ir.replicas_max,
            "metrics": [
                {
                    "resource": {
                        "name": "cpu",
                        "target": {"averageUtilization": ir.target_cpu, "type": "Utilization"},
                    },
                    "type": "Resource",
                }
            ],
            "minReplicas": ir.replicas_min,
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": ir.name},
        },
    }


def render_pdb(ir: GatewayIR) -> KubeObject:
    """One pod may be voluntarily evicted at a time. With replicas.min >= 2 the others keep
    serving; with 1, a node drain still proceeds (a minAvailable of 1 would block it forever).
    Pods that are not ready may always be evicted, so a broken rollout cannot wedge a drain."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(ir, ir.name, PROXY),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(ir)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
