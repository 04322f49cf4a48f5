"""The validator the other tests rely on rejects what Kubernetes would."""

from __future__ import annotations

import copy

import pytest

from gatewayctl.ir import GatewayIR
from gatewayctl.render.k8s import render_kubernetes
from tests.k8s.bundles import envoy_bundle
from tests.k8s.validation import validate_object


@pytest.mark.parametrize("kind", ["Deployment", "PrometheusRule"])
def test_unknown_fields_are_rejected(multi_team: GatewayIR, kind: str) -> None:
    objects = render_kubernetes(multi_team, envoy_bundle(multi_team))
    obj = copy.deepcopy(next(o for o in objects if o["kind"] == kind))
    validate_object(obj)
    obj["spec"]["surprise"] = True
    with pytest.raises(AssertionError, match=f"{kind} ai-gateway is invalid"):
        validate_object(obj)


def test_wrong_types_are_rejected(multi_team: GatewayIR) -> None:
    objects = render_kubernetes(multi_team, envoy_bundle(multi_team))
    hpa = copy.deepcopy(next(o for o in objects if o["kind"] == "HorizontalPodAutoscaler"))
    hpa["spec"]["minReplicas"] = "two"
    with pytest.raises(AssertionError, match="spec.minReplicas"):
        validate_object(hpa)
