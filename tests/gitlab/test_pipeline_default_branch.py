"""The reusable pipeline on the default branch, run by gitlab-ci-local: plan, then apply of that
plan with the protected identity; a plan gone stale is refused; without a cluster the apply is
skipped by a job that says why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.gitlab_api import JOB_TOKEN, REPORTER_TOKEN
from tests.fakes.kubeapi.server import KubeAPIServer
from tests.gitlab.runner import (
    ManifestRepo,
    documented_role,
    example_files,
    make_repo,
    run_pipeline,
)

pytestmark = pytest.mark.slow

CI_YAML = """\
stages: [test, deploy]
include:
  - local: ci/gatewayctl.gitlab-ci.yml
    inputs:
      root: gateway/
      environment: production
"""
PUSH = {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "main", "CI_COMMIT_REF_NAME": "main"}


@pytest.fixture
def repo(tmp_path: Path) -> ManifestRepo:
    return make_repo(tmp_path / "gateway-config", CI_YAML, example_files("multi-team", "gateway"))


def cluster_variables(kube: KubeAPIServer, tmp_path: Path) -> dict[str, Any]:
    """The read identity as a plain file variable; the apply identity scoped to production;
    each allowed exactly what its Role in docs/gitlab-workflow.md grants."""
    kube.add_identity("plan-token", "gatewayctl-plan", documented_role("gatewayctl-plan"))
    kube.add_identity("apply-token", "gatewayctl-apply", documented_role("gatewayctl-apply"))
    reader = kube.write_kubeconfig(tmp_path / "plan-kubeconfig", token="plan-token")
    writer = kube.write_kubeconfig(tmp_path / "apply-kubeconfig", token="apply-token")
    return {
        "GATEWAYCTL_PLAN_KUBECONFIG": str(reader),
        "GATEWAYCTL_APPLY_KUBECONFIG": {"type": "file",
                                        "values": {"production": writer.read_text()}},
    }


def test_plan_then_apply_that_plan_and_refuse_a_stale_one(repo, gitlab, kube, tmp_path):
    project = gitlab.add_project("platform/gateway-config", files=repo.files())
    # main's commit is the merge of a merge request: the apply records which
    mr = gitlab.add_merge_request(project.id, source_branch="first-gateway")
    gitlab.merge(project.id, int(mr["iid"]), sha=repo.head())
    variables = {**cluster_variables(kube, tmp_path), "GATEWAYCTL_NOTE_TOKEN": REPORTER_TOKEN}

    first = run_pipeline(repo, gitlab=gitlab, project_id=project.id, pipeline=PUSH,
                         cicd_variables=variables, job_token=JOB_TOKEN)

    assert first.returncode == 0, first.explain()
    assert first.results == {"gatewayctl-validate": "PASS", "gatewayctl-plan": "PASS",
                             "gatewayctl-apply": "PASS"}
    assert "as the read-only identity" in first.job_log("gatewayctl-plan")
    plan = json.loads(first.artifact("gatewayctl-plan", "plan.json").read_text())
    assert plan["target"]["spec"] == "kubernetes"
    assert "Applying the saved plan plan.json" in first.job_log("gatewayctl-apply")
    # the plan identity wrote nothing, not even a dry run; the apply identity did the writes
    assert not [r for r in kube.requests if r.user == "gatewayctl-plan" and r.is_write]
    assert kube.writes("gatewayctl-apply")
    config = kube.get_object("v1", "ConfigMap", "ai-gateway", "ai-gateway-config")
    assert config is not None
    assert '"weight":95' in config["data"]["rds.json"]
    annotations = config["metadata"]["annotations"]
    assert annotations["gatewayctl.dev/source-merge-request"] == mr["web_url"]
    assert annotations["gatewayctl.dev/source-commit"] == repo.head()

    # the next merge lands: plan, then someone changes the gateway before the apply job runs
    repo.replace("gateway/rollouts.yaml", "step: 1 ", "step: 2 ")
    repo.commit("Move the chat canary to 25%")
    planned = run_pipeline(repo, gitlab=gitlab, project_id=project.id, pipeline=PUSH,
                           cicd_variables=variables, job_token=JOB_TOKEN,
                           jobs=("gatewayctl-plan",))
    assert planned.returncode == 0, planned.explain()
    edited = kube.get_object("v1", "ConfigMap", "ai-gateway", "ai-gateway-config")
    assert edited is not None
    edited["data"]["rds.json"] = edited["data"]["rds.json"].replace('"weight":95', '"weight":90')
    kube.replace(edited)

    applied = run_pipeline(repo, gitlab=gitlab, project_id=project.id, pipeline=PUSH,
                           cicd_variables=variables, job_token=JOB_TOKEN,
                           jobs=("gatewayctl-apply",))

    assert applied.results == {"gatewayctl-apply": "FAIL"}, applied.explain()
    assert "the saved plan is stale" in applied.job_log("gatewayctl-apply")
    after = kube.get_object("v1", "ConfigMap", "ai-gateway", "ai-gateway-config")
    assert after is not None and '"weight":90' in after["data"]["rds.json"]


def test_without_a_cluster_the_apply_is_skipped_and_says_why(repo, gitlab):
    project = gitlab.add_project("platform/gateway-config", files=repo.files())

    run = run_pipeline(repo, gitlab=gitlab, project_id=project.id, pipeline=PUSH,
                       job_token=JOB_TOKEN)

    assert run.returncode == 0, run.explain()
    assert run.results == {"gatewayctl-validate": "PASS", "gatewayctl-apply-skipped": "PASS"}
    assert "Not applied - no cluster is configured" in run.job_log("gatewayctl-apply-skipped")


def test_apply_without_the_protected_identity_fails_clearly(repo, gitlab, kube, tmp_path):
    """A reader but no writer (the variable is protected and the branch is not, say)."""
    project = gitlab.add_project("platform/gateway-config", files=repo.files())
    variables = cluster_variables(kube, tmp_path)
    del variables["GATEWAYCTL_APPLY_KUBECONFIG"]

    run = run_pipeline(repo, gitlab=gitlab, project_id=project.id, pipeline=PUSH,
                       cicd_variables=variables, job_token=JOB_TOKEN)

    assert run.results["gatewayctl-plan"] == "PASS"
    assert run.results["gatewayctl-apply"] == "FAIL", run.explain()
    assert "GATEWAYCTL_APPLY_KUBECONFIG is not available to this job" in run.job_log(
        "gatewayctl-apply")
    assert kube.get_object("v1", "ConfigMap", "ai-gateway", "ai-gateway-config") is None
