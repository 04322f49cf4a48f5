"""`gatewayctl gitlab comment`: post a saved plan on the merge request, as one updatable note.

Imports only typer and the standard library at import time.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

gitlab_app = typer.Typer(help="GitLab merge-request integration.", no_args_is_help=True)


@gitlab_app.command("comment")
def comment_command(
    plan_file: Annotated[Path, typer.Option(
        "--plan", help="A plan saved with `plan --out` (or printed with `-o json`).")],
    environment: Annotated[str | None, typer.Option(
        help="Environment named in the note (default: CI_ENVIRONMENT_NAME).")] = None,
    require: Annotated[bool, typer.Option(
        "--require", help="Fail when the note cannot be posted (default: warn, exit 0).")
    ] = False,
) -> int:
    """Post or update the plan note on the merge request of this GitLab CI pipeline."""

    from gatewayctl.gitlab.comment import post_plan_comment
    from gatewayctl.orchestrate import read_saved_plan
    from gatewayctl.plan.format import format_markdown

    plan = read_saved_plan(plan_file)
    code, line = post_plan_comment(format_markdown(plan), gateway=plan.gateway,
                                   environment=environment, artifact_url=None,
                                   require=require)
    print(line, file=sys.stderr)
    return code


@gitlab_app.command("source-merge-request")
def source_merge_request_command() -> int:
    """Print the URL of the merge request that CI_COMMIT_SHA came from (nothing if none).

    The pipeline's plan job exports it as GATEWAYCTL_SOURCE_MERGE_REQUEST, so that the
    applied objects record it. Needs a token that may read merge requests (GITLAB_TOKEN).
    A failed look-up is a warning, never an error: the apply does not depend on it.
    """

    from gatewayctl.errors import GatewayctlError
    from gatewayctl.gitlab.ci_env import load_ci_env
    from gatewayctl.gitlab.client import GitLabContext
    from gatewayctl.gitlab.merge_requests import merge_request_of_commit

    env = load_ci_env()
    try:
        env.require("commit_sha")
        url = merge_request_of_commit(GitLabContext.from_ci_env(env),
                                      env.commit_sha or "")
    except GatewayctlError as err:
        print(f"warning: the merge request of this commit is not known: {err.message}",
              file=sys.stderr)
        return 0
    if url:
        print(url)
    return 0


def register(app: typer.Typer) -> None:
    app.add_typer(gitlab_app, name="gitlab")
