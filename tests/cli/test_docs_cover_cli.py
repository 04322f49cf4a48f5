"""The documentation names every command and every option the CLI has: README.md and docs/*.md
are where the CLI is documented, so an option added without its documentation fails here."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.cli.helpers import all_commands
from tests.conftest import REPO

DOCS = "\n".join(p.read_text(encoding="utf-8")
                 for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])


COMMANDS = all_commands()


def _named(opt: str) -> bool:
    """The option is written in the docs: `--name` as a whole word, or a short `-x` in code."""
    if opt.startswith("--"):
        return re.search(re.escape(opt) + r"(?![\w-])", DOCS) is not None
    return f"`{opt} " in DOCS or f"`{opt}`" in DOCS or f" {opt} '" in DOCS


def test_the_commands_are_found() -> None:
    assert {" ".join(p) for p, _ in COMMANDS} >= {"validate", "test", "rollout advance",
                                                  "mock-provider", "schema export"}


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_and_option_is_documented(path: tuple[str, ...], command: Any) -> None:
    name = " ".join(path)
    assert re.search(r"(gatewayctl |`)" + re.escape(name) + r"[ `]", DOCS), \
        f"{name} is not documented"
    missing = [param.opts for param in command.params
               if param.param_type_name == "option" and param.opts != ["--help"]
               and not any(_named(opt) for opt in param.opts)]
    assert not missing, f"gatewayctl {name}: options not in README.md or docs/: {missing}"
