"""Getting an edited Rollout to the gateway: a Git commit, a merge request, or break-glass apply.

`--commit`         commits the one edited file in the root's Git repository (nothing else that
                   is staged or changed goes into that commit).
`--merge-request`  pushes the edit to a branch through the GitLab API (python-gitlab, see
                   `gatewayctl.gitlab.merge_requests`) and opens or updates its merge request,
                   with the plan of the change as the description. Uses GitLab CI's variables
                   (CI_API_V4_URL, CI_PROJECT_ID, GITLAB_TOKEN or CI_JOB_TOKEN).
`--apply --live`   break-glass: applies the edited root straight to the live gateway. Git is
                   still edited, so committing the file afterwards keeps Git the truth.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gatewayctl.errors import GatewayctlError
from gatewayctl.ir import GatewayIR

GIT_TIMEOUT_S = 30.0
FALLBACK_IDENTITY = ("gatewayctl", "gatewayctl@localhost")


def _git(args: list[str], cwd: Path, what: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, check=False,
                              env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    except FileNotFoundError:
        raise GatewayctlError("git is not installed", hint="install git, or drop --commit") \
            from None
    except subprocess.TimeoutExpired:
        raise GatewayctlError(f"git timed out while {what}") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise GatewayctlError(f"git failed while {what}: {detail[-1] if detail else '?'}")
    return done.stdout.strip()


def repo_top(path: Path) -> Path | None:
    try:
        return Path(_git(["rev-parse", "--show-toplevel"], path.parent, "finding the repository"))
    except GatewayctlError:
        return None


def repo_relative(path: Path) -> str:
    """The file's path inside its Git repository (the root's folder when not in one)."""
    top = repo_top(path)
    base = top if top is not None else path.parent
    return path.resolve().relative_to(base.resolve()).as_posix()


def commit_file(path: Path, message: str) -> str:
    """Commit exactly this file's current content; returns the new commit's id."""
    top = repo_top(path)
    if top is None:
        raise GatewayctlError(f"{path} is not in a Git repository",
                              hint="run gatewayctl inside a clone of the manifest repository")
    rel = path.resolve().relative_to(top.resolve()).as_posix()
    identity: list[str] = []
    try:
        _git(["config", "user.email"], top, "reading the committer")
    except GatewayctlError:
        identity = ["-c", f"user.name={FALLBACK_IDENTITY[0]}",
                    "-c", f"user.email={FALLBACK_IDENTITY[1]}"]
    _git([*identity, "commit", "--only", "--quiet", "-m", message, "--", rel], top,
         f"committing {rel}")
    return _git(["rev-parse", "HEAD"], top, "reading the new commit")


@dataclass(frozen=True)
class MergeRequestOptions:
    branch: str | None = None  # default gatewayctl/rollout-<name>
    target: str | None = None  # default CI_DEFAULT_BRANCH, else main


def merge_request_target(options: MergeRequestOptions) -> str:
    from gatewayctl.gitlab.ci_env import load_ci_env

    return options.target or load_ci_env().default_branch or "main"


def open_rollout_merge_request(name: str, path: Path, text: str, title: str,
                               description: str, message: str,
                               options: MergeRequestOptions) -> str:
    """Push the file to the MR branch and open (or update) the MR; returns a summary line."""
    from gatewayctl.gitlab.ci_env import load_ci_env
    from gatewayctl.gitlab.client import GitLabContext
    from gatewayctl.gitlab.merge_requests import open_merge_request

    ctx = GitLabContext.from_ci_env(load_ci_env())
    target = merge_request_target(options)
    branch = options.branch or f"gatewayctl/rollout-{name}"
    result = open_merge_request(ctx, branch=branch, base=target, title=title,
                                description=description, files={repo_relative(path): text},
                                commit_message=message)
    commit = f", commit {result.commit_sha[:12]}" if result.commit_sha else ", no new commit"
    return (f"merge request !{result.iid} {result.action}: {result.url} "
            f"({branch} -> {target}{commit})")


def apply_live(root: Path, ir: GatewayIR, live: str, say: Callable[[str], None]) -> str:
    """Break-glass: apply the edited root to `live` now, through the same plan/apply path as
    `gatewayctl apply ROOT --live SOURCE --auto-approve` (its lock, its plan, its checks)."""
    from gatewayctl.orchestrate import apply_root, desired_state
    from gatewayctl.plan.format import format_text
    from gatewayctl.targets import parse_target

    target = parse_target(live, root)
    try:
        desired = desired_state(ir, target)
        _, report = apply_root(desired, target, confirm=lambda _plan: True,
                               show=lambda plan: say(format_text(plan).rstrip("\n")), say=say)
    finally:
        target.close()
    return report.summary if report else f"{live} already serves this; nothing to apply"
