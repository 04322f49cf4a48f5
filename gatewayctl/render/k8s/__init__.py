"""IR + Envoy bundle -> Kubernetes objects (plain dicts), Helm values, and manifest files.

Imports no Kubernetes client and performs no I/O except in `writer`.
"""

from gatewayctl.render.k8s.helm import render_helm_values
from gatewayctl.render.k8s.layout import EnvoyFiles
from gatewayctl.render.k8s.meta import KubernetesRenderError
from gatewayctl.render.k8s.provenance import Provenance
from gatewayctl.render.k8s.render import render_kubernetes
from gatewayctl.render.k8s.writer import dump_all, write_manifests

__all__ = [
    "EnvoyFiles",
    "KubernetesRenderError",
    "Provenance",
    "dump_all",
    "render_helm_values",
    "render_kubernetes",
    "write_manifests",
]
