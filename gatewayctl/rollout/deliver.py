"""Getting an edited Rollout to the gateway: a Git commit, a merge request, or break-glass apply.

`--commit`         commits the one edited file in the root's Git repository (nothing else that
                   is staged or changed goes into that commit).
`--merge-request`  redoes the edit on the target branch's current head (read through the
                   GitLab API), commits it on a branch of its own (one per action) and opens
                   or updates its merge request, with the plan of the change as the
                   description. Uses GitLab CI's variables (CI_API_V4_URL, CI_PROJECT_ID,
                   GITLAB_TOKEN). The working tree is not touched.
`--apply --live`   break-glass: applies the edited root straight to the live gateway. Git is
                   still edited, so committing the file afterwards keeps Git the truth.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gatewayctl.errors import GatewayctlError
from gatewayctl.ir import GatewayIR
from gatewayctl.rollout.steps import Transition

if TYPE_CHECKING:
    from gatewayctl.gitlab.client import GitLabContext
    from gatewayctl.gitlab.repository import FolderAtHead

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


def repo_top(path: Path) -> Path:
    """The top of the Git work tree holding `path` (a folder or a file).

    Git is required: without it the file's place in the repository would be a guess, and a
    guessed path commits a new file at the wrong place instead of editing the manifest.
    """
    folder = path if path.is_dir() else path.parent
    try:
        found = _git(["rev-parse", "--show-toplevel"], folder, "finding the repository")
    except GatewayctlError as err:
        if err.message == "git is not installed":
            raise GatewayctlError(
                "git is not installed: it is needed to find where the manifest root is in its "
                "repository", hint="install git (the gatewayctl image has it)") from None
        raise GatewayctlError(f"{folder} is not in a Git repository ({err.message})",
                              hint="run gatewayctl inside a clone of the manifest repository"
                              ) from None
    return Path(found)


def repo_relative(path: Path) -> str:
    """`path`'s place inside its Git repository ("" for the top), with `/` separators."""
    top = repo_top(path).resolve()
    rel = path.resolve().relative_to(top).as_posix()
    return "" if rel == "." else rel


def commit_file(path: Path, message: str) -> str:
    """Commit exactly this file's current content; returns the new commit's id."""
    top = repo_top(path)
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


def branch_for(name: str, transition: Transition) -> str:
    """One branch per action, so that a proposal never overwrites another: a scheduled
    promotion cannot replace a person's pending abort."""
    after = transition.after
    if transition.action == "promote":
        slug = "complete" if after.state == "completed" else f"step-{after.step}"
    else:
        slug = transition.action
    return f"gatewayctl/rollout-{name}-{slug}"


def propose(head: FolderAtHead, ctx: GitLabContext, *, target: str, branch: str,
            files: dict[str, str], title: str, description: str, message: str) -> str:
    """Open (or update) the merge request of an edit made on `head`; returns a summary line."""
    from gatewayctl.gitlab.merge_requests import open_merge_request

    result = open_merge_request(ctx, branch=branch, base=target, title=title,
                                description=description, files=files,
                                commit_message=message, start_sha=head.sha)
    commit = f", commit {result.commit_sha[:12]}" if result.commit_sha else ", no new commit"
    return (f"merge request !{result.iid} {result.action}: {result.url} "
            f"({branch} -> {target} at {head.sha[:12]}{commit})")


def apply_live(root: Path, ir: GatewayIR, live: str, say: Callable[[str], None],
               context: str | None = None) -> str:
    """Break-glass: apply the edited root to `live` now, through the same plan/apply path as
    `gatewayctl apply ROOT --live SOURCE --auto-approve` (its lock, its plan, its checks)."""
    from gatewayctl.orchestrate import apply_root, desired_state
    from gatewayctl.plan.format import format_text
    from gatewayctl.targets import parse_target
    from gatewayctl.targets.kubernetes.options import KubeOptions

    target = parse_target(live, root, KubeOptions(context=context))
    try:
        desired = desired_state(ir, target)
        _, report = apply_root(desired, target, confirm=lambda _plan: True,
                               show=lambda plan: say(format_text(plan).rstrip("\n")), say=say)
    finally:
        target.close()
    return report.summary if report else f"{live} already serves this; nothing to apply"
