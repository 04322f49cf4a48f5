"""Proposing a change by merge request: branch, one commit of the edited files, the MR.

Used by `gatewayctl rollout promote|abort --merge-request`. The operation looks before it
writes (branch there? file already has this text? an open merge request for the branch?), so
running it twice, or retrying it after a failure, changes nothing the first run did.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gatewayctl.errors import GatewayctlError
from gatewayctl.gitlab.client import NO_CLIENT_RETRY, GitLabContext, GitLabSession, run_with_retries
from gatewayctl.gitlab.errors import GitLabNotFound, GitLabRequestError


@dataclass(frozen=True)
class MRResult:
    """The merge request carrying the change."""

    action: Literal["created", "updated"]
    iid: int
    url: str
    branch: str
    branch_created: bool
    commit_sha: str | None  # None: the branch already held exactly these files


def open_merge_request(
    ctx: GitLabContext,
    branch: str,
    base: str,
    title: str,
    description: str,
    files: Mapping[str, str],
    commit_message: str,
    *,
    start_sha: str | None = None,
) -> MRResult:
    """Commit `files` (path -> new text) to `branch` off `base` and open or update its MR.

    With `start_sha` (the commit the files were edited on), the branch is exactly one commit
    on top of it: an existing branch that is not is reset there (the commits API's `force`),
    so the merge request never carries an edit of an older version of the files.
    """
    if branch == base:
        raise GatewayctlError(
            f"the merge request branch and its target are both {branch!r}",
            "choose a new branch name for the change",
        )

    def once(session: GitLabSession) -> MRResult:
        project = session.gl.projects.get(ctx.project, lazy=True)
        if start_sha is not None:
            branch_created, sha = _commit_on(session, project, branch, start_sha, files,
                                             commit_message)
        else:
            branch_created = _ensure_branch(session, project, branch, base)
            sha = _commit(session, project, branch, commit_message,
                          _file_actions(session, project, branch, files), {})
        action, mr = _upsert_merge_request(session, project, branch, base, title, description)
        return MRResult(action, int(mr["iid"]), str(mr["web_url"]), branch, branch_created, sha)

    return run_with_retries(ctx, once)


def _commit(session: GitLabSession, project: Any, branch: str, message: str,
            actions: list[dict[str, str]], extra: dict[str, Any]) -> str | None:
    if not actions:
        return None
    commit: Any = session.call(
        f"committing {len(actions)} file(s) to branch {branch}",
        lambda: project.commits.create(
            {"branch": branch, "commit_message": message, "actions": actions, **extra},
            **NO_CLIENT_RETRY,
        ),
    )
    return str(commit.id)


def _commit_on(session: GitLabSession, project: Any, branch: str, start_sha: str,
               files: Mapping[str, str], message: str) -> tuple[bool, str | None]:
    """(branch created, new commit or None): `branch` = one commit of `files` on start_sha."""
    try:
        current: Any = session.call(
            f"reading branch {branch}", lambda: project.branches.get(branch, **NO_CLIENT_RETRY))
    except GitLabNotFound:
        current = None
    if current is not None and list(current.commit.get("parent_ids") or []) == [start_sha] \
            and not _file_actions(session, project, branch, files):
        return False, None  # already exactly this change on this head
    actions = _file_actions(session, project, start_sha, files)
    if not actions:
        raise GatewayctlError(f"the files already read so at {start_sha[:12]}: nothing to propose")
    sha = _commit(session, project, branch, message, actions,
                  {"start_sha": start_sha, "force": current is not None})
    return current is None, sha


def _ensure_branch(session: GitLabSession, project: Any, branch: str, base: str) -> bool:
    try:
        session.call(
            f"reading branch {branch}", lambda: project.branches.get(branch, **NO_CLIENT_RETRY)
        )
        return False
    except GitLabNotFound:
        pass
    session.call(
        f"creating branch {branch} from {base}",
        lambda: project.branches.create({"branch": branch, "ref": base}, **NO_CLIENT_RETRY),
    )
    return True


def _file_actions(
    session: GitLabSession, project: Any, ref: str, files: Mapping[str, str]
) -> list[dict[str, str]]:
    """The commit actions that make `files` read so, compared with `ref` (branch or sha)."""
    actions: list[dict[str, str]] = []
    for path in sorted(files):
        text = files[path]
        try:
            current: Any = session.call(
                f"reading {path} at {ref}",
                functools.partial(project.files.raw, file_path=path, ref=ref, **NO_CLIENT_RETRY),
            )
        except GitLabNotFound:
            actions.append({"action": "create", "file_path": path, "content": text})
            continue
        if bytes(current).decode("utf-8", "replace") != text:
            actions.append({"action": "update", "file_path": path, "content": text})
    return actions


def _upsert_merge_request(
    session: GitLabSession, project: Any, branch: str, base: str, title: str, description: str
) -> tuple[Literal["created", "updated"], dict[str, Any]]:
    for _ in range(2):  # a 409 means one appeared since we looked: look again
        existing = _open_merge_request_for(session, project, branch)
        if existing is not None:
            iid = int(existing["iid"])
            changes = {"title": title, "description": description, "target_branch": base}
            updated: Any = session.call(
                f"updating merge request !{iid}",
                functools.partial(project.mergerequests.update, iid, changes, **NO_CLIENT_RETRY),
            )
            return "updated", dict(updated)
        data = {
            "source_branch": branch,
            "target_branch": base,
            "title": title,
            "description": description,
            "remove_source_branch": True,
        }
        try:
            created: Any = session.call(
                f"opening a merge request from {branch} into {base}",
                functools.partial(project.mergerequests.create, data, **NO_CLIENT_RETRY),
            )
        except GitLabRequestError as err:
            if err.status == 409:
                continue
            raise
        return "created", created.asdict()
    raise GitLabRequestError(f"could not open or find the merge request for branch {branch}")


def _open_merge_request_for(
    session: GitLabSession, project: Any, branch: str
) -> dict[str, Any] | None:
    found: Any = session.call(
        f"looking for an open merge request from {branch}",
        lambda: project.mergerequests.list(
            source_branch=branch, state="opened", per_page=20, page=1, **NO_CLIENT_RETRY
        ),
    )
    mrs = [mr.asdict() for mr in found]
    return min(mrs, key=lambda mr: int(mr["iid"])) if mrs else None


def merge_request_of_commit(ctx: GitLabContext, sha: str) -> str | None:
    """The web URL of the merged merge request that produced commit `sha` (its merge or
    squash commit, else the one merged request that contains it); None when there is none."""

    def once(session: GitLabSession) -> str | None:
        project = session.gl.projects.get(ctx.project, lazy=True)
        commit = project.commits.get(sha, lazy=True)
        found: Any = session.call(f"looking up the merge request of commit {sha[:12]}",
                                  lambda: commit.merge_requests(**NO_CLIENT_RETRY))
        merged = [dict(mr) for mr in found if dict(mr).get("state") == "merged"]
        exact = [mr for mr in merged
                 if sha in (mr.get("merge_commit_sha"), mr.get("squash_commit_sha"))]
        chosen = exact or (merged if len(merged) == 1 else [])
        return str(chosen[0]["web_url"]) if chosen else None

    return run_with_retries(ctx, once)
