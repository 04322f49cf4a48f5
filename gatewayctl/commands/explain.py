"""`gatewayctl explain` and `gatewayctl test`: one request explained from the IR, and the
RequestTest cases of a root run offline (through explain) or through the local gateway.

Thin commands: parse, call the core, print, exit code. Imports only typer and the standard
library at import time.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gatewayctl.commands import TEXT_JSON, check_output, output_option
from gatewayctl.errors import EXIT_ERROR, EXIT_OK, GatewayctlError, UsageError

if TYPE_CHECKING:
    from gatewayctl.manifests.manifest_set import ManifestSet

RootArg = Annotated[Path, typer.Argument(help="Manifest root folder.")]


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not name or any(c in name for c in " \t"):
        raise UsageError(f'invalid header "{text[:60]}"', hint="give headers as -H 'Name: value'")
    return name.lower(), value.strip()


USED_KINDS = ("requests", "tokens", "budget")


def parse_used(text: str) -> tuple[str, float]:
    """`--used KIND=AMOUNT`: what the request's limit buckets already hold this period."""
    kind, sep, amount = text.partition("=")
    kind = kind.strip()
    hint = ("give --used requests=N, tokens=N or budget=USD: what the buckets already hold "
            "in this period, e.g. --used budget=480")
    if not sep or kind not in USED_KINDS:
        raise UsageError(f'invalid --used "{text[:60]}"', hint=hint)
    try:
        value = float(amount)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise UsageError(f'invalid --used "{text[:60]}": {amount.strip()!r} is not a '
                         "number of 0 or more", hint=hint)
    return kind, value


def _read_request(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    path = Path(source)
    try:
        return path.read_bytes()
    except OSError as err:
        raise UsageError(f"cannot read the request {source}: {err.strerror or err}",
                         hint="give a file with the JSON body the client sends, or - for "
                              "standard input") from None


def explain_command(
    root: RootArg = Path("."),
    request: Annotated[str, typer.Option(
        "--request", "-r", help="The request body (JSON, as the client sends it): FILE or -.")
    ] = "-",
    consumer: Annotated[str | None, typer.Option(
        "--consumer", help="The request carries this consumer's API key.")] = None,
    jwt_issuer: Annotated[str | None, typer.Option(
        "--jwt-issuer", help="With --consumer: the consumer comes with a valid JWT of this "
        "issuer instead of its API key.")] = None,
    header: Annotated[list[str] | None, typer.Option(
        "--header", "-H", help="A request header, 'Name: value' (repeatable).")] = None,
    path: Annotated[str, typer.Option(
        "--path", help="The endpoint: /v1/chat/completions, /v1/completions, /v1/embeddings.")
    ] = "/v1/chat/completions",
    used: Annotated[list[str] | None, typer.Option(
        "--used", help="What a limit's bucket already holds this period: requests=N, "
        "tokens=N or budget=USD (repeatable); an exhausted limit gives 429.")] = None,
    output: Annotated[str, output_option(TEXT_JSON)] = "text",
) -> int:
    """Explain what the gateway does with one request: route, status and why, backends,
    fallback, prompt, limits, guardrails, cost. Computed from the manifests; nothing runs."""

    from gatewayctl.diagnostics import did_you_mean
    from gatewayctl.explain import (
        ExplainRequest,
        UnknownConsumer,
        UnknownIssuer,
        explain_request,
    )
    from gatewayctl.explain.format import format_json, format_text
    from gatewayctl.output import use_colour
    from gatewayctl.pipeline import compile_root

    check_output(output, TEXT_JSON)
    headers = tuple(parse_header(h) for h in header or [])
    counts = dict(parse_used(u) for u in used or [])
    data = _read_request(request)
    compiled = compile_root(root)
    for warning in compiled.warnings:
        typer.echo(warning.format(str(root)), err=True)
    try:
        exp = explain_request(compiled.ir, ExplainRequest(
            data, path, headers, consumer, jwt_issuer, tuple(sorted(counts.items()))))
    except UnknownIssuer:
        issuers = sorted({p.issuer for p in compiled.ir.jwt_providers()})
        raise UsageError(
            f"--jwt-issuer {jwt_issuer}: " + ("needs --consumer" if consumer is None
                                              else "no policy of this root accepts it"),
            hint=f"issuers: {', '.join(issuers) or 'none'}") from None
    except UnknownConsumer:
        names = [c.name for c in compiled.ir.consumers]
        guess = did_you_mean(consumer or "", names)
        raise UsageError(
            f'there is no Consumer "{consumer}" in {root}',
            hint=f'did you mean "{guess}"?' if guess else
            f"consumers: {', '.join(names) or 'none'}") from None
    if output == "json":
        sys.stdout.write(format_json(exp))
    else:
        sys.stdout.write(format_text(exp, colour=use_colour(sys.stdout)))
    return EXIT_OK


def _parse_junit(values: list[str]) -> list[Path]:
    paths = []
    for value in values:
        fmt, sep, path = value.partition("=")
        if fmt != "junit" or not sep or not path:
            raise UsageError(f'invalid --report "{value}"', hint="use --report junit=FILE")
        paths.append(Path(path))
    return paths


def test_command(
    root: RootArg = Path("."),
    live: Annotated[str | None, typer.Option(
        "--live", help="Send the cases through a running gateway: local (`gatewayctl up`). "
        "Default: offline, through explain.")] = None,
    report: Annotated[list[str] | None, typer.Option(
        "--report", help="Write a report: junit=FILE (repeatable).")] = None,
    require_tests: Annotated[bool, typer.Option(
        "--require-tests", help="Fail (exit 1) when the root has no RequestTest case. "
        "Default: a root without cases says so and exits 0.")] = False,
) -> int:
    """Run the RequestTest cases of a root: offline through explain, or through the local
    gateway with --live local. Exits 1 when a case fails, naming each; a root without cases
    exits 0 (1 with --require-tests)."""

    from gatewayctl.atomic import write_output
    from gatewayctl.output import use_colour
    from gatewayctl.pipeline import compile_root
    from gatewayctl.request_tests.cases import collect_cases
    from gatewayctl.request_tests.report import format_junit, format_text

    if live not in (None, "local"):
        raise UsageError(f'unknown --live "{live}" for test',
                         hint="use --live local (a gateway started with `gatewayctl up`), "
                              "or leave it out to test offline")
    junit = _parse_junit(report or [])
    compiled = compile_root(root, local=live is not None)  # --live local: gatewayctl's Envoy
    for warning in compiled.warnings:
        typer.echo(warning.format(str(root)), err=True)
    cases = collect_cases(compiled.manifests)
    mode = "live: local gateway" if live else "offline: explain"
    if not cases:
        for path in junit:
            write_output(path, format_junit([], mode=mode, root=str(root)), "the JUnit report")
        return _nothing_to_test(root, compiled.manifests, require_tests)
    if live:
        from gatewayctl.request_tests.live import run_live

        results = run_live(compiled.ir, cases, root=str(root))
    else:
        from gatewayctl.request_tests.offline import run_offline

        results = run_offline(compiled.ir, cases)
    for path in junit:
        write_output(path, format_junit(results, mode=mode, root=str(root)), "the JUnit report")
    sys.stdout.write(format_text(results, mode=mode, colour=use_colour(sys.stdout)))
    return EXIT_OK if all(r.passed for r in results) else EXIT_ERROR


def _nothing_to_test(root: Path, manifests: ManifestSet, required: bool) -> int:
    """A root without RequestTest cases: exit 0 saying so (the GitLab template runs `test` on
    every root), or an error with --require-tests. Either way the message says what was read,
    so a root argument that points at the wrong folder shows."""
    files = len({doc.path for doc in manifests.documents})
    read = (f"{files} file{'s' * (files != 1)}, {len(manifests.documents)} "
            f"document{'s' * (len(manifests.documents) != 1)} read")
    hint = ("add a RequestTest manifest (kind: RequestTest, docs/explain-and-test.md) to a "
            "*.yaml or *.yml file under the root; hidden folders are not read")
    if required:
        raise GatewayctlError(f"no RequestTest cases in {root} ({read}), and --require-tests "
                              "asks for at least one", hint=hint)
    typer.echo(f"no RequestTest cases in {root} ({read}): nothing to test")
    typer.echo(f"  hint: {hint}; --require-tests makes a root without cases fail", err=True)
    return EXIT_OK


def register(app: typer.Typer) -> None:
    app.command("explain")(explain_command)
    app.command("test")(test_command)
