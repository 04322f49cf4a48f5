"""`gatewayctl gitlab comment`: post a saved plan on the merge request, as one updatable note.

Imports only typer and the standard library at import time.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from gatewayctl.commands import run_command

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
) -> None:
    """Post or update the plan note on the merge request of this GitLab CI pipeline."""

    def body() -> int:
        from gatewayctl.gitlab.comment import post_plan_comment
        from gatewayctl.orchestrate import read_saved_plan
        from gatewayctl.plan.format import format_markdown

        plan = read_saved_plan(plan_file)
        code, line = post_plan_comment(format_markdown(plan), gateway=plan.gateway,
                                       environment=environment, artifact_url=None,
                                       require=require)
        print(line, file=sys.stderr)
        return code

    run_command(body)


def register(app: typer.Typer) -> None:
    app.add_typer(gitlab_app, name="gitlab")
