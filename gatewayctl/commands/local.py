"""`up`, `down`, `status` and `logs`: the local gateway on a real Envoy (gatewayctl/local)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gatewayctl.commands import PORTS
from gatewayctl.errors import EXIT_ERROR, EXIT_OK


def _progress(message: str) -> None:
    typer.echo(message, err=True)


def register(app: typer.Typer) -> None:
    @app.command()
    def up(
        root: Annotated[Path, typer.Argument(help="Manifest root folder.")] = Path("."),
        port: Annotated[int | None, typer.Option(
            "--port", help="Listener port (default: the Gateway's listener.port).",
            **PORTS)] = None,
        admin_port: Annotated[int, typer.Option(help="Envoy admin port.", **PORTS)] = 9901,
        mock_port: Annotated[
            int | None, typer.Option(help="Mock provider port (default: a free one).", **PORTS)
        ] = None,
        mock_all: Annotated[
            bool, typer.Option("--mock-all", help="Serve every provider from the mock.")
        ] = False,
        foreground: Annotated[
            bool,
            typer.Option("--foreground", "-f", help="Stay attached; Ctrl-C stops the gateway."),
        ] = False,
    ) -> int:
        """Run the gateway locally on a real Envoy, in the background; providers without a
        credential in ROOT/.secrets/ or not reachable are served by the built-in mock."""

        from gatewayctl.local.gateway import up as start

        result = start(
            root,
            listener_port=port,
            admin_port=admin_port,
            mock_port=mock_port,
            mock_all=mock_all,
            detach=not foreground,
            on_progress=_progress,
        )
        if not foreground:
            typer.echo(result.summary())
            typer.echo("stop it with: gatewayctl down")
        return 0

    @app.command()
    def down() -> int:
        """Stop the local gateway."""

        from gatewayctl.local.gateway import down as stop

        typer.echo(stop().summary())
        return 0

    @app.command()
    def status() -> int:
        """Show what the local gateway runs and serves. Exits 0 when it runs and is healthy,
        1 otherwise."""

        from gatewayctl.local.gateway import status as current

        result = current()
        typer.echo(result.summary())
        # Scripts branch on it: 0 only for a gateway that runs and is healthy.
        return EXIT_OK if result.running and not result.problems else EXIT_ERROR

    @app.command()
    def logs(
        sources: Annotated[list[str] | None, typer.Argument(
            help="Which logs: envoy, mock, access [default: envoy and mock].",
            show_default=False)] = None,
        follow: Annotated[bool, typer.Option(
            "--follow", "-f", help="Keep printing new lines until the gateway stops or Ctrl-C.")
        ] = False,
        tail: Annotated[str, typer.Option(
            "--tail", "-n", help="Lines to show from the end of each log, or all.")] = "100",
    ) -> int:
        """Show the local gateway's logs (Envoy, the mock provider, the access log)."""

        import sys

        from gatewayctl.local.gateway import is_running
        from gatewayctl.local.logs import parse_tail, show_logs
        from gatewayctl.local.state import StateDir

        def write(text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()

        return show_logs(StateDir(), sources or [], tail=parse_tail(tail), follow=follow,
                         running=is_running, write=write)
