"""The command line: thin typer commands that parse, call one core function, print, and
return the exit code.

`main(argv) -> int` is the one entry point and holds the one error handler: it runs the typer
app without letting click exit the process, and maps everything raised, by click (usage
errors: exit 1, not click's 2) or by a command (`gatewayctl.errors`), and Ctrl-C, to a message
and an exit code. Commands neither catch nor exit; tests call `main([...])` in-process and get
the real wiring.

Heavy modules (kubernetes, gitlab, deepdiff, the compiler) are imported inside the commands so
that `gatewayctl --help` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gatewayctl import __version__
from gatewayctl.commands import DEBUG, PORTS, TEXT_JSON, check_output, output_option
from gatewayctl.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, UsageError, handle_error

try:  # typer vendors click since 0.2x; earlier versions use click itself
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors  # type: ignore[no-redef]

if TYPE_CHECKING:
    from gatewayctl.local.resp import RedisAccess

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

RootArg = Annotated[Path, typer.Argument(help="Manifest root folder.", show_default=True)]
ValidateOutputOpt = Annotated[str, output_option(TEXT_JSON)]


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"gatewayctl {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option(
        "--version", help="Print the gatewayctl version and exit.", is_eager=True,
        callback=_print_version)] = False,
) -> None:
    DEBUG["enabled"] = debug


@app.command()
def version() -> None:
    """Print the gatewayctl version."""
    typer.echo(f"gatewayctl {__version__}")


@app.command()
def validate(
    root: RootArg = Path("."),
    output: ValidateOutputOpt = "text",
    strict: Annotated[bool, typer.Option(help="Fail on warnings too.")] = False,
    report: Annotated[
        list[str] | None,
        typer.Option(help="Write a report: codequality=FILE or junit=FILE (repeatable)."),
    ] = None,
) -> int:
    """Check the manifests and print every problem with file, line and a hint."""

    from gatewayctl.validate import run_validate

    check_output(output, TEXT_JSON)
    code, text = run_validate(root, output=output, strict=strict, reports=report or [])
    sys.stdout.write(text)
    return code


@app.command()
def render(
    root: RootArg = Path("."),
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder to write the bundle to: new, empty, or an earlier "
                     "bundle (only files gatewayctl wrote are replaced or removed), outside "
                     "the manifest root and any Git work tree."),
    ] = None,
    ir: Annotated[bool, typer.Option("--ir", help="Print the compiled IR as JSON.")] = False,
    fmt: Annotated[
        str, typer.Option("--format", help="bundle (Envoy + Kubernetes) or helm-values.")
    ] = "bundle",
    target: Annotated[
        str, typer.Option("--target", help="envoy (the gateway) or litellm (a LiteLLM proxy "
                          "config: config.yaml, printed without --out).")
    ] = "envoy",
) -> int:
    """Compile the manifests into Envoy configuration and Kubernetes manifests."""

    from gatewayctl.ir import to_json
    from gatewayctl.pipeline import compile_root
    from gatewayctl.render.bundle import FORMATS, render_files
    from gatewayctl.render.k8s import Provenance
    from gatewayctl.render.output_folder import check_folder, write_folder

    if target not in ("envoy", "litellm"):
        raise UsageError(f'unknown target "{target}"', hint="use envoy or litellm")
    if fmt not in FORMATS:
        raise UsageError(f'unknown format "{fmt}"', hint=f"use one of: {', '.join(FORMATS)}")
    if target == "litellm" and (fmt != "bundle" or ir):
        raise UsageError("--target litellm writes a LiteLLM config only",
                         hint="leave out --format and --ir")
    if out is None and not ir and target != "litellm":
        raise UsageError("nothing to do", hint="give --out DIR, or --ir to print the IR")
    if out is not None:
        check_folder(out, root=root)  # before compiling: a refusal costs nothing
    compiled = compile_root(root)
    for warning in compiled.warnings:
        typer.echo(warning.format(str(root)), err=True)
    if target == "litellm":
        from gatewayctl.render.litellm import render_litellm

        export = render_litellm(compiled.ir)
        for line in export.not_expressed:
            typer.echo(f"not expressed: {line}", err=True)
        if out is None:
            sys.stdout.write(export.text())
            return 0
        write_folder(out, {"config.yaml": export.text()}, root=root)
        typer.echo(f"rendered the LiteLLM config to {out}/config.yaml "
                   f"({len(export.not_expressed)} features not expressed, listed in it)",
                   err=True)
        return 0
    if ir:
        sys.stdout.write(to_json(compiled.ir))
    if out is not None:
        files = render_files(compiled.ir, provenance=Provenance.from_environment(), fmt=fmt)
        done = write_folder(out, files, root=root)
        removed = f", removed {len(done.delete)}" if done.delete else ""
        typer.echo(f"rendered {len(files)} files to {out} ({len(done.create)} new, "
                   f"{len(done.update)} changed{removed})", err=ir)
    return 0


@schema_app.command("export")
def schema_export(
    out: Annotated[Path, typer.Argument(help="Folder to write the schemas to.")] = Path("schemas"),
    check: Annotated[
        bool, typer.Option("--check", help="Fail if the folder is not up to date; write nothing.")
    ] = False,
) -> int:
    """Write a JSON Schema per manifest kind (for editors and CI)."""

    from gatewayctl.schema import export_schemas

    code, message = export_schemas(out, check=check)
    typer.echo(message)
    return code


@app.command("mock-provider")
def mock_provider(
    port: Annotated[int, typer.Option(help="Port to listen on.", **PORTS)] = 9000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    error_rate: Annotated[
        list[str] | None,
        typer.Option(
            "--error-rate", help="[MODEL=]RATE[:STATUS], e.g. gpt-4o=0.2:503 (repeatable)."
        ),
    ] = None,
    latency: Annotated[
        list[str] | None,
        typer.Option("--latency", help="[MODEL=]DURATION, e.g. gpt-4o=150ms (repeatable)."),
    ] = None,
    require_key: Annotated[
        str | None, typer.Option(help="Refuse a request without this key, as its API does "
                                 "(OpenAI, Anthropic: 401; Gemini: 403, or 400 for another "
                                 "key). Bedrock requests are checked by signature instead.")
    ] = None,
    name: Annotated[str, typer.Option(help="Name returned in x-mock-name.")] = "mock",
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Model listed by /v1/models (repeatable).")
    ] = None,
    aws_credentials: Annotated[
        Path | None,
        typer.Option(
            "--aws-credentials",
            help="AWS credentials file whose keys Bedrock requests may be signed with.",
        ),
    ] = None,
) -> int:
    """Run the built-in mock upstream: OpenAI, Anthropic, Bedrock and Gemini APIs
    (deterministic replies, faults)."""

    from gatewayctl.local.mock_provider import (
        FaultSpecError,
        MockProviderConfig,
        build_fault_config,
        read_aws_credentials,
        run_mock_provider,
    )

    try:
        faults = build_fault_config(error_rate or [], latency or [])
        aws = {}
        if aws_credentials is not None:
            aws = read_aws_credentials(aws_credentials.read_text(encoding="utf-8"))
    except FaultSpecError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot read {aws_credentials}: {exc.strerror}") from None
    config = MockProviderConfig(
        name=name,
        require_key=require_key,
        faults=faults,
        models=tuple(model or []),
        aws_credentials=aws,
    )
    return run_mock_provider(host, port, config)


@app.command("ratelimit-service")
def ratelimit_service(
    config: Annotated[
        Path, typer.Option(help="envoyproxy/ratelimit configuration: a file or a folder.")
    ],
    redis: Annotated[str, typer.Option(help="HOST:PORT of the Redis that holds the counts.")],
    port: Annotated[int, typer.Option(help="gRPC port to listen on.", **PORTS)] = 8081,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
) -> int:
    """Run the local stand-in for Envoy's rate limit service (global limits of `up`).
    Redis's login and TLS come from the environment, as the official service reads them:
    REDIS_AUTH (password or user:password), REDIS_TLS, REDIS_TLS_CACERT."""

    from gatewayctl.local.ratelimit.server import run_service

    _check_redis_address(redis)
    return run_service(config, redis, host, port, _redis_access())


@app.command("cache-store")
def cache_store(
    gateway: Annotated[str, typer.Option(help="The Gateway's name: its entries' key prefix.")],
    redis: Annotated[str, typer.Option(help="HOST:PORT of the Redis that holds the entries.")],
    port: Annotated[int, typer.Option(help="HTTP port to listen on.", **PORTS)] = 8090,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
) -> int:
    """Run the response cache's shared store (limits.scope: global): Envoy's cache filter
    looks answers up and stores them here, in Redis. Redis's login and TLS come from the
    environment: REDIS_AUTH (password or user:password), REDIS_TLS, REDIS_TLS_CACERT."""

    from gatewayctl.local.cachestore.server import run_store_service

    _check_redis_address(redis)
    return run_store_service(gateway, redis, host, port, _redis_access())


def _redis_access() -> RedisAccess:
    """REDIS_AUTH, REDIS_TLS and REDIS_TLS_CACERT of the environment, checked before serving."""
    import os

    from gatewayctl.local.resp import RedisAccess, RedisAccessError

    try:
        access = RedisAccess.from_env(os.environ)
        access.context()  # reads REDIS_TLS_CACERT now, not at the first request
    except RedisAccessError as exc:
        raise UsageError(str(exc), hint="see docs/data-plane.md, \"Limits\"") from None
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise UsageError(f"REDIS_TLS_CACERT: cannot read the CA bundle: {exc}",
                         hint="give a PEM file of the CAs that sign Redis's certificate") from None
    return access


def _check_redis_address(redis: str) -> None:
    host_part, _, port_part = redis.rpartition(":")
    if not host_part or not port_part.isdigit() or not 1 <= int(port_part) <= 65535:
        raise UsageError(f'invalid --redis "{redis}"',
                         hint="give the Redis address as HOST:PORT, e.g. 127.0.0.1:6379")


def _register_commands() -> None:
    from gatewayctl.commands import explain, gitlab, litellm, local, plan, rollout

    plan.register(app)
    explain.register(app)
    litellm.register(app)
    local.register(app)
    rollout.register(app)
    gitlab.register(app)


_register_commands()


def main(argv: Sequence[str] | None = None) -> int:
    """Run gatewayctl with `argv` (default: the process's arguments); the exit code.

    The click command is run directly (context, then invoke) rather than through typer's
    standalone runner, which would turn Ctrl-C into a silent exit 130: every error and
    interruption reaches the one handler below.
    """
    DEBUG["enabled"] = False
    args = sys.argv[1:] if argv is None else list(argv)
    command = typer.main.get_command(app)
    try:
        command._main_shell_completion({}, "gatewayctl")  # exits when the shell completes
        with command.make_context("gatewayctl", args) as ctx:
            code = command.invoke(ctx)
    except typer.Exit as done:  # --help, --version, ctx.exit()
        return done.exit_code
    except click_errors.UsageError as err:
        if type(err).__name__ == "NoArgsIsHelpError":  # a bare command group: its help
            typer.echo(err.ctx.get_help() if err.ctx else "", err=True)
            return EXIT_ERROR
        where = err.ctx.command_path if err.ctx else "gatewayctl"
        print(f"error: {err.format_message()}", file=sys.stderr)
        print(f"  hint: see `{where} --help`", file=sys.stderr)
        return EXIT_ERROR
    except click_errors.ClickException as err:
        print(f"error: {err.format_message()}", file=sys.stderr)
        return EXIT_ERROR
    except (typer.Abort, EOFError):  # a prompt refused, or no input to answer it
        print("aborted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the one handler
        return handle_error(exc, debug=DEBUG["enabled"])
    return code if isinstance(code, int) else EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
