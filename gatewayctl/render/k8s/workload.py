"""The Envoy Deployment: container, probes, mounts, security, spreading and graceful drain.

Checksum policy: the pod template carries `gatewayctl.dev/restart-checksum`, a hash of only
what Envoy cannot pick up while running: the bootstrap text and the set of mounted secrets and
keys. The hot-reloaded LDS/CDS files and the IR are left out on purpose, so a change of routes,
weights, prompts or policies leaves the Deployment byte-identical and no pod restarts. Nothing
in the Deployment may depend on them (not even the drain time, which is why it is a constant
rather than derived from route timeouts). Secret *values* rotate in place through kubelet's
volume updates and never appear here.

Envoy watches an emptyDir, not the ConfigMaps: an init container and a sidecar (`unpack.py`)
publish the files of the `config` volume (`<gateway>-config` and, when packed,
`<gateway>-config-clusters`, projected into one directory) into it, unpacking them when they are
gzipped. The pod spec is the same whether the config is plain or packed.

Nothing here knows the Helm chart; the chart mirrors these choices, and a test holds the two pod
specs equal.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from gatewayctl.ir import GatewayIR
from gatewayctl.render.envoy.dynamic_module import IMAGE_MODULE_DIR, SEARCH_PATH_ENV
from gatewayctl.render.envoy.probes import LIVE_PATH, METRICS_PATH, READY_PATH
from gatewayctl.render.k8s.layout import (
    BOOTSTRAP_DIR,
    BOOTSTRAP_PATH,
    EnvoyLayout,
    SecretMount,
)
from gatewayctl.render.k8s.meta import (
    PROXY,
    RESTART_CHECKSUM,
    KubeObject,
    bootstrap_configmap_name,
    config_clusters_configmap_name,
    config_configmap_name,
    labels,
    metadata,
    selector_labels,
)
from gatewayctl.render.k8s.unpack import (
    CONFIG_DIR_SIZE,
    INIT_CONTAINER,
    SIDECAR_CONTAINER,
    unpack_container,
)

ENVOY_UID = 101  # the `envoy` user of the envoyproxy/envoy images
# Requests are what the HPA's CPU target is measured against; the CPU limit matches the
# worker-thread count so Envoy is not throttled below its own concurrency.
CONCURRENCY = 2
RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "500m", "memory": "256Mi"},
    "limits": {"cpu": "2", "memory": "1Gi"},
}
# Seconds a terminating pod keeps serving in-flight requests after it stopped taking new
# connections; the grace period adds room for Envoy's own exit.
DRAIN_SECONDS = 60
TERMINATION_GRACE_SECONDS = DRAIN_SECONDS + 15
TMP_SIZE = "64Mi"
SECRET_FILE_MODE = 0o440  # group-readable: the pod's fsGroup owns the files

_VOLUME_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def restart_checksum(layout: EnvoyLayout) -> str:
    """SHA-256 over the bootstrap text and the mounted secrets' names and keys.

    The text hashed is line-based so that the Helm chart computes the same value.
    """
    lines = [f"bootstrap.yaml sha256:{hashlib.sha256(layout.bootstrap.encode()).hexdigest()}"]
    lines += [f"secret {m.name} {','.join(m.keys)}" for m in layout.secrets]
    return hashlib.sha256(("\n".join(lines) + "\n").encode()).hexdigest()


def secret_volume_name(secret: str) -> str:
    """`secret-<name>` where that is a valid volume name, else a shortened, hashed form."""
    name = f"secret-{secret}"
    if len(name) <= 63 and _VOLUME_NAME.match(name):
        return name
    digest = hashlib.sha256(secret.encode()).hexdigest()[:10]
    stem = re.sub(r"[^-a-z0-9]+", "-", secret)[:40].strip("-")
    return f"secret-{stem}-{digest}" if stem else f"secret-{digest}"


def drain_command(layout: EnvoyLayout) -> list[str]:
    """preStop: through the admin API on loopback, fail the readiness check (the listener's
    /healthz/ready answers 503 from then on) and start Envoy's graceful listener drain, then
    keep serving in-flight requests. bash's /dev/tcp needs no HTTP client in the image."""
    host = "127.0.0.1" if layout.admin_address in ("0.0.0.0", "::", "") else layout.admin_address

    def post(path: str) -> str:
        request = (
            f"POST {path} HTTP/1.1\\r\\nHost: localhost\\r\\n"
            "Content-Length: 0\\r\\nConnection: close\\r\\n\\r\\n"
        )
        # The subshell keeps a refused connection from skipping what follows.
        return (
            f"(exec 3<>/dev/tcp/{host}/{layout.admin_port} && printf '{request}' >&3"
            f" && timeout 5 cat <&3 >/dev/null) || true"
        )

    script = (
        f"{post('/healthcheck/fail')}; {post('/drain_listeners?graceful')}; sleep {DRAIN_SECONDS}"
    )
    return ["bash", "-c", script]


def _probe(period: int, failures: int, path: str, port: str) -> dict[str, Any]:
    return {
        "failureThreshold": failures,
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 2,
    }


def probes(layout: EnvoyLayout) -> dict[str, dict[str, Any]]:
    """Readiness: the gateway listener itself answers (a rejected listener never does).
    Liveness and start-up: the stats listener, which is static (render/envoy/probes.py); a
    bundle without one falls back to the listener for those too."""
    live_port = "metrics" if layout.stats_port is not None else "http"
    live_path = LIVE_PATH if layout.stats_port is not None else READY_PATH
    return {
        "livenessProbe": _probe(10, 6, live_path, live_port),
        "readinessProbe": _probe(5, 3, READY_PATH, "http"),
        "startupProbe": _probe(2, 60, live_path, live_port),
    }


def container_ports(layout: EnvoyLayout) -> list[dict[str, Any]]:
    ports = [{"containerPort": layout.listener_port, "name": "http", "protocol": "TCP"}]
    if layout.stats_port is not None:
        ports.append({"containerPort": layout.stats_port, "name": "metrics", "protocol": "TCP"})
    return ports


def container_resources(ir: GatewayIR) -> dict[str, dict[str, str]]:
    chosen = ir.kubernetes.resources
    if chosen is None:
        return {k: dict(v) for k, v in RESOURCES.items()}
    return {k: dict(v) for k, v in chosen.items() if v}


def _secret_volume(mount: SecretMount) -> dict[str, Any]:
    return {
        "name": secret_volume_name(mount.name),
        "secret": {
            "defaultMode": SECRET_FILE_MODE,
            "items": [{"key": key, "path": key} for key in mount.keys],
            "optional": False,
            "secretName": mount.name,
        },
    }


def _volumes(ir: GatewayIR, layout: EnvoyLayout) -> list[dict[str, Any]]:
    return [
        {"configMap": {"name": bootstrap_configmap_name(ir)}, "name": "bootstrap"},
        {"name": "config", "projected": {"sources": config_sources(ir)}},
        {"emptyDir": {"sizeLimit": CONFIG_DIR_SIZE}, "name": "envoy-config"},
        {"emptyDir": {"sizeLimit": TMP_SIZE}, "name": "tmp"},
        *(_secret_volume(m) for m in layout.secrets),
    ]


def config_sources(ir: GatewayIR) -> list[dict[str, Any]]:
    """The `config` volume: `<gateway>-config`, and `<gateway>-config-clusters`, which exists
    only while the config is packed (hence optional). The same volume whatever the size, so a
    config crossing the size limit in either direction changes no pod; kubelet updates a
    projected volume with one atomic `..data` swap, like a ConfigMap volume."""
    return [
        {"configMap": {"name": config_configmap_name(ir)}},
        {"configMap": {"name": config_clusters_configmap_name(ir), "optional": True}},
    ]


def _volume_mounts(layout: EnvoyLayout) -> list[dict[str, Any]]:
    return [
        {"mountPath": BOOTSTRAP_DIR, "name": "bootstrap", "readOnly": True},
        {"mountPath": layout.config_dir, "name": "envoy-config", "readOnly": True},
        {"mountPath": "/tmp", "name": "tmp"},
        *(
            {
                "mountPath": f"{layout.secrets_dir}/{m.name}",
                "name": secret_volume_name(m.name),
                "readOnly": True,
            }
            for m in layout.secrets
        ),
    ]


def envoy_args() -> list[str]:
    return [
        "-c", BOOTSTRAP_PATH,
        "--reject-unknown-dynamic-fields",
        "--drain-time-s", str(DRAIN_SECONDS),
        "--drain-strategy", "immediate",
        "--concurrency", str(CONCURRENCY),
        "--disable-hot-restart",
    ]  # fmt: skip


def container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsGroup": ENVOY_UID,
        "runAsNonRoot": True,
        "runAsUser": ENVOY_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def module_env(ir: GatewayIR) -> dict[str, Any]:
    """Envoy's module search path, for a gateway whose filters are the compiled module (the
    image built from docker/envoy-module.Dockerfile keeps it there)."""
    if ir.data_plane_filters != "module":
        return {}
    return {"env": [{"name": SEARCH_PATH_ENV, "value": IMAGE_MODULE_DIR}]}


def _container(ir: GatewayIR, layout: EnvoyLayout) -> dict[str, Any]:
    return {
        "args": envoy_args(),
        "command": ["envoy"],
        **module_env(ir),
        "image": ir.image,
        "imagePullPolicy": "IfNotPresent",
        "lifecycle": {"preStop": {"exec": {"command": drain_command(layout)}}},
        **probes(layout),
        "name": "envoy",
        "ports": container_ports(layout),
        "resources": container_resources(ir),
        "securityContext": container_security(),
        "volumeMounts": _volume_mounts(layout),
    }


def _pod_security(layout: EnvoyLayout) -> dict[str, Any]:
    security: dict[str, Any] = {
        "fsGroup": ENVOY_UID,
        "runAsGroup": ENVOY_UID,
        "runAsNonRoot": True,
        "runAsUser": ENVOY_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    bound = [layout.listener_port, layout.admin_port]
    if layout.stats_port is not None:
        bound.append(layout.stats_port)
    if min(bound) < 1024:
        # A non-root Envoy may bind a low port only when the pod lowers this (namespaced,
        # "safe") sysctl; no capability is needed.
        low = min(bound)
        security["sysctls"] = [{"name": "net.ipv4.ip_unprivileged_port_start", "value": str(low)}]
    return security


def _spread(ir: GatewayIR) -> list[dict[str, Any]]:
    return [
        {
            "labelSelector": {"matchLabels": selector_labels(ir)},
            "matchLabelKeys": ["pod-template-hash"],
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
        }
        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
    ]


def placement(ir: GatewayIR) -> dict[str, Any]:
    """Gateway.spec.kubernetes: nodeSelector, tolerations, affinity, priorityClassName."""
    k8s = ir.kubernetes
    out: dict[str, Any] = {}
    if k8s.affinity:
        out["affinity"] = k8s.affinity
    if k8s.node_selector:
        out["nodeSelector"] = dict(k8s.node_selector)
    if k8s.priority_class_name:
        out["priorityClassName"] = k8s.priority_class_name
    if k8s.tolerations:
        out["tolerations"] = [dict(t) for t in k8s.tolerations]
    return out


def render_pod_spec(ir: GatewayIR, layout: EnvoyLayout) -> dict[str, Any]:
    return {
        **placement(ir),
        "automountServiceAccountToken": False,
        "containers": [
            _container(ir, layout),
            unpack_container(
                SIDECAR_CONTAINER, "watch", ir.image, layout.config_dir, container_security()
            ),
        ],
        "enableServiceLinks": False,
        "initContainers": [
            unpack_container(
                INIT_CONTAINER, "once", ir.image, layout.config_dir, container_security()
            ),
        ],
        "securityContext": _pod_security(layout),
        "serviceAccountName": ir.name,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "topologySpreadConstraints": _spread(ir),
        "volumes": _volumes(ir, layout),
    }


def pod_annotations(ir: GatewayIR, layout: EnvoyLayout) -> dict[str, str]:
    out = {**ir.kubernetes.annotations, RESTART_CHECKSUM: restart_checksum(layout)}
    if layout.stats_port is not None:
        out |= {
            "prometheus.io/path": METRICS_PATH,
            "prometheus.io/port": str(layout.stats_port),
            "prometheus.io/scrape": "true",
        }
    return dict(sorted(out.items()))


def render_deployment(ir: GatewayIR, layout: EnvoyLayout) -> KubeObject:
    # No spec.replicas: the HorizontalPodAutoscaler owns the count, and an apply that set it
    # would fight the autoscaler on every change.
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(ir, ir.name, PROXY),
        "spec": {
            "minReadySeconds": 5,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector_labels(ir)},
            "strategy": {
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
                "type": "RollingUpdate",
            },
            "template": {
                "metadata": {
                    "annotations": pod_annotations(ir, layout),
                    "labels": labels(ir, PROXY),
                },
                "spec": render_pod_spec(ir, layout),
            },
        },
    }
