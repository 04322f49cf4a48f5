"""The command line: thin typer commands that parse, call one core function, print, exit.

Heavy modules (kubernetes, gitlab, deepdiff, the compiler) are imported inside the commands so
that `gatewayctl --help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from gatewayctl import __version__
from gatewayctl.errors import EXIT_OK, UsageError, run_guarded

app = typer.Typer(
    name="gatewayctl",
    help="GitOps control plane and configuration compiler for an Envoy-based AI gateway.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
schema_app = typer.Typer(help="JSON Schemas of the manifest kinds.", no_args_is_help=True)
app.add_typer(schema_app, name="schema")

_state = {"debug": False}

RootArg = Annotated[Path, typer.Argument(help="Manifest root folder.", show_default=True)]
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="text, json or markdown.")]


def _finish(code: int) -> None:
    raise typer.Exit(code)


def _check_output(output: str, allowed: tuple[str, ...]) -> None:
    if output not in allowed:
        raise UsageError(f'unknown output format "{output}"', hint=f"use one of: {', '.join(allowed)}")


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    _state["debug"] = debug


@app.command()
def version() -> None:
    """Print the gatewayctl version."""
    typer.echo(f"gatewayctl {__version__}")


@app.command()
def validate(
    root: RootArg = Path("."),
    output: OutputOpt = "text",
    strict: Annotated[bool, typer.Option(help="Fail on warnings too.")] = False,
    report: Annotated[
        list[str] | None,
        typer.Option(help="Write a report: codequality=FILE or junit=FILE (repeatable)."),
    ] = None,
) -> None:
    """Check the manifests and print every problem with file, line and a hint."""

    def body() -> int:
        from gatewayctl.validate import run_validate

        _check_output(output, ("text", "json"))
        code, text = run_validate(root, output=output, strict=strict, reports=report or [])
        sys.stdout.write(text)
        return code

    _finish(run_guarded(body, debug=_state["debug"]))


@schema_app.command("export")
def schema_export(
    out: Annotated[Path, typer.Argument(help="Folder to write the schemas to.")] = Path("schemas"),
    check: Annotated[
        bool, typer.Option("--check", help="Fail if the folder is not up to date; write nothing.")
    ] = False,
) -> None:
    """Write a JSON Schema per manifest kind (for editors and CI)."""

    def body() -> int:
        from gatewayctl.schema import export_schemas

        code, message = export_schemas(out, check=check)
        typer.echo(message)
        return code

    _finish(run_guarded(body, debug=_state["debug"]))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()

_ = EXIT_OK
