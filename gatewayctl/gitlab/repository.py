"""Reading a folder of the project's repository at a branch's current head, through the API.

Used by `rollout ... --merge-request`: the edit is redone on the target branch as it is now,
never on the job's own (possibly older) checkout, so a merge request cannot revert what landed
since. Reads the branch's head commit once and every file under the folder at that commit (the
tree API, then each file raw), so all files come from one commit.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from gatewayctl.errors import GatewayctlError
from gatewayctl.gitlab.client import NO_CLIENT_RETRY, GitLabContext, GitLabSession, run_with_retries

MAX_FILES = 2_000
MAX_BYTES = 20_000_000
TREE_PER_PAGE = 100


@dataclass(frozen=True)
class FolderAtHead:
    """The files under `folder` (paths relative to the repository) at commit `sha`."""

    branch: str
    sha: str
    folder: str
    files: dict[str, bytes]


def read_folder_at_head(ctx: GitLabContext, branch: str, folder: str) -> FolderAtHead:
    """Every file under `folder` ("" for the whole repository) on `branch`'s head commit.

    Hidden folders (`.gatewayctl/`, `.git*`) are skipped: the manifest loader skips them too.
    """
    prefix = folder.strip("/")

    def once(session: GitLabSession) -> FolderAtHead:
        project = session.gl.projects.get(ctx.project, lazy=True)
        head: Any = session.call(f"reading branch {branch}",
                                 lambda: project.branches.get(branch, **NO_CLIENT_RETRY))
        sha = str(head.commit["id"])

        def fetch(page: int) -> list[dict[str, Any]]:
            found = project.repository_tree(path=prefix, ref=sha, recursive=True,
                                            per_page=TREE_PER_PAGE, page=page,
                                            **NO_CLIENT_RETRY)
            return list(found)

        blobs = [item["path"] for item in session.pages(
            f"listing {prefix or 'the repository'} at {sha[:12]}", fetch,
            per_page=TREE_PER_PAGE)
            if item.get("type") == "blob" and not _hidden(item["path"], prefix)]
        if len(blobs) > MAX_FILES:
            raise GatewayctlError(f"{prefix or 'the repository'} holds {len(blobs)} files at "
                                  f"{branch}; at most {MAX_FILES} are read",
                                  hint="give the manifest root with --root")
        files: dict[str, bytes] = {}
        total = 0
        for path in sorted(blobs):
            raw: Any = session.call(
                f"reading {path} at {sha[:12]}",
                functools.partial(project.files.raw, file_path=path, ref=sha,
                                  **NO_CLIENT_RETRY))
            files[path] = bytes(raw)
            total += len(files[path])
            if total > MAX_BYTES:
                raise GatewayctlError(f"{prefix or 'the repository'} is larger than "
                                      f"{MAX_BYTES // 1_000_000} MB at {branch}",
                                      hint="give the manifest root with --root")
        return FolderAtHead(branch, sha, prefix, files)

    return run_with_retries(ctx, once)


def _hidden(path: str, prefix: str) -> bool:
    inside = path[len(prefix):].lstrip("/") if prefix else path
    return any(part.startswith(".") for part in inside.split("/"))
