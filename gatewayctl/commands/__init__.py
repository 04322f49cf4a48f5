"""Typer command groups, one module per area, each with `register(app)`.

Modules here import only typer and the standard library at import time; everything heavy is
imported inside the command bodies so that `gatewayctl --help` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable

import typer

from gatewayctl.errors import UsageError, run_guarded

DEBUG = {"enabled": False}


def run_command(body: Callable[[], int]) -> None:
    """Run a command body under the single error handler and exit with its code."""
    raise typer.Exit(run_guarded(body, debug=DEBUG["enabled"]))


def check_output(output: str, allowed: tuple[str, ...]) -> None:
    if output not in allowed:
        raise UsageError(
            f'unknown output format "{output}"', hint=f"use one of: {', '.join(allowed)}"
        )
