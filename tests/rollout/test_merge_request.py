"""`rollout promote --merge-request`: branch, commit and merge request with the plan, against
the local GitLab API server (python-gitlab over real HTTP, nothing patched)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.gitlab_api import DEVELOPER_TOKEN, REPORTER_TOKEN, GitLabAPIServer
from tests.rollout.helpers import BASE, ROLLOUT, cli, init_git

BRANCH = "gatewayctl/rollout-chat-nov"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A manifest root in the `gateway/` folder of a Git repository."""
    repo = tmp_path / "repo"
    (repo / "gateway").mkdir(parents=True)
    (repo / "gateway" / "gateway.yaml").write_text(BASE)
    (repo / "gateway" / "rollout.yaml").write_text(ROLLOUT)
    init_git(repo)
    return repo


@pytest.fixture
def gitlab() -> Iterator[GitLabAPIServer]:
    with GitLabAPIServer() as server:
        server.add_project("platform/gateway-config",
                           files={"gateway/gateway.yaml": BASE, "gateway/rollout.yaml": ROLLOUT})
        yield server


def env(server: GitLabAPIServer, token: str = DEVELOPER_TOKEN) -> dict[str, str | None]:
    return {"CI_API_V4_URL": server.api_url, "CI_PROJECT_ID": "1", "GITLAB_TOKEN": token,
            "CI_DEFAULT_BRANCH": "main", "CI_JOB_TOKEN": None, "CI_MERGE_REQUEST_IID": None}


def test_promote_opens_a_merge_request_with_the_plan(repo: Path, gitlab: GitLabAPIServer) -> None:
    app, runner = cli()
    result = runner.invoke(app, ["rollout", "promote", "chat-nov", "--root",
                                 str(repo / "gateway"), "--merge-request"], env=env(gitlab))
    assert result.exit_code == 0, result.stderr
    local = (repo / "gateway" / "rollout.yaml").read_text()
    assert gitlab.file_text(1, BRANCH, "gateway/rollout.yaml") == local
    assert gitlab.file_text(1, "main", "gateway/rollout.yaml") == ROLLOUT
    mr = gitlab.projects[1].merge_requests[1]
    assert (mr["source_branch"], mr["target_branch"], mr["title"]) == (
        BRANCH, "main", "Rollout chat-nov: promote to step 2/3 (canary 25%)")
    description = mr["description"]
    assert "Proposed by `gatewayctl rollout` from `rollout.yaml`." in description
    assert "gpt-4o-2024-11-20" in description and "25" in description  # the plan's weights
    assert "-  step: 1      # 5%\n+  step: 2      # 5%" in description
    assert result.stdout.splitlines()[-1] == (
        f"merge request !1 created: {gitlab.url}/platform/gateway-config/-/merge_requests/1 "
        f"({BRANCH} -> main, commit {gitlab.projects[1].branches[BRANCH][:12]})")

    # A second promotion updates the same merge request with a new commit.
    again = runner.invoke(app, ["rollout", "promote", "chat-nov", "--root",
                                str(repo / "gateway"), "--merge-request"], env=env(gitlab))
    assert again.exit_code == 0, again.stderr
    assert list(gitlab.projects[1].merge_requests) == [1]
    assert "merge request !1 updated" in again.stdout
    assert "step: 3" in (gitlab.file_text(1, BRANCH, "gateway/rollout.yaml") or "")


def test_a_refused_merge_request_is_one_clear_error(repo: Path,
                                                     gitlab: GitLabAPIServer) -> None:
    app, runner = cli()
    result = runner.invoke(app, ["rollout", "abort", "chat-nov", "--root",
                                 str(repo / "gateway"), "--merge-request"],
                           env=env(gitlab, REPORTER_TOKEN))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"error: creating branch {BRANCH} from main failed: GitLab answered 403 Forbidden")
