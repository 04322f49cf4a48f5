"""plan --live kubernetes over real HTTP against the fake API server (the client is never
patched): creates on an empty cluster, no false drift after apply, a weight change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gatewayctl.orchestrate import compute_plan, desired_state, load_desired_ir
from gatewayctl.plan.format import format_text
from gatewayctl.plan.model import Plan
from gatewayctl.render.k8s import Provenance
from gatewayctl.targets import parse_target
from gatewayctl.targets.kubernetes.options import KubeOptions
from tests.fakes.kubeapi import KubeAPIServer
from tests.plan.conftest import NAMESPACE, Cli, edit, set_rollout_step

RESOURCES = [
    ("ServiceAccount", "ai-gateway/ai-gateway"),
    ("ConfigMap", "ai-gateway/ai-gateway-bootstrap"),
    ("ConfigMap", "ai-gateway/ai-gateway-config"),
    ("ConfigMap", "ai-gateway/ai-gateway-ir"),
    ("Deployment", "ai-gateway/ai-gateway"),
    ("Service", "ai-gateway/ai-gateway"),
    ("PodDisruptionBudget", "ai-gateway/ai-gateway"),
    ("HorizontalPodAutoscaler", "ai-gateway/ai-gateway"),
    ("NetworkPolicy", "ai-gateway/ai-gateway"),
    ("PrometheusRule", "ai-gateway/ai-gateway"),
]


def plan_kube(root: Path, options: KubeOptions, source: Provenance | None = None) -> Plan:
    ir, warnings = load_desired_ir(root)
    live = parse_target("kubernetes", root, options)
    try:
        return compute_plan(desired_state(ir, live, source or Provenance(), warnings), live)
    finally:
        live.close()


def cli_apply(cli: Cli, root: Path, kubeconfig: Path, *extra: str) -> None:
    result = cli("apply", str(root), "--live", "kubernetes", "--kubeconfig", str(kubeconfig),
                 "--auto-approve", "--timeout", "10s", *extra)
    assert result.exit_code == 0, result.output


def test_plan_against_an_empty_cluster_creates_everything(
    cli: Cli, root: Path, kubeconfig: Path, kube_server: KubeAPIServer
) -> None:
    result = cli("plan", str(root), "--live", "kubernetes", "--kubeconfig", str(kubeconfig),
                 "--detailed-exitcode", "-o", "json")

    assert result.exit_code == 2, result.output
    plan = json.loads(result.stdout)
    resources = [(c["kind"], c["name"]) for c in plan["changes"] if c["layer"] == "resource"]
    assert resources == RESOURCES
    assert {c["action"] for c in plan["changes"]} == {"create"}
    manifest = {(c["kind"], c["name"]) for c in plan["changes"] if c["layer"] == "manifest"}
    assert ("Route", "chat") in manifest and ("Prompt", "support-assistant") in manifest
    # Only dry runs reached the server: nothing was stored.
    assert kube_server.requests_matching("PATCH", dry_run=False) == []
    assert kube_server.dump().get("configmaps", []) == []


def test_apply_then_plan_shows_no_changes(
    cli: Cli, root: Path, kubeconfig: Path, kube_server: KubeAPIServer
) -> None:
    cli_apply(cli, root, kubeconfig)

    # Another commit (different source annotations) with the same manifests: still no drift.
    env = {"CI_COMMIT_SHA": "f" * 40, "CI_PIPELINE_URL": "https://gitlab.example/p/-/1"}
    result = cli("plan", str(root), "--live", "kubernetes", "--kubeconfig", str(kubeconfig),
                 "--detailed-exitcode", env=env)

    assert result.exit_code == 0, result.output
    assert "No changes. The live gateway matches the manifests." in result.stdout


def test_apply_records_the_source_commit_merge_request_and_pipeline(
    cli: Cli, root: Path, kubeconfig: Path, kube_server: KubeAPIServer
) -> None:
    env = {"CI_COMMIT_SHA": "a" * 40, "CI_MERGE_REQUEST_PROJECT_URL": "https://gl/x/y",
           "CI_MERGE_REQUEST_IID": "7", "CI_PIPELINE_URL": "https://gl/x/y/-/pipelines/9"}
    result = cli("apply", str(root), "--kubeconfig", str(kubeconfig), "--auto-approve",
                 env=env)
    assert result.exit_code == 0, result.output

    config = kube_server.get_object("v1", "ConfigMap", NAMESPACE, "ai-gateway-config")
    assert config is not None
    annotations = config["metadata"]["annotations"]
    assert annotations["gatewayctl.dev/source-commit"] == "a" * 40
    assert annotations["gatewayctl.dev/source-merge-request"] == "https://gl/x/y/-/merge_requests/7"
    assert annotations["gatewayctl.dev/source-pipeline"] == "https://gl/x/y/-/pipelines/9"
    assert config["metadata"]["managedFields"][0]["manager"] == "gatewayctl"


def test_weight_change_is_one_manifest_change_and_one_configmap_field_change(
    cli: Cli, root: Path, kubeconfig: Path, kube_options: KubeOptions
) -> None:
    cli_apply(cli, root, kubeconfig)
    set_rollout_step(root, 2)

    plan = plan_kube(root, kube_options)

    manifest = plan.pending("manifest")
    assert [c.address for c in manifest] == ["Route chat"]
    weights = {d.field: (d.before, d.after, d.note) for d in manifest[0].details}
    assert weights["backend gpt-4o-2024-08-06"] == (
        "95%", "75%", "set by rollout chat-nov, step 2 of 3")
    assert weights["backend gpt-4o-2024-11-20"][:2] == ("5%", "25%")
    assert weights["rollout chat-nov"][:2] == ("step 1 of 3, progressing",
                                               "step 2 of 3, progressing")
    assert weights["cost per 1,000 requests"][:2] == ("$5.50", "$5.50")

    resources = plan.pending("resource")
    assert [c.address for c in resources] == ["ConfigMap ai-gateway/ai-gateway-config",
                                              "ConfigMap ai-gateway/ai-gateway-ir"]
    config, record = resources
    # The weights are fields of the listener, compared as data, each item by its name.
    weights_changed = {d.field.rsplit("[", 1)[1]: (d.before, d.after) for d in config.details
                       if d.field.endswith("].weight")}
    assert weights_changed == {"r_chat_gpt-4o-2024-08-06].weight": (95, 75),
                               "r_chat_gpt-4o-2024-11-20].weight": (5, 25)}
    assert all(not d.diff for d in config.details)
    assert sum(len(d.field) + len(str(d.before)) + len(str(d.after))
               for d in config.details) < 2_000
    # The IR record changes with every manifest change; it is labelled as such.
    assert [d.note for d in record.details] == [
        "the compiled IR record; what it means is in the manifest changes"]


def test_field_owned_by_another_manager_is_a_warning_and_needs_force_conflicts(
    cli: Cli, root: Path, kubeconfig: Path, kube_server: KubeAPIServer,
    kube_options: KubeOptions,
) -> None:
    cli_apply(cli, root, kubeconfig)
    hpa = kube_server.get_object("autoscaling/v2", "HorizontalPodAutoscaler", NAMESPACE,
                                 "ai-gateway")
    assert hpa is not None
    hpa["spec"]["maxReplicas"] = 3
    kube_server.replace(hpa, field_manager="kubectl-edit")

    plan = plan_kube(root, kube_options)
    change = next(c for c in plan.pending("resource") if c.kind == "HorizontalPodAutoscaler")
    assert [(d.field, d.before, d.after) for d in change.details] == [
        ("spec.maxReplicas", 3, 10)]
    assert "kubectl-edit" in change.warnings[0] and "--force-conflicts" in change.warnings[0]

    refused = cli("apply", str(root), "--kubeconfig", str(kubeconfig), "--auto-approve")
    assert refused.exit_code == 1
    assert "field ownership conflict" in refused.stderr
    assert "--force-conflicts" in refused.stderr
    cli_apply(cli, root, kubeconfig, "--force-conflicts")
    assert plan_kube(root, kube_options).has_changes is False


def test_missing_rbac_verb_is_named(
    cli: Cli, root: Path, kubeconfig: Path, kube_server: KubeAPIServer
) -> None:
    kube_server.deny("list", "configmaps")

    result = cli("plan", str(root), "--kubeconfig", str(kubeconfig))

    assert result.exit_code == 1
    assert 'grant RBAC verb "list" on resource "configmaps"' in result.stderr
    assert "Traceback" not in result.output


def test_policy_edit_reads_as_loosened(
    cli: Cli, root: Path, kubeconfig: Path, kube_options: KubeOptions
) -> None:
    cli_apply(cli, root, kubeconfig)
    edit(root, "policies.yaml", "requests: 600", "requests: 1200")

    plan = plan_kube(root, kube_options)

    policy = next(c for c in plan.pending("manifest") if c.kind == "Policy")
    assert policy.name == "baseline, team-limits"
    assert policy.affects == ("chat",)
    assert [(d.field, d.before, d.after, d.note) for d in policy.details] == [
        ("rate limit (policy team-limits, per consumer)",
         "600 requests/minute per consumer (per replica: up to 10 x 600 at max replicas)",
         "1,200 requests/minute per consumer (per replica: up to 10 x 1,200 at max replicas)",
         "loosened: rate loosened (10 requests/second -> 20 requests/second); "
         "burst loosened (600 -> 1,200 at once)")]


def test_rejected_credentials_are_one_clear_message(
    cli: Cli, root: Path, tmp_path: Path
) -> None:
    with KubeAPIServer(token="right", namespaces=(NAMESPACE,)) as server:
        kubeconfig = server.write_kubeconfig(tmp_path / "kc", token="wrong")
        result = cli("plan", str(root), "--kubeconfig", str(kubeconfig))

    assert result.exit_code == 1
    assert "rejected the credentials (401 Unauthorized)" in result.stderr
    assert "hint: check the kubeconfig user" in result.stderr


def test_missing_namespace_is_a_plan_warning_and_stops_apply(
    cli: Cli, root: Path, tmp_path: Path
) -> None:
    with KubeAPIServer() as server:
        kubeconfig = server.write_kubeconfig(tmp_path / "kc")
        planned = cli("plan", str(root), "--kubeconfig", str(kubeconfig))
        applied = cli("apply", str(root), "--kubeconfig", str(kubeconfig), "--auto-approve")
        writes = server.requests_matching("PATCH", dry_run=False)

    assert planned.exit_code == 0, planned.output
    assert 'Warning: namespace "ai-gateway" does not exist' in planned.stdout
    assert applied.exit_code == 1
    assert 'namespace "ai-gateway" does not exist' in applied.stderr
    assert "kubectl create namespace ai-gateway" in applied.stderr
    assert writes == []


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()))
def test_every_example_applies_then_plans_clean(
    example: str, cli: Cli, kubeconfig: Path, kube_options: KubeOptions
) -> None:
    cli_apply(cli, EXAMPLES / example, kubeconfig)

    plan = plan_kube(EXAMPLES / example, kube_options)

    assert plan.pending() == (), [c.address for c in plan.pending()]


def test_missing_referenced_secrets_are_warnings(
    cli: Cli, root: Path, kubeconfig: Path, kube_server: KubeAPIServer,
    kube_options: KubeOptions
) -> None:
    plan = plan_kube(root, kube_options)

    missing = [w for w in plan.warnings if w.startswith("Secret ")]
    assert missing[1] == (
        "Secret ai-gateway/openai-credentials does not exist: the pods of Deployment "
        "ai-gateway/ai-gateway will not start until it does (kubectl -n ai-gateway create "
        "secret generic openai-credentials ...)")
    assert [w.split()[1] for w in missing] == [
        "ai-gateway/helpdesk-key", "ai-gateway/openai-credentials", "ai-gateway/search-app-key"]
    kube_server.seed({"apiVersion": "v1", "kind": "Secret",
                      "metadata": {"name": "openai-credentials", "namespace": NAMESPACE},
                      "data": {"api-key": "c2stdGVzdA=="}})
    again = plan_kube(root, kube_options)
    assert [w.split()[1] for w in again.warnings if w.startswith("Secret ")] == [
        "ai-gateway/helpdesk-key", "ai-gateway/search-app-key"]
    assert "c2stdGVzdA" not in format_text(again) and "sk-test" not in format_text(again)
