"""`gatewayctl gitlab comment` and `plan --gitlab-comment`: the plan on the merge request.

Owns the policy for a failed comment: the plan job has done its real work, so a GitLab outage
or a missing token only makes it say the note could not be posted (exit 0), unless the user
asked for the comment to be required (exit 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from gatewayctl.errors import EXIT_ERROR, EXIT_OK, GatewayctlError
from gatewayctl.gitlab.ci_env import CiEnv, load_ci_env
from gatewayctl.gitlab.client import GitLabContext, RetryPolicy, with_retry
from gatewayctl.gitlab.notes import NoteResult, plan_marker_key, upsert_plan_note

PLAN_ARTIFACT = "plan.md"


def default_artifact_url(env: CiEnv, path: str = PLAN_ARTIFACT) -> str | None:
    """The job's artifact page for `path` (GitLab serves it at CI_JOB_URL/artifacts/file/...)."""
    return f"{env.job_url.rstrip('/')}/artifacts/file/{path}" if env.job_url else None


def post_plan_comment(
    plan_markdown: str,
    *,
    gateway: str,
    environment: str | None,
    artifact_url: str | None,
    require: bool,
    environ: Mapping[str, str] | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
) -> tuple[int, str]:
    """Post or update the plan note; returns the exit code and one line to print.

    `environment` defaults to CI_ENVIRONMENT_NAME and `artifact_url` to the job's `plan.md`;
    `retry` and `timeout` override the defaults of `GitLabContext`.
    """
    try:
        env = load_ci_env(environ)
        ctx = with_retry(GitLabContext.from_ci_env(env, need_merge_request=True), retry)
        if timeout is not None:
            ctx = replace(ctx, timeout=timeout)
        key = plan_marker_key(gateway, environment or env.environment_name)
        result = upsert_plan_note(
            ctx, plan_markdown, key, artifact_url or default_artifact_url(env)
        )
    except GatewayctlError as err:
        reason = err.message + (f" (hint: {err.hint})" if err.hint else "")
        if require:
            return EXIT_ERROR, f"error: could not post the plan on the merge request: {reason}"
        return (
            EXIT_OK,
            f"warning: the plan was not posted on the merge request: {reason}",
        )
    return EXIT_OK, describe_note_result(result)


def describe_note_result(result: NoteResult) -> str:
    where = f"merge request !{result.merge_request_iid}"
    shortened = " (shortened to fit GitLab's limit)" if result.truncated else ""
    if result.action == "created":
        return f"Posted the plan on {where}{shortened}: {result.url}"
    if result.action == "updated":
        return f"Updated the plan note on {where}{shortened}: {result.url}"
    return f"The plan note on {where} is already up to date: {result.url}"
