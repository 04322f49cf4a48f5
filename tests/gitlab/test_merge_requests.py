"""Opening the rollout merge request: branch, one commit, the MR; again: the same MR updated."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gatewayctl.errors import GatewayctlError
from gatewayctl.gitlab.client import GitLabContext, RetryPolicy
from gatewayctl.gitlab.errors import GitLabAuthError
from gatewayctl.gitlab.merge_requests import open_merge_request
from tests.fakes.gitlab_api import DEVELOPER_TOKEN, REPORTER_TOKEN, GitLabAPIServer

ROLLOUT = "rollouts/chat.yaml"
BEFORE = "kind: Rollout\nspec:\n  step: 1  # 5%\n"
AFTER = "kind: Rollout\nspec:\n  step: 2  # 25%\n"


@pytest.fixture
def server() -> Iterator[GitLabAPIServer]:
    with GitLabAPIServer() as srv:
        srv.add_project("platform/gateway-config", files={ROLLOUT: BEFORE, "gateway.yaml": "g\n"})
        yield srv


def ctx(server: GitLabAPIServer, token: str = DEVELOPER_TOKEN) -> GitLabContext:
    return GitLabContext(
        api_url=server.api_url,
        project="platform/gateway-config",
        token=token,
        retry=RetryPolicy(attempts=3, backoff=0.0, max_delay=0.01),
    )


def promote(server: GitLabAPIServer, files: dict[str, str], description: str = "step 2"):
    return open_merge_request(
        ctx(server),
        branch="gatewayctl/rollout-chat-gpt4o-nov",
        base="main",
        title="Promote rollout chat-gpt4o-nov to step 2",
        description=description,
        files=files,
        commit_message="rollout chat-gpt4o-nov: promote to step 2",
    )


def test_creates_branch_commit_and_merge_request(server):
    result = promote(server, {ROLLOUT: AFTER})

    branch = "gatewayctl/rollout-chat-gpt4o-nov"
    project = server.projects[1]
    mr = project.merge_requests[1]
    assert (result.action, result.iid, result.branch, result.branch_created) == (
        "created",
        1,
        branch,
        True,
    )
    assert result.url == f"{server.url}/platform/gateway-config/-/merge_requests/1"
    assert result.commit_sha == project.branches[branch]
    assert server.file_text(1, branch, ROLLOUT) == AFTER
    assert server.file_text(1, "main", ROLLOUT) == BEFORE
    assert project.commits[result.commit_sha]["message"] == (
        "rollout chat-gpt4o-nov: promote to step 2"
    )
    assert (mr["source_branch"], mr["target_branch"], mr["title"], mr["state"]) == (
        branch,
        "main",
        "Promote rollout chat-gpt4o-nov to step 2",
        "opened",
    )
    commit_posts = server.requests_to("POST", r"/repository/commits$")
    assert [a["action"] for a in commit_posts[0].body["actions"]] == ["update"]


def test_second_call_updates_the_same_merge_request(server):
    first = promote(server, {ROLLOUT: AFTER})
    third_step = AFTER.replace("step: 2  # 25%", "step: 3  # 50%")
    second = promote(server, {ROLLOUT: third_step, "notes/changelog.md": "promoted\n"}, "step 3")

    project = server.projects[1]
    assert (second.action, second.iid, second.branch_created) == ("updated", first.iid, False)
    assert list(project.merge_requests) == [1]
    assert project.merge_requests[1]["description"] == "step 3"
    assert second.commit_sha == project.branches["gatewayctl/rollout-chat-gpt4o-nov"]
    assert project.commits[second.commit_sha]["parent_ids"] == [first.commit_sha]
    assert server.file_text(1, "gatewayctl/rollout-chat-gpt4o-nov", "notes/changelog.md") == (
        "promoted\n"
    )
    actions = server.requests_to("POST", r"/repository/commits$")[-1].body["actions"]
    assert [(a["action"], a["file_path"]) for a in actions] == [
        ("create", "notes/changelog.md"),
        ("update", ROLLOUT),
    ]


def test_unchanged_files_make_no_commit(server):
    promote(server, {ROLLOUT: AFTER})
    again = promote(server, {ROLLOUT: AFTER})
    assert (again.action, again.commit_sha) == ("updated", None)
    assert len(server.requests_to("POST", r"/repository/commits$")) == 1


def test_a_lost_answer_to_the_commit_is_not_committed_twice(server):
    # GitLab applies the commit but the proxy answers 502: the retry sees the file is done
    server.inject_fault(502, times=1, method="POST", path=r"/merge_requests$")
    result = promote(server, {ROLLOUT: AFTER})
    assert result.action == "created"
    assert len(server.requests_to("POST", r"/repository/commits$")) == 1
    assert list(server.projects[1].merge_requests) == [1]


def test_a_reporter_cannot_push_the_branch(server):
    with pytest.raises(GitLabAuthError) as caught:
        open_merge_request(
            ctx(server, REPORTER_TOKEN), "b", "main", "t", "d", {ROLLOUT: AFTER}, "m"
        )
    assert caught.value.status == 403
    assert caught.value.message == (
        "creating branch b from main failed: GitLab answered 403 Forbidden"
    )


def test_branch_and_base_must_differ(server):
    with pytest.raises(GatewayctlError) as caught:
        open_merge_request(ctx(server), "main", "main", "t", "d", {ROLLOUT: AFTER}, "m")
    assert caught.value.message == "the merge request branch and its target are both 'main'"
