"""IR + Envoy bundle -> the gateway's Kubernetes objects, as plain dicts in apply order.

Pure: no I/O, no clock, no randomness; the same input gives the same objects. Secrets are only
referenced (volumes), never copied; nothing of a secret but its name and keys appears here.
"""

from __future__ import annotations

from gatewayctl.ir import GatewayIR
from gatewayctl.render.k8s.alerts import render_prometheus_rule
from gatewayctl.render.k8s.cachestore import render_cache_store_objects
from gatewayctl.render.k8s.configmaps import (
    check_size,
    ir_json,
    render_bootstrap_configmap,
    render_config_configmaps,
    render_ir_configmap,
)
from gatewayctl.render.k8s.layout import EnvoyFiles, read_layout
from gatewayctl.render.k8s.meta import KubeObject, check_gateway_name
from gatewayctl.render.k8s.network import (
    render_cache_store_network_policy,
    render_network_policy,
    render_pod_monitor,
    render_ratelimit_network_policy,
)
from gatewayctl.render.k8s.provenance import Provenance
from gatewayctl.render.k8s.ratelimit import render_ratelimit_objects
from gatewayctl.render.k8s.scaling import render_hpa, render_pdb
from gatewayctl.render.k8s.service import render_service, render_service_account
from gatewayctl.render.k8s.workload import render_deployment


def render_kubernetes(
    ir: GatewayIR, envoy: EnvoyFiles, provenance: Provenance | None = None
) -> list[KubeObject]:
    """Every object of the gateway, in dependency order: ServiceAccount, ConfigMaps (bootstrap,
    config-clusters when packed, config, ir), Service, Deployment, PodDisruptionBudget,
    HorizontalPodAutoscaler, with global limits the rate limit service (ConfigMap, Deployment,
    Service), the NetworkPolicies (unless switched off), the PodMonitor (when asked for), then
    the PrometheusRule when budgets, rollouts or global limits ask for one.

    Raises KubernetesRenderError when the gateway's name cannot name the objects, when the
    Envoy bundle is not laid out for a ConfigMap mount, or when an object would exceed a size limit.
    """
    check_gateway_name(ir)
    layout = read_layout(ir, envoy)
    provenance = provenance or Provenance()
    ir_text = ir_json(ir)
    objects = [
        render_service_account(ir),
        render_bootstrap_configmap(ir, layout),
        *render_config_configmaps(ir, layout, provenance, ir_text),
        render_ir_configmap(ir, provenance, ir_text),
        render_service(ir, layout),
        render_deployment(ir, layout),
        render_pdb(ir),
        render_hpa(ir),
        *render_ratelimit_objects(ir),
        *render_cache_store_objects(ir),
    ]
    for extra in (
        render_network_policy(ir, layout),
        render_ratelimit_network_policy(ir),
        render_cache_store_network_policy(ir),
        render_pod_monitor(ir, layout),
        render_prometheus_rule(ir),
    ):
        if extra is not None:
            objects.append(extra)
    for obj in objects:
        check_size(obj)
    return objects
