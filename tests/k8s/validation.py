"""Validation of rendered objects: kubernetes-validate --strict (offline schemas) for built-in
kinds, and a vendored schema for the Prometheus Operator kinds, which are CRDs that
kubernetes-validate ships no schema for."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils

# The oldest Kubernetes the chart and the rendered objects support (Chart.yaml kubeVersion),
# and the newest kubernetes-validate ships schemas for.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
SCHEMAS = Path(__file__).parent / "schemas"
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor-monitoring-v1.json",
}


@cache
def _crd_schema(filename: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / filename).read_text())
    return schema


def validate_object(obj: dict[str, Any]) -> None:
    """Raise with the object's kind/name and the failing path when `obj` is invalid."""
    name = f"{obj.get('kind')} {obj.get('metadata', {}).get('name')}"
    crd = CRD_SCHEMAS.get((obj.get("apiVersion", ""), obj.get("kind", "")))
    try:
        if crd:
            jsonschema.Draft202012Validator(_crd_schema(crd)).validate(obj)
        else:
            for version in KUBERNETES_VERSIONS:
                kubernetes_validate.validate(obj, version, strict=True)
    except jsonschema.ValidationError as err:
        path = ".".join(str(p) for p in err.absolute_path)
        raise AssertionError(f"{name} is invalid at {path}: {err.message}") from None
