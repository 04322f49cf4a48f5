"""GitLab CI's predefined variables, read once into a frozen value.

Owns reading the environment and naming what is missing; it makes no API calls. Tokens are
kept out of `repr` so that printing the value can never leak them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gatewayctl.gitlab.errors import TOKEN_HINT, CiEnvError

# field name -> variable name, in the order a missing-variables message lists them
VARIABLES: dict[str, str] = {
    "api_v4_url": "CI_API_V4_URL",
    "server_url": "CI_SERVER_URL",
    "project_id": "CI_PROJECT_ID",
    "project_path": "CI_PROJECT_PATH",
    "merge_request_iid": "CI_MERGE_REQUEST_IID",
    "pipeline_url": "CI_PIPELINE_URL",
    "job_url": "CI_JOB_URL",
    "commit_sha": "CI_COMMIT_SHA",
    "commit_ref_name": "CI_COMMIT_REF_NAME",
    "default_branch": "CI_DEFAULT_BRANCH",
    "environment_name": "CI_ENVIRONMENT_NAME",
    "job_token": "CI_JOB_TOKEN",
    "gitlab_token": "GITLAB_TOKEN",
}


@dataclass(frozen=True)
class CiEnv:
    """The variables GitLab CI sets for a job; None where unset or empty."""

    api_v4_url: str | None = None
    server_url: str | None = None
    project_id: str | None = None
    project_path: str | None = None
    merge_request_iid: int | None = None
    pipeline_url: str | None = None
    job_url: str | None = None
    commit_sha: str | None = None
    commit_ref_name: str | None = None
    default_branch: str | None = None
    environment_name: str | None = None
    job_token: str | None = field(default=None, repr=False)
    gitlab_token: str | None = field(default=None, repr=False)

    @property
    def api_url(self) -> str | None:
        """The REST v4 base: CI_API_V4_URL, else CI_SERVER_URL + /api/v4."""
        if self.api_v4_url:
            return self.api_v4_url.rstrip("/")
        if self.server_url:
            return self.server_url.rstrip("/") + "/api/v4"
        return None

    @property
    def project(self) -> str | None:
        """The project as the API accepts it: its id, else its full path."""
        return self.project_id or self.project_path

    @property
    def in_merge_request(self) -> bool:
        return self.merge_request_iid is not None

    def require(self, *needs: str) -> None:
        """Raise CiEnvError naming every variable missing for `needs`.

        A need is a field name, or one of `api` (API URL), `project`, `token` (GITLAB_TOKEN or
        CI_JOB_TOKEN) and `merge_request`.
        """
        missing: list[str] = []
        for need in needs:
            if need == "api" and self.api_url is None:
                missing.append("CI_API_V4_URL (or CI_SERVER_URL)")
            elif need == "project" and self.project is None:
                missing.append("CI_PROJECT_ID (or CI_PROJECT_PATH)")
            elif need == "token" and not (self.gitlab_token or self.job_token):
                missing.append("GITLAB_TOKEN (or CI_JOB_TOKEN)")
            elif need == "merge_request" and self.merge_request_iid is None:
                missing.append("CI_MERGE_REQUEST_IID")
            elif need in VARIABLES and getattr(self, need) is None:
                missing.append(VARIABLES[need])
        if missing:
            raise CiEnvError(
                f"GitLab CI variable{'s' if len(missing) > 1 else ''} not set: "
                + ", ".join(missing),
                _hint_for(missing),
            )


def _hint_for(missing: Iterable[str]) -> str:
    names = " ".join(missing)
    if "GITLAB_TOKEN" in names:
        return TOKEN_HINT
    if "CI_MERGE_REQUEST_IID" in names:
        return (
            "run the job in a merge request pipeline "
            '(rules: - if: $CI_PIPELINE_SOURCE == "merge_request_event"), '
            "or export the variable when running outside GitLab CI"
        )
    return "run this inside a GitLab CI job, or export the variables when running elsewhere"


def load_ci_env(environ: Mapping[str, str] | None = None) -> CiEnv:
    """Read the variables from `environ` (default: the process environment)."""
    source = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        return (source.get(VARIABLES[name]) or "").strip() or None

    iid_text = get("merge_request_iid")
    if iid_text is not None and not iid_text.isdigit():
        raise CiEnvError(
            f"CI_MERGE_REQUEST_IID must be a merge request number, not {iid_text!r}",
            "GitLab sets it in merge request pipelines; unset it elsewhere",
        )
    return CiEnv(
        api_v4_url=get("api_v4_url"),
        server_url=get("server_url"),
        project_id=get("project_id"),
        project_path=get("project_path"),
        merge_request_iid=int(iid_text) if iid_text else None,
        pipeline_url=get("pipeline_url"),
        job_url=get("job_url"),
        commit_sha=get("commit_sha"),
        commit_ref_name=get("commit_ref_name"),
        default_branch=get("default_branch"),
        environment_name=get("environment_name"),
        job_token=get("job_token"),
        gitlab_token=get("gitlab_token"),
    )
