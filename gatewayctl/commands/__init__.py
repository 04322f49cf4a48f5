"""Typer command groups, one module per area, each with `register(app)`.

A command parses its options, calls the core, prints and returns its exit code; errors and
Ctrl-C go up to the one handler in `gatewayctl.cli.main`.

Modules here import only typer and the standard library at import time; everything heavy is
imported inside the command bodies so that `gatewayctl --help` stays fast.
"""

from __future__ import annotations

from typing import Any

import typer

from gatewayctl.errors import UsageError

# --debug (tracebacks on errors), set by the app's callback and read by main's error handler.
DEBUG = {"enabled": False}

# What a port option accepts (typer.Option(min=..., max=...)): a TCP port to listen on; 0
# (any free port) is not offered, as the port is then unknown to whoever connects.
PORTS = {"min": 1, "max": 65535}

# The `-o` formats of the commands that print data; each command's help and check name the
# same tuple.
TEXT_JSON = ("text", "json")
TEXT_JSON_MARKDOWN = ("text", "json", "markdown")


def output_option(formats: tuple[str, ...]) -> Any:
    """The `--output/-o` option, its help naming exactly `formats` (check them with
    `check_output(output, formats)`)."""
    spelled = f"{', '.join(formats[:-1])} or {formats[-1]}"
    return typer.Option("--output", "-o", help=f"{spelled}.")


def check_output(output: str, allowed: tuple[str, ...]) -> None:
    if output not in allowed:
        raise UsageError(
            f'unknown output format "{output}"', hint=f"use one of: {', '.join(allowed)}"
        )
