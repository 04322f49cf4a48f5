"""Reading GitLab CI's predefined variables."""

from __future__ import annotations

import pytest

from gatewayctl.gitlab.ci_env import CiEnv, load_ci_env
from gatewayctl.gitlab.client import GitLabContext
from gatewayctl.gitlab.errors import CiEnvError

MR_JOB = {
    "CI_API_V4_URL": "https://gitlab.example.com/api/v4",
    "CI_SERVER_URL": "https://gitlab.example.com",
    "CI_PROJECT_ID": "42",
    "CI_PROJECT_PATH": "platform/gateway-config",
    "CI_MERGE_REQUEST_IID": "7",
    "CI_PIPELINE_URL": "https://gitlab.example.com/platform/gateway-config/-/pipelines/9",
    "CI_JOB_URL": "https://gitlab.example.com/platform/gateway-config/-/jobs/11",
    "CI_COMMIT_SHA": "0123456789abcdef0123456789abcdef01234567",
    "CI_COMMIT_REF_NAME": "raise-limits",
    "CI_DEFAULT_BRANCH": "main",
    "CI_ENVIRONMENT_NAME": "production",
    "CI_JOB_TOKEN": "glcbt-secret-job-token",
    "GITLAB_TOKEN": "glpat-secret-token",
}


def test_reads_every_variable():
    env = load_ci_env(MR_JOB)
    assert env == CiEnv(
        api_v4_url="https://gitlab.example.com/api/v4",
        server_url="https://gitlab.example.com",
        project_id="42",
        project_path="platform/gateway-config",
        merge_request_iid=7,
        pipeline_url="https://gitlab.example.com/platform/gateway-config/-/pipelines/9",
        job_url="https://gitlab.example.com/platform/gateway-config/-/jobs/11",
        commit_sha="0123456789abcdef0123456789abcdef01234567",
        commit_ref_name="raise-limits",
        default_branch="main",
        environment_name="production",
        job_token="glcbt-secret-job-token",
        gitlab_token="glpat-secret-token",
    )
    assert (env.api_url, env.project, env.in_merge_request) == (
        "https://gitlab.example.com/api/v4",
        "42",
        True,
    )


def test_the_value_is_frozen_and_its_repr_hides_tokens():
    env = load_ci_env(MR_JOB)
    with pytest.raises(AttributeError):
        env.project_id = "1"  # type: ignore[misc]
    assert "secret" not in repr(env)
    ctx = GitLabContext.from_ci_env(env, need_merge_request=True)
    assert "secret" not in repr(ctx)
    assert (ctx.token, ctx.token_kind, ctx.merge_request_iid) == (
        "glpat-secret-token",
        "private",
        7,
    )


def test_falls_back_to_server_url_project_path_and_job_token():
    env = load_ci_env(
        {
            "CI_SERVER_URL": "https://gitlab.example.com/",
            "CI_PROJECT_PATH": "platform/gateway-config",
            "CI_JOB_TOKEN": "glcbt-x",
            "GITLAB_TOKEN": "",
        }
    )
    ctx = GitLabContext.from_ci_env(env)
    assert (ctx.api_url, ctx.project, ctx.token_kind) == (
        "https://gitlab.example.com/api/v4",
        "platform/gateway-config",
        "job",
    )


def test_missing_variables_are_named_with_a_hint():
    with pytest.raises(CiEnvError) as caught:
        GitLabContext.from_ci_env(load_ci_env({}), need_merge_request=True)
    assert caught.value.message == (
        "GitLab CI variables not set: CI_API_V4_URL (or CI_SERVER_URL), CI_PROJECT_ID (or "
        "CI_PROJECT_PATH), GITLAB_TOKEN (or CI_JOB_TOKEN), CI_MERGE_REQUEST_IID"
    )
    assert caught.value.hint == (
        "set GITLAB_TOKEN (a masked CI/CD variable) to a project or personal access token with "
        "the `api` scope"
    )


def test_a_named_field_can_be_required():
    with pytest.raises(CiEnvError) as caught:
        load_ci_env({}).require("default_branch")
    assert caught.value.message == "GitLab CI variable not set: CI_DEFAULT_BRANCH"
    assert caught.value.hint == (
        "run this inside a GitLab CI job, or export the variables when running elsewhere"
    )


def test_a_non_numeric_merge_request_iid_is_an_error():
    with pytest.raises(CiEnvError) as caught:
        load_ci_env({"CI_MERGE_REQUEST_IID": "!7"})
    assert caught.value.message == "CI_MERGE_REQUEST_IID must be a merge request number, not '!7'"
