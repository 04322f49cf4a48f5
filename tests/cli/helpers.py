"""Running the real `gatewayctl` entry point, and snapshots of folders to prove nothing moved."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from gatewayctl.cli import main
from tests.conftest import REPO

QUICKSTART = REPO / "examples" / "quickstart"


def gatewayctl(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`gatewayctl ARGS` as a user runs it: a new process, no stdin."""
    return subprocess.run(
        [sys.executable, "-m", "gatewayctl", *args], capture_output=True, text=True, cwd=cwd,
        env={**os.environ, **(env or {})}, timeout=timeout, stdin=subprocess.DEVNULL,
        check=False)


class MainRunner(CliRunner):
    """`gatewayctl.cli.main` in-process: the real app, every command wired as users get it,
    and its one error handler, with CliRunner's isolation (environment, stdin, captured
    stdout and stderr)."""

    def invoke(self, args: Sequence[str],  # type: ignore[override]
               env: Mapping[str, str | None] | None = None,
               input: str | None = None) -> Result:
        with self.isolation(input=input, env=env) as (out, err, mixed):
            code = main(list(args))
            sys.stdout.flush()
            sys.stderr.flush()
            return Result(runner=self, stdout_bytes=out.getvalue(),
                          stderr_bytes=err.getvalue(), output_bytes=mixed.getvalue(),
                          return_value=code, exit_code=code, exception=None, exc_info=None)


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under `folder` (hidden ones and .git included) with a hash of its bytes."""
    out: dict[str, str] = {}
    for top, dirs, files in os.walk(folder):
        for name in dirs:
            out[os.path.relpath(os.path.join(top, name), folder) + "/"] = "dir"
        for name in files:
            path = Path(top) / name
            rel = os.path.relpath(path, folder)
            out[rel] = ("link:" + os.readlink(path) if path.is_symlink()
                        else hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", *args],
                   cwd=cwd, check=True, capture_output=True)


def git_checkout(path: Path, source: Path = QUICKSTART) -> Path:
    """A Git checkout holding a copy of the `source` manifests, all committed."""
    import shutil

    shutil.copytree(source, path)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "manifests")
    return path


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if hasattr(group, "commands"):
        for name, command in sorted(group.commands.items()):
            yield from _commands(command, (*path, name))
    else:
        yield path, group


def all_commands() -> list[tuple[tuple[str, ...], Any]]:
    """Every command of the click tree (typer's own click: duck-typed), with its path."""
    import typer

    from gatewayctl.cli import app

    return list(_commands(typer.main.get_command(app)))
