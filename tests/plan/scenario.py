"""A plan touching every kind of change, built without a cluster or a renderer: two compiled
IRs (the fixture root and an edited copy) and small hand-made Kubernetes objects."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

from gatewayctl.orchestrate import load_desired_ir
from gatewayctl.plan.compute import build_plan
from gatewayctl.plan.model import DesiredState, ObservedState, Plan
from gatewayctl.plan.resource_diff import fingerprint
from gatewayctl.render.k8s import Provenance
from tests.plan.conftest import FIXTURE_ROOT, edit, set_rollout_step

LABELS = {"app.kubernetes.io/managed-by": "gatewayctl", "gatewayctl.dev/gateway": "ai-gateway"}


def edited_root(tmp: Path) -> Path:
    root = tmp / "after"
    shutil.copytree(FIXTURE_ROOT, root)
    set_rollout_step(root, 2)
    edit(root, "routes.yaml", "      variables: {product: {required: true}}\n  active:\n"
         "    - {version: 1, weight: 100}",
         "      variables: {product: {required: true}}\n"
         "    - version: 2\n"
         "      template: \"You are a support assistant for {{ product }}.\\nBe brief.\"\n"
         "      variables: {product: {required: true}}\n"
         "  active:\n    - {version: 1, weight: 90}\n    - {version: 2, weight: 10}")
    edit(root, "routes.yaml", "    - {model: gpt-4o-mini, weight: 100}\n  prompt:",
         "    - {model: gpt-4o-mini, weight: 100}\n  fallback: [gpt-4o-2024-08-06]\n  prompt:")
    edit(root, "policies.yaml", "requests: 600", "requests: 300")
    edit(root, "policies.yaml", "teams: [search]", "teams: [search, support]")
    edit(root, "gateway.yaml", "inputPerMillion: 0.15, outputPerMillion: 0.60",
         "inputPerMillion: 0.30, outputPerMillion: 0.60")
    with (root / "policies.yaml").open("a") as f:
        f.write("---\napiVersion: gatewayctl.dev/v1alpha1\nkind: Consumer\n"
                "metadata: {name: analytics}\nspec:\n  team: search\n"
                "  apiKeySecretRef: {name: analytics-key, key: key}\n")
    return root


def _meta(name: str) -> dict[str, Any]:
    return {"name": name, "namespace": "ai-gateway", "labels": dict(LABELS)}


def live_objects() -> list[dict[str, Any]]:
    listener = {"resources": [{"name": "gateway", "routes": [
        {"match": "chat", "clusters": [{"name": "stable", "weight": 95},
                                       {"name": "canary", "weight": 5}]}]}]}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta("ai-gateway")},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            **_meta("ai-gateway-config"),
            "uid": "3f1c", "resourceVersion": "41", "creationTimestamp": "2030-01-01T00:00:00Z",
            "annotations": {"gatewayctl.dev/source-commit": "1" * 40}},
         "data": {"lds.json": json.dumps(listener, separators=(",", ":"))}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta("ai-gateway"),
         "spec": {"template": {"spec": {"containers": [
             {"name": "envoy", "image": "envoyproxy/envoy:v1.39.0"}]}}},
         "status": {"replicas": 2}},
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta("ai-gateway-old"),
         "spec": {"ports": [{"port": 8080}]}},
    ]


def planned_objects() -> list[dict[str, Any]]:
    objects = copy.deepcopy(live_objects()[:3])
    config = objects[1]
    config["metadata"]["annotations"] = {"gatewayctl.dev/source-commit": "2" * 40}
    listener = json.loads(config["data"]["lds.json"])
    listener["resources"][0]["routes"][0]["clusters"] = [
        {"name": "stable", "weight": 75}, {"name": "canary", "weight": 25}]
    config["data"]["lds.json"] = json.dumps(listener, separators=(",", ":"))
    objects[2]["spec"]["template"]["spec"]["containers"][0]["image"] = "envoyproxy/envoy:v1.40.0"
    objects[2].pop("status")
    objects.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                    "metadata": _meta("ai-gateway"), "spec": {"minAvailable": 1}})
    return objects


def scenario_plan(tmp: Path) -> Plan:
    before, _ = load_desired_ir(FIXTURE_ROOT)
    after, warnings = load_desired_ir(edited_root(tmp))
    live, planned = live_objects(), planned_objects()
    source = Provenance(commit="2" * 40, pipeline_url="https://gitlab.example.com/p/-/pipelines/9")
    return build_plan(DesiredState(after, tuple(planned), source, warnings),
                      ObservedState(before, tuple(live), fingerprint(live, planned),
                                    tuple(planned)),
                      "kubernetes")


def intent_root(tmp: Path) -> Path:
    """The fixture root with changes the round-1 plan could not see: a rollout's header,
    pauses and thresholds; a prompt variable made required; a limit whose rate rises while
    its burst drops; an allow list by team replaced by the team's one member today."""
    root = tmp / "intent"
    shutil.copytree(FIXTURE_ROOT, root)
    edit(root, "routes.yaml", "{weight: 25, pause: 30m}", "{weight: 25, pause: 1h}")
    edit(root, "routes.yaml", "  state: progressing\n",
         "  state: progressing\n  canaryHeader: x-canary\n  analysis:\n    metrics:\n"
         "      - {name: error-rate, max: 0.02}\n      - {name: latency-p95, max: 4s}\n")
    edit(root, "routes.yaml", "{{ product }}.\\nAnswer politely.\"\n"
         "      variables: {product: {required: true}}",
         "{{ product }}.\\nAnswer in {{ language }}.\"\n"
         "      variables: {product: {required: true}, language: {required: true}}")
    edit(root, "policies.yaml", "requests: 600, per: minute", "requests: 20, per: second")
    edit(root, "policies.yaml", "allow: {teams: [search]}", "allow: {consumers: [search-app]}")
    return root


def intent_plan(tmp: Path) -> Plan:
    """A manifest-only plan (IR against IR) of `intent_root`."""
    before, _ = load_desired_ir(FIXTURE_ROOT)
    after, warnings = load_desired_ir(intent_root(tmp))
    return build_plan(DesiredState(after, (), Provenance(), warnings),
                      ObservedState(before, (), "sha256:" + "0" * 64), "git:HEAD")
