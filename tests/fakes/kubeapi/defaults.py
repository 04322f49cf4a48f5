"""Defaulting and validation the real API server applies to the kinds served here.

Pure functions over plain object dicts; the store decides when to call them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from .resources import ResourceType

Cause = tuple[str, str, str]  # (reason, field, message)

_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
CONFIGMAP_MAX_BYTES = 1024 * 1024

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)


def _required(field: str) -> Cause:
    return ("FieldValueRequired", field, "Required value")


def _invalid(field: str, value: Any, detail: str) -> Cause:
    return ("FieldValueInvalid", field, f"Invalid value: {json.dumps(value)}: {detail}")


def validate(rt: ResourceType, obj: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not name:
        causes.append(_required("metadata.name"))
    else:
        pattern, msg, limit = _DNS1123_SUBDOMAIN, SUBDOMAIN_MSG, 253
        if rt.kind == "Namespace":
            pattern, msg, limit = _DNS1123_LABEL, LABEL_MSG, 63
        elif rt.kind == "Service":
            pattern, msg, limit = _DNS1035_LABEL, DNS1035_MSG, 63
        if not isinstance(name, str) or not pattern.match(name):
            causes.append(_invalid("metadata.name", name, msg))
        elif len(name) > limit:
            causes.append(("FieldValueTooLong", "metadata.name",
                           f"Too long: must have at most {limit} bytes"))
    for section in ("labels", "annotations"):
        values = meta.get(section) or {}
        for k, v in values.items():
            if not isinstance(v, str):
                causes.append(_invalid(f"metadata.{section}", v, "must be a string"))
                break
            _ = k
    check = _VALIDATORS.get(rt.kind)
    if check:
        causes.extend(check(obj))
    return causes


def _validate_configmap(obj: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    size = 0
    for section in ("data", "binaryData"):
        values = obj.get(section) or {}
        if not isinstance(values, dict):
            causes.append(_invalid(section, values, "must be a map of strings"))
            continue
        for key, value in values.items():
            if not _CONFIG_KEY.match(key):
                causes.append(_invalid(f"{section}[{key}]", key,
                                       "a valid config key must consist of alphanumeric "
                                       "characters, '-', '_' or '.'"))
            if not isinstance(value, str):
                causes.append(_invalid(f"{section}[{key}]", value, "must be a string"))
                continue
            size += len(key) + len(value.encode())
    if size > CONFIGMAP_MAX_BYTES:
        causes.append(("FieldValueTooLong", "[]",
                       f"Too long: must have at most {CONFIGMAP_MAX_BYTES} bytes"))
    return causes


def _validate_deployment(obj: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    spec = obj.get("spec") or {}
    selector = spec.get("selector")
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not selector:
        causes.append(_required("spec.selector"))
    else:
        match = selector.get("matchLabels") or {}
        if any(labels.get(k) != v for k, v in match.items()):
            causes.append(_invalid("spec.template.metadata.labels", labels,
                                   "`selector` does not match template `labels`"))
    containers = (template.get("spec") or {}).get("containers") or []
    if not containers:
        causes.append(_required("spec.template.spec.containers"))
    for i, c in enumerate(containers):
        if not c.get("name"):
            causes.append(_required(f"spec.template.spec.containers[{i}].name"))
        if not c.get("image"):
            causes.append(_required(f"spec.template.spec.containers[{i}].image"))
    replicas = spec.get("replicas")
    if isinstance(replicas, int) and replicas < 0:
        causes.append(_invalid("spec.replicas", replicas,
                               "must be greater than or equal to 0"))
    return causes


def _validate_service(obj: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    spec = obj.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return causes
    ports = spec.get("ports") or []
    if not ports:
        causes.append(_required("spec.ports"))
    for i, p in enumerate(ports):
        port = p.get("port")
        if not isinstance(port, int) or not 1 <= port <= 65535:
            causes.append(_invalid(f"spec.ports[{i}].port", port,
                                   "must be between 1 and 65535, inclusive"))
    return causes


def _validate_hpa(obj: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    spec = obj.get("spec") or {}
    if not spec.get("scaleTargetRef"):
        causes.append(_required("spec.scaleTargetRef.kind"))
    max_r = spec.get("maxReplicas")
    if not isinstance(max_r, int) or max_r < 1:
        causes.append(_invalid("spec.maxReplicas", max_r, "must be greater than or equal to 1"))
    elif isinstance(spec.get("minReplicas"), int) and spec["minReplicas"] > max_r:
        causes.append(_invalid("spec.minReplicas", spec["minReplicas"],
                               "must be less than or equal to maxReplicas"))
    return causes


def _validate_pdb(obj: dict[str, Any]) -> list[Cause]:
    spec = obj.get("spec") or {}
    if "minAvailable" in spec and "maxUnavailable" in spec:
        return [_invalid("spec", spec, "minAvailable and maxUnavailable cannot be both set")]
    return []


_VALIDATORS: dict[str, Callable[[dict[str, Any]], list[Cause]]] = {
    "ConfigMap": _validate_configmap,
    "Deployment": _validate_deployment,
    "Service": _validate_service,
    "HorizontalPodAutoscaler": _validate_hpa,
    "PodDisruptionBudget": _validate_pdb,
}


# --- defaulting -------------------------------------------------------------------------


def apply_defaults(
    rt: ResourceType,
    obj: dict[str, Any],
    previous: dict[str, Any] | None,
    allocate_ip: Callable[[], str],
) -> None:
    """Fill in what the real API server's defaulting would, in place."""
    if rt.kind == "Deployment":
        _default_deployment(obj)
    elif rt.kind == "Service":
        _default_service(obj, previous, allocate_ip)
    elif rt.kind == "Secret":
        obj.setdefault("type", "Opaque")
    elif rt.kind == "HorizontalPodAutoscaler":
        obj.setdefault("spec", {}).setdefault("minReplicas", 1)
    elif rt.kind == "Namespace":
        name = obj["metadata"]["name"]
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj["status"] = {"phase": "Active"}


def _default_deployment(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    pod = spec.setdefault("template", {}).setdefault("spec", {})
    pod.setdefault("restartPolicy", "Always")
    pod.setdefault("terminationGracePeriodSeconds", 30)
    pod.setdefault("dnsPolicy", "ClusterFirst")
    pod.setdefault("securityContext", {})
    pod.setdefault("schedulerName", "default-scheduler")
    for container in pod.get("containers") or []:
        _default_container(container)
    for container in pod.get("initContainers") or []:
        _default_container(container)
    for volume in pod.get("volumes") or []:
        for source in ("configMap", "secret"):
            if isinstance(volume.get(source), dict):
                volume[source].setdefault("defaultMode", 420)


def _default_container(container: dict[str, Any]) -> None:
    image = str(container.get("image", ""))
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    default_policy = "Always" if tag in ("", "latest") and "@" not in image else "IfNotPresent"
    container.setdefault("imagePullPolicy", default_policy)
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(probe_name)
        if not isinstance(probe, dict):
            continue
        if isinstance(probe.get("httpGet"), dict):
            probe["httpGet"].setdefault("scheme", "HTTP")
        probe.setdefault("timeoutSeconds", 1)
        probe.setdefault("periodSeconds", 10)
        probe.setdefault("successThreshold", 1)
        probe.setdefault("failureThreshold", 3)


def _default_service(
    obj: dict[str, Any], previous: dict[str, Any] | None, allocate_ip: Callable[[], str]
) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] != "ExternalName":
        old_ip = ((previous or {}).get("spec") or {}).get("clusterIP")
        spec.setdefault("clusterIP", old_ip or allocate_ip())
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        if "port" in port:
            port.setdefault("targetPort", port["port"])
    obj.setdefault("status", {"loadBalancer": {}})
