"""The reusable pipeline, run by gitlab-ci-local in a manifest repository, on merge requests.

Every job runs as a runner runs it (shell executor, artifacts isolated between jobs) against
the local GitLab API fake and the Kubernetes API fake.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gatewayctl.gitlab.client import NOTE_MAX_CHARS
from gatewayctl.gitlab.notes import MAX_LINE_CHARS
from tests.conftest import REPO
from tests.fakes.gitlab_api import DEVELOPER_TOKEN, JOB_TOKEN, REPORTER_TOKEN, GitLabAPIServer
from tests.fakes.kubeapi.server import Rule
from tests.gitlab.runner import (
    ManifestRepo,
    documented_role,
    example_files,
    make_repo,
    merge_request_variables,
    run_pipeline,
)

pytestmark = pytest.mark.slow

EXAMPLE = REPO / "examples" / ".gitlab-ci.yml"
# the example's include, with the template taken from this checkout instead of the release
CI_YAML = re.sub(r"  - project: platform/gatewayctl\n    ref: \S+\n    file: templates/",
                 "  - local: ci/", EXAMPLE.read_text())


@pytest.fixture
def repo(tmp_path: Path) -> ManifestRepo:
    return make_repo(tmp_path / "gateway-config", CI_YAML, example_files("multi-team", "gateway"))


def open_merge_request(repo: ManifestRepo, gitlab: GitLabAPIServer,
                       edit: tuple[str, str, str] = ("gateway/rollouts.yaml", "step: 1 ",
                                                     "step: 2 "),
                       branch: str = "canary-25",
                       message: str = "Move the chat canary to 25%") -> tuple[int, int, str]:
    """A feature branch with one edit (path, old, new; by default: the canary moves to step
    2), and its merge request."""
    base = repo.head()
    project = gitlab.add_project("platform/gateway-config", files=repo.files())
    repo.git("checkout", "-q", "-b", branch)
    repo.replace(*edit)
    repo.commit(message)
    mr = gitlab.add_merge_request(project.id, source_branch=branch)
    return project.id, int(mr["iid"]), base


def test_the_example_includes_the_template():
    assert "  - local: ci/gatewayctl.gitlab-ci.yml\n" in CI_YAML


def test_merge_request_without_a_cluster_plans_against_the_diff_base(repo, gitlab):
    project_id, iid, base = open_merge_request(repo, gitlab)
    variables = {"GATEWAYCTL_NOTE_TOKEN": REPORTER_TOKEN}
    pipeline = merge_request_variables(iid=iid, diff_base=base, source_branch="canary-25")

    first = run_pipeline(repo, gitlab=gitlab, project_id=project_id, pipeline=pipeline,
                         cicd_variables=variables, job_token=JOB_TOKEN)

    assert first.returncode == 0, first.explain()
    assert first.results == {"gatewayctl-validate": "PASS", "gatewayctl-plan": "PASS"}
    # validate: both reports are there and well-formed
    quality = json.loads(first.artifact("gatewayctl-validate",
                                        "gl-code-quality-report.json").read_text())
    assert quality == []
    junit = ET.parse(first.artifact("gatewayctl-validate", "gatewayctl-junit.xml")).getroot()
    cases = junit.findall(".//testcase")
    assert len(cases) >= 20 and not junit.findall(".//failure")
    # the root's request tests ran offline in the same job
    tests = ET.parse(first.artifact("gatewayctl-validate", "gatewayctl-test-junit.xml")).getroot()
    assert len(tests.findall(".//testcase")) == 11 and not tests.findall(".//failure")
    # plan: against the merge request's diff base, no cluster
    plan_log = first.job_log("gatewayctl-plan")
    assert f"planning against the merge request's diff base {base}" in plan_log
    plan = json.loads(first.artifact("gatewayctl-plan", "plan.json").read_text())
    assert plan["target"]["spec"] == f"git:{base}"
    assert "(the full plan: plan.md and plan.json in the job artifacts)" in plan_log
    # the note: created once, by the notes token, with the weights of step 2
    notes = gitlab.notes(project_id, iid)
    assert len(notes) == 1
    assert notes[0]["author"]["username"] == "reporter"
    assert "95% → 75%" in notes[0]["body"]
    assert notes[0]["body"].startswith("<!-- gatewayctl:plan gateway=ai-gateway env=production -->")
    assert len(notes[0]["body"]) <= NOTE_MAX_CHARS
    assert max(len(line) for line in notes[0]["body"].splitlines()) <= MAX_LINE_CHARS + 60

    # a second push to the branch: the same note is updated in place
    repo.replace("gateway/rollouts.yaml", "step: 2 ", "step: 3 ")
    repo.commit("Go to 50% directly")
    second = run_pipeline(repo, gitlab=gitlab, project_id=project_id, pipeline=pipeline,
                          cicd_variables=variables, job_token=JOB_TOKEN)

    assert second.returncode == 0, second.explain()
    notes = gitlab.notes(project_id, iid)
    assert len(notes) == 1
    assert "95% → 50%" in notes[0]["body"] and "95% → 75%" not in notes[0]["body"]
    assert "Updated the plan note on merge request !1" in second.job_log("gatewayctl-plan")
    # no other job ran: no apply, no rollout job, in a merge request pipeline
    assert set(second.results) == {"gatewayctl-validate", "gatewayctl-plan"}


def test_a_failed_plan_leaves_no_plan_artifact(repo, gitlab):
    project_id, iid, base = open_merge_request(repo, gitlab)
    # a Rollout step the route cannot take: validate passes the syntax, the plan fails
    repo.replace("gateway/rollouts.yaml", "step: 2 ", "step: 9 ")
    repo.commit("A step that does not exist")
    pipeline = merge_request_variables(iid=iid, diff_base=base, source_branch="canary-25")

    run = run_pipeline(repo, gitlab=gitlab, project_id=project_id, pipeline=pipeline,
                       job_token=JOB_TOKEN)

    assert run.results.get("gatewayctl-validate") == "FAIL" or \
        run.results.get("gatewayctl-plan") == "FAIL", run.explain()
    assert not run.artifact("gatewayctl-plan", "plan.md").exists()
    assert not run.artifact("gatewayctl-plan", "plan.json").exists()
    assert gitlab.notes(project_id, iid) == []


def test_the_note_token_is_not_the_developer_token(repo, gitlab):
    """Without GATEWAYCTL_NOTE_TOKEN the plan still passes and says the note was not posted,
    even though a broader token exists in the project (it is for rollouts, not for MRs)."""
    project_id, iid, base = open_merge_request(repo, gitlab)
    pipeline = merge_request_variables(iid=iid, diff_base=base, source_branch="canary-25")

    run = run_pipeline(repo, gitlab=gitlab, project_id=project_id, pipeline=pipeline,
                       cicd_variables={"GATEWAYCTL_ROLLOUT_TOKEN": DEVELOPER_TOKEN},
                       job_token=JOB_TOKEN)

    assert run.returncode == 0, run.explain()
    assert "warning: the plan was not posted on the merge request" in run.job_log(
        "gatewayctl-plan")
    assert gitlab.notes(project_id, iid) == []
    assert not [r for r in gitlab.requests if r.method != "GET"]


def test_merge_request_with_the_read_only_identity_plans_and_writes_nothing(
        repo, gitlab, kube, tmp_path):
    deployed = subprocess.run(  # what the default branch's apply did: main, step 1
        [sys.executable, "-m", "gatewayctl", "apply", "gateway", "--live", "kubernetes",
         "--auto-approve", "--kubeconfig", str(kube.write_kubeconfig(tmp_path / "admin"))],
        cwd=repo.path, capture_output=True, text=True, timeout=120)
    assert deployed.returncode == 0, deployed.stderr
    project_id, iid, base = open_merge_request(repo, gitlab)
    rules = documented_role("gatewayctl-plan")
    assert {verb for rule in rules for verb in rule.verbs} == {"get", "list"}
    kube.add_identity("plan-token", "gatewayctl-plan", rules)
    kube.add_identity("apply-token", "gatewayctl-apply", [Rule(("*",), ("*",))])
    kube.clear_requests()
    variables = {
        "GATEWAYCTL_PLAN_KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "plan",
                                                                token="plan-token")),
        # a protected, environment-scoped write identity exists: MR jobs must not get it
        "GATEWAYCTL_APPLY_KUBECONFIG": {"type": "file", "values": {
            "production": kube.write_kubeconfig(tmp_path / "apply",
                                                token="apply-token").read_text()}},
        "GATEWAYCTL_NOTE_TOKEN": REPORTER_TOKEN,
    }
    pipeline = merge_request_variables(iid=iid, diff_base=base, source_branch="canary-25")

    run = run_pipeline(repo, gitlab=gitlab, project_id=project_id, pipeline=pipeline,
                       cicd_variables=variables, job_token=JOB_TOKEN)

    assert run.results == {"gatewayctl-validate": "PASS", "gatewayctl-plan": "PASS"}, \
        run.explain()
    plan = json.loads(run.artifact("gatewayctl-plan", "plan.json").read_text())
    assert plan["target"]["spec"] == "kubernetes"
    assert "95% → 75%" in gitlab.notes(project_id, iid)[0]["body"]
    users = {r.user for r in kube.requests}
    assert users == {"gatewayctl-plan"}  # the write identity was never used
    assert [r for r in kube.requests if r.is_write] == []  # not even a dry run


@pytest.mark.parametrize("required", [False, True], ids=["default", "require-tests"])
def test_a_root_without_request_tests_fails_validate_only_when_they_are_required(
        tmp_path, gitlab, required):
    ci_yaml = CI_YAML if not required else CI_YAML.replace(
        "      root: gateway/\n", "      root: gateway/\n      require-tests: true\n")
    repo = make_repo(tmp_path / "gateway-config", ci_yaml,
                     example_files("quickstart", "gateway"))  # no RequestTest
    project_id, iid, base = open_merge_request(
        repo, gitlab, ("gateway/models.yaml", "attempts: 2", "attempts: 3"), "retry",
        "Retry once more")
    pipeline = merge_request_variables(iid=iid, diff_base=base, source_branch="retry")

    run = run_pipeline(repo, gitlab=gitlab, project_id=project_id, pipeline=pipeline,
                       jobs=("gatewayctl-validate",), job_token=JOB_TOKEN)

    log = run.job_log("gatewayctl-validate")
    tests = ET.parse(run.artifact("gatewayctl-validate", "gatewayctl-test-junit.xml")).getroot()
    assert tests.get("tests") == "0"
    if required:
        assert run.results == {"gatewayctl-validate": "FAIL"}, run.explain()
        assert "and --require-tests asks for at least one" in log
    else:
        assert run.results == {"gatewayctl-validate": "PASS"}, run.explain()
        assert "nothing to test" in log
