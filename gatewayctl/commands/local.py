"""`up`, `down` and `status`: the local gateway on a real Envoy (gatewayctl/local)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gatewayctl.commands import run_command


def _progress(message: str) -> None:
    typer.echo(message, err=True)


def register(app: typer.Typer) -> None:
    @app.command()
    def up(
        root: Annotated[Path, typer.Argument(help="Manifest root folder.")] = Path("."),
        port: Annotated[int, typer.Option("--port", help="Listener port.")] = 8080,
        admin_port: Annotated[int, typer.Option(help="Envoy admin port.")] = 9901,
        mock_port: Annotated[
            int | None, typer.Option(help="Mock provider port (default: a free one).")
        ] = None,
        mock_all: Annotated[
            bool, typer.Option("--mock-all", help="Serve every provider from the mock.")
        ] = False,
        foreground: Annotated[
            bool,
            typer.Option("--foreground", "-f", help="Stay attached; Ctrl-C stops the gateway."),
        ] = False,
    ) -> None:
        """Run the gateway locally on a real Envoy, with the mock for unreachable providers."""

        def body() -> int:
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

        run_command(body)

    @app.command()
    def down() -> None:
        """Stop the local gateway."""

        def body() -> int:
            from gatewayctl.local.gateway import down as stop

            typer.echo(stop().summary())
            return 0

        run_command(body)

    @app.command()
    def status() -> None:
        """Show what the local gateway runs and serves."""

        def body() -> int:
            from gatewayctl.local.gateway import status as current

            result = current()
            typer.echo(result.summary())
            return 0

        run_command(body)
