"""The reusable pipeline's rollout jobs, run by gitlab-ci-local: a scheduled advance that aborts
a failing canary on the cluster at once and opens the merge request recording it; a manual
promote of a rollout in a subfolder, made on the default branch's current head."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayctl.render.envoy.names import backend_cluster_name
from tests.fakes.gitlab_api import DEVELOPER_TOKEN, JOB_TOKEN, GitLabAPIServer, Project
from tests.fakes.kubeapi.server import KubeAPIServer
from tests.gitlab.runner import (
    ManifestRepo,
    documented_role,
    example_files,
    make_repo,
    run_pipeline,
)
from tests.rollout.fake_prometheus import FakePrometheus

pytestmark = pytest.mark.slow

ROLLOUT = "chat-gpt4o-nov"
ROLLOUTS_FILE = "gateway/rollouts.yaml"
SCHEDULE = {"CI_PIPELINE_SOURCE": "schedule", "CI_COMMIT_BRANCH": "main",
            "CI_COMMIT_REF_NAME": "main"}
PUSH = {**SCHEDULE, "CI_PIPELINE_SOURCE": "push"}


def ci_yaml(prometheus: str, rollouts: str) -> str:
    return f"""\
stages: [test, deploy]
include:
  - local: ci/gatewayctl.gitlab-ci.yml
    inputs:
      root: gateway/
      rollouts: {rollouts}
      prometheus-url: {prometheus}
"""


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    with FakePrometheus() as fake:
        yield fake


def with_second_rollout(files: dict[str, str]) -> dict[str, str]:
    """multi-team plus a second Rollout (on the embeddings route), to run several."""
    files = dict(files)
    files["gateway/embeddings-rollout.yaml"] = """\
apiVersion: gatewayctl.dev/v1alpha1
kind: Rollout
metadata: {name: embeddings-v3}
spec:
  route: chat
  stable: gpt-4o-2024-08-06
  canary: gpt-4o-2024-11-20
  steps: [{weight: 10}]
  step: 0
  state: completed
"""
    return files


def make(tmp_path: Path, prometheus: str, *, second: bool = False) -> ManifestRepo:
    files = example_files("multi-team", "gateway")
    if second:
        return make_repo(tmp_path / "gateway-config",
                         ci_yaml(prometheus, f"{ROLLOUT} embeddings-v3"),
                         with_second_rollout(files))
    return make_repo(tmp_path / "gateway-config", ci_yaml(prometheus, ROLLOUT), files)


def traffic(fake: FakePrometheus, model: str, requests: int, errors: int) -> None:
    fake.add_traffic(backend_cluster_name("chat", model), requests, errors)


def deploy(repo: ManifestRepo, kubeconfig: Path) -> None:
    """What the default branch's apply job did earlier: the gateway as Git has it."""
    done = subprocess.run(
        [sys.executable, "-m", "gatewayctl", "apply", "gateway", "--live", "kubernetes",
         "--auto-approve", "--kubeconfig", str(kubeconfig)],
        cwd=repo.path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "NO_COLOR": "1"})
    assert done.returncode == 0, done.stdout + done.stderr


def canary_weight(kube: KubeAPIServer) -> int | None:
    ir = kube.get_object("v1", "ConfigMap", "ai-gateway", "ai-gateway-config")
    assert ir is not None
    config = json.loads(ir["data"]["rds.json"])
    canary = backend_cluster_name("chat", "gpt-4o-2024-11-20")
    found: list[int] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("name") == canary and "weight" in node:
                found.append(int(node["weight"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return max(found) if found else None


def land_on_main(gitlab: GitLabAPIServer, project: Project, path: str, text: str) -> str:
    """A change merged after the pipeline's commit (the job's checkout does not have it)."""
    parent = project.branches["main"]
    sha = gitlab._commit(project, parent, {**project.trees[parent], path: text},
                         "Name the rollout's owner", "someone")
    project.branches["main"] = sha
    return sha


def test_scheduled_advance_aborts_a_failing_canary_at_once_and_opens_the_mr(
        tmp_path, gitlab, kube, prometheus):
    repo = make(tmp_path, prometheus.url, second=True)
    project = gitlab.add_project("platform/gateway-config", files=repo.files())
    deploy(repo, kube.write_kubeconfig(tmp_path / "admin-kubeconfig"))
    kube.add_identity("apply-token", "gatewayctl-apply", documented_role("gatewayctl-apply"))
    kubeconfig = kube.write_kubeconfig(tmp_path / "apply-kubeconfig", token="apply-token")
    assert canary_weight(kube) == 5
    traffic(prometheus, "gpt-4o-2024-11-20", 200, 40)
    traffic(prometheus, "gpt-4o-2024-08-06", 800, 0)
    variables = {
        "GATEWAYCTL_ROLLOUT_TOKEN": DEVELOPER_TOKEN,
        "GATEWAYCTL_APPLY_KUBECONFIG": {"type": "file",
                                        "values": {"production": kubeconfig.read_text()}},
    }

    run = run_pipeline(repo, gitlab=gitlab, project_id=project.id, pipeline=SCHEDULE,
                       cicd_variables=variables, job_token=JOB_TOKEN)

    # a canary aborted is a failed pipeline (exit 2): its owner is notified
    assert run.results == {"gatewayctl-rollout-advance": "FAIL"}, run.explain()
    log = run.job_log("gatewayctl-rollout-advance")
    assert "decision: abort: analysis failed: error-rate" in log
    assert "rollout embeddings-v3" in log  # the second rollout was advanced too (held)
    # the cluster: the canary gets nothing, now, applied by the apply identity
    assert canary_weight(kube) in (0, None)
    assert kube.writes("gatewayctl-apply")
    # Git: a merge request records the abort, on its own branch; main is unchanged
    branch = f"gatewayctl/rollout-{ROLLOUT}-abort"
    proposed = gitlab.file_text(project.id, branch, ROLLOUTS_FILE) or ""
    assert "state: aborted" in proposed
    assert gitlab.file_text(project.id, "main", ROLLOUTS_FILE) == repo.read(ROLLOUTS_FILE)
    mrs = list(project.merge_requests.values())
    assert [(m["source_branch"], m["target_branch"]) for m in mrs] == [(branch, "main")]
    assert mrs[0]["author"]["username"] == "gatewayctl-bot"
    # the analysis is an artifact
    saved = run.artifact("gatewayctl-rollout-advance", f"gatewayctl-analysis/{ROLLOUT}.json")
    assert json.loads(saved.read_text())["verdict"] == "fail"


def test_manual_promote_edits_the_file_in_its_subfolder_on_the_current_head(
        tmp_path, gitlab, prometheus):
    repo = make(tmp_path, prometheus.url)
    project = gitlab.add_project("platform/gateway-config", files=repo.files())
    later = repo.read(ROLLOUTS_FILE).replace("# Canary of the \"chat\" route",
                                             "# Owner: platform team. Canary of the \"chat\" route")
    assert later != repo.read(ROLLOUTS_FILE)
    head = land_on_main(gitlab, project, ROLLOUTS_FILE, later)

    run = run_pipeline(repo, gitlab=gitlab, project_id=project.id, pipeline=PUSH,
                       cicd_variables={"GATEWAYCTL_ROLLOUT_TOKEN": DEVELOPER_TOKEN},
                       job_token=JOB_TOKEN, jobs=("gatewayctl-rollout-promote",),
                       manual=("gatewayctl-rollout-promote",))

    assert run.results == {"gatewayctl-rollout-promote": "PASS"}, run.explain()
    branch = f"gatewayctl/rollout-{ROLLOUT}-step-2"
    tree = project.trees[project.branches[branch]]
    assert "rollouts.yaml" not in tree  # never a guessed path at the repository's top
    proposed = tree[ROLLOUTS_FILE]
    assert proposed.startswith("# Owner: platform team.")  # the later change is kept
    assert "  step: 2 " in proposed
    assert project.commits[project.branches[branch]]["parent_ids"] == [head]
    assert f"({branch} -> main at {head[:12]}" in run.job_log("gatewayctl-rollout-promote")


def test_promote_with_several_rollouts_asks_which_one(tmp_path, gitlab, prometheus):
    repo = make(tmp_path, prometheus.url, second=True)
    project = gitlab.add_project("platform/gateway-config", files=repo.files())

    run = run_pipeline(repo, gitlab=gitlab, project_id=project.id, pipeline=PUSH,
                       cicd_variables={"GATEWAYCTL_ROLLOUT_TOKEN": DEVELOPER_TOKEN},
                       job_token=JOB_TOKEN, jobs=("gatewayctl-rollout-abort",),
                       manual=("gatewayctl-rollout-abort",))

    # manual rollout jobs may fail without failing the pipeline: a warning
    assert run.results == {"gatewayctl-rollout-abort": "WARN"}, run.explain()
    assert "run the job with the variable GATEWAYCTL_ROLLOUT set to one of them" in \
        run.job_log("gatewayctl-rollout-abort")
    assert project.merge_requests == {}
