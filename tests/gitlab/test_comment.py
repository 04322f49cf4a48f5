"""`gitlab comment` / `plan --gitlab-comment`: exit code and message for every outcome."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gatewayctl.gitlab.ci_env import load_ci_env
from gatewayctl.gitlab.client import RetryPolicy
from gatewayctl.gitlab.comment import default_artifact_url, post_plan_comment
from tests.fakes.gitlab_api import DEVELOPER_TOKEN, GitLabAPIServer

FAST = RetryPolicy(attempts=2, backoff=0.0, max_delay=0.01)


@pytest.fixture
def server() -> Iterator[GitLabAPIServer]:
    with GitLabAPIServer() as srv:
        project = srv.add_project("platform/gateway-config")
        srv.add_merge_request(project.id, source_branch="feature")
        yield srv


def ci_env(server: GitLabAPIServer, **overrides: str) -> dict[str, str]:
    env = {
        "CI_API_V4_URL": server.api_url,
        "CI_SERVER_URL": server.url,
        "CI_PROJECT_ID": "1",
        "CI_PROJECT_PATH": "platform/gateway-config",
        "CI_MERGE_REQUEST_IID": "1",
        "CI_JOB_URL": f"{server.url}/platform/gateway-config/-/jobs/77",
        "CI_JOB_TOKEN": "glcbt-not-allowed-here",
        "GITLAB_TOKEN": DEVELOPER_TOKEN,
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v}


def comment(server: GitLabAPIServer, plan: str, *, require: bool = False, **env: str):
    return post_plan_comment(
        plan,
        gateway="ai-gateway",
        environment="production",
        artifact_url=None,
        require=require,
        environ=ci_env(server, **env),
        retry=FAST,
    )


def test_first_run_posts_and_second_run_updates(server):
    note_url = f"{server.url}/platform/gateway-config/-/merge_requests/1#note_1"
    assert comment(server, "# Plan v1\n") == (0, f"Posted the plan on merge request !1: {note_url}")
    assert comment(server, "# Plan v2\n") == (
        0,
        f"Updated the plan note on merge request !1: {note_url}",
    )
    assert comment(server, "# Plan v2\n") == (
        0,
        f"The plan note on merge request !1 is already up to date: {note_url}",
    )
    assert len(server.notes(1, 1)) == 1


def test_an_outage_does_not_fail_the_plan_job(server):
    server.inject_fault(503, times=100)
    assert comment(server, "# Plan\n") == (
        0,
        "warning: the plan was not posted on the merge request: reading merge request !1 "
        "failed: GitLab answered 503 Service Unavailable (gave up after 2 attempts) "
        "(hint: GitLab is unavailable or overloaded; run the job again later)",
    )


def test_an_outage_fails_the_job_when_the_comment_is_required(server):
    server.inject_fault(503, times=100)
    code, message = comment(server, "# Plan\n", require=True)
    assert code == 1
    assert message.startswith(
        "error: could not post the plan on the merge request: reading merge request !1 failed: "
        "GitLab answered 503 Service Unavailable"
    )


def test_a_hanging_server_times_out_and_the_job_still_succeeds(server):
    server.inject_fault(times=100, hang=5.0)
    code, message = post_plan_comment(
        "# Plan\n",
        gateway="ai-gateway",
        environment="production",
        artifact_url=None,
        require=False,
        environ=ci_env(server),
        retry=FAST,
        timeout=0.3,
    )
    assert code == 0
    assert message == (
        "warning: the plan was not posted on the merge request: reading merge request !1 "
        "failed: GitLab did not answer within 0.3s (gave up after 2 attempts) "
        "(hint: GitLab is unavailable or overloaded; run the job again later)"
    )


def test_outside_a_merge_request_pipeline_the_comment_is_skipped(server):
    code, message = comment(server, "# Plan\n", CI_MERGE_REQUEST_IID="")
    assert code == 0
    assert message == (
        "warning: the plan was not posted on the merge request: GitLab CI variable not set: "
        "CI_MERGE_REQUEST_IID (hint: run the job in a merge request pipeline "
        '(rules: - if: $CI_PIPELINE_SOURCE == "merge_request_event"), or export the variable '
        "when running outside GitLab CI)"
    )
    assert server.requests == []


def test_a_rejected_token_fails_a_required_comment_without_printing_it(server):
    code, message = comment(server, "# Plan\n", require=True, GITLAB_TOKEN="glpat-secret-value")
    assert code == 1
    assert message == (
        "error: could not post the plan on the merge request: reading merge request !1 failed: "
        "GitLab answered 401 Unauthorized (hint: GITLAB_TOKEN was rejected (wrong, expired or "
        "revoked); set GITLAB_TOKEN (a masked CI/CD variable) to a project or personal access "
        "token with the `api` scope)"
    )
    assert "glpat-secret-value" not in message


def test_a_note_over_the_servers_limit_is_reported_with_gitlabs_message(server):
    server.note_max_chars = 100  # an instance configured below GitLab's usual limit
    code, message = comment(server, "# Plan\n" + "~ change\n" * 20)
    assert code == 0
    assert message == (
        "warning: the plan was not posted on the merge request: creating the plan note on "
        "merge request !1 failed: GitLab answered 400: note is too long (maximum is 100 "
        "characters)"
    )


def test_the_default_artifact_link_is_the_jobs_plan_md():
    env = load_ci_env({"CI_JOB_URL": "https://gitlab.example.com/p/r/-/jobs/77"})
    assert default_artifact_url(env) == (
        "https://gitlab.example.com/p/r/-/jobs/77/artifacts/file/plan.md"
    )
    assert default_artifact_url(load_ci_env({})) is None
