"""`rollout promote|abort --merge-request`: the edit is redone on the target branch's current
head (read through the API), committed on a branch of its own per action, and proposed with
the plan; against the local GitLab API server (python-gitlab over real HTTP, nothing patched)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.gitlab_api import DEVELOPER_TOKEN, REPORTER_TOKEN, GitLabAPIServer
from tests.rollout.helpers import BASE, ROLLOUT, cli, init_git

PROMOTE_BRANCH = "gatewayctl/rollout-chat-nov-step-2"
ABORT_BRANCH = "gatewayctl/rollout-chat-nov-abort"
LATER = ROLLOUT.replace("# Canary of chat to the November model.",
                        "# Canary of chat to the November model (owner: platform).")


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


def land_on_main(server: GitLabAPIServer, path: str, text: str) -> str:
    """Someone else's change merged after the job's checkout."""
    project = server.projects[1]
    parent = project.branches["main"]
    tree = {**project.trees[parent], path: text}
    sha = server._commit(project, parent, tree, "Name the owner", "someone")
    project.branches["main"] = sha
    return sha


def test_promote_is_made_on_the_current_head_of_main(repo: Path, gitlab: GitLabAPIServer) -> None:
    head = land_on_main(gitlab, "gateway/rollout.yaml", LATER)
    runner = cli()

    result = runner.invoke(["rollout", "promote", "chat-nov", "--root",
                                 str(repo / "gateway"), "--merge-request"], env=env(gitlab))

    assert result.exit_code == 0, result.stderr
    proposed = gitlab.file_text(1, PROMOTE_BRANCH, "gateway/rollout.yaml")
    # the change that landed meanwhile is kept; only the step (and its start) changed
    assert proposed is not None and "(owner: platform)" in proposed
    assert "  step: 2      # 5%" in proposed
    assert gitlab.file_text(1, "main", "gateway/rollout.yaml") == LATER
    branch_commit = gitlab.projects[1].commits[gitlab.projects[1].branches[PROMOTE_BRANCH]]
    assert branch_commit["parent_ids"] == [head]
    # the working tree is not touched: the change lives in the merge request
    assert (repo / "gateway" / "rollout.yaml").read_text() == ROLLOUT
    mr = gitlab.projects[1].merge_requests[1]
    assert (mr["source_branch"], mr["target_branch"], mr["title"]) == (
        PROMOTE_BRANCH, "main", "Rollout chat-nov: promote to step 2/3 (canary 25%)")
    description = mr["description"]
    assert "Proposed by `gatewayctl rollout` from `rollout.yaml`." in description
    assert "-  step: 1      # 5%\n+  step: 2      # 5%" in description
    assert result.stdout.splitlines()[-1] == (
        f"merge request !1 created: {gitlab.url}/platform/gateway-config/-/merge_requests/1 "
        f"({PROMOTE_BRANCH} -> main at {head[:12]}, "
        f"commit {gitlab.projects[1].branches[PROMOTE_BRANCH][:12]})")

    # the same promotion again: same branch, same merge request, still one commit on the head
    again = runner.invoke(["rollout", "promote", "chat-nov", "--root",
                                str(repo / "gateway"), "--merge-request"], env=env(gitlab))
    assert again.exit_code == 0, again.stderr
    assert list(gitlab.projects[1].merge_requests) == [1]
    assert "merge request !1 updated" in again.stdout
    branch_commit = gitlab.projects[1].commits[gitlab.projects[1].branches[PROMOTE_BRANCH]]
    assert branch_commit["parent_ids"] == [head]


def test_each_action_has_its_own_branch(repo: Path, gitlab: GitLabAPIServer) -> None:
    """A promotion proposed later cannot overwrite a pending abort, nor the other way round."""
    runner = cli()
    root = str(repo / "gateway")
    abort = runner.invoke(["rollout", "abort", "chat-nov", "--root", root,
                                "--merge-request"], env=env(gitlab))
    promote = runner.invoke(["rollout", "promote", "chat-nov", "--root", root,
                                  "--merge-request"], env=env(gitlab))

    assert (abort.exit_code, promote.exit_code) == (0, 0), abort.stderr + promote.stderr
    mrs = gitlab.projects[1].merge_requests
    assert [mrs[i]["source_branch"] for i in sorted(mrs)] == [ABORT_BRANCH, PROMOTE_BRANCH]
    assert "state: aborted" in (gitlab.file_text(1, ABORT_BRANCH, "gateway/rollout.yaml") or "")
    assert "state: aborted" not in (gitlab.file_text(1, PROMOTE_BRANCH,
                                                     "gateway/rollout.yaml") or "x")


def test_a_branch_left_on_an_older_head_is_restarted_on_the_current_one(
        repo: Path, gitlab: GitLabAPIServer) -> None:
    runner = cli()
    root = str(repo / "gateway")
    first = runner.invoke(["rollout", "abort", "chat-nov", "--root", root,
                                "--merge-request"], env=env(gitlab))
    assert first.exit_code == 0, first.stderr
    head = land_on_main(gitlab, "gateway/rollout.yaml", LATER)

    second = runner.invoke(["rollout", "abort", "chat-nov", "--root", root,
                                 "--merge-request"], env=env(gitlab))

    assert second.exit_code == 0, second.stderr
    project = gitlab.projects[1]
    assert project.commits[project.branches[ABORT_BRANCH]]["parent_ids"] == [head]
    text = gitlab.file_text(1, ABORT_BRANCH, "gateway/rollout.yaml") or ""
    assert "(owner: platform)" in text and "state: aborted" in text
    assert list(project.merge_requests) == [1]


def test_without_git_the_merge_request_is_refused_clearly(repo: Path,
                                                          gitlab: GitLabAPIServer) -> None:
    """Without git the file's place in the repository would be a guess: never guess."""
    runner = cli()
    result = runner.invoke(["rollout", "promote", "chat-nov", "--root",
                                 str(repo / "gateway"), "--merge-request"],
                           env={**env(gitlab), "PATH": f"/nonexistent{os.pathsep}"})
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        "error: git is not installed: it is needed to find where the manifest root is in its "
        "repository")
    assert gitlab.requests == []


def test_a_refused_merge_request_is_one_clear_error(repo: Path,
                                                     gitlab: GitLabAPIServer) -> None:
    runner = cli()
    result = runner.invoke(["rollout", "abort", "chat-nov", "--root",
                                 str(repo / "gateway"), "--merge-request"],
                           env=env(gitlab, REPORTER_TOKEN))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"error: committing 1 file(s) to branch {ABORT_BRANCH} failed: GitLab answered "
        "403 Forbidden")
