"""Every command's --help says what the command does, as the docs say it: the output formats
`-o` lists are exactly the ones it accepts, an option read from the environment names its
variable once, and the facts the docs state about a command are in its help too."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from gatewayctl.cli import main
from tests.cli.helpers import all_commands

FORMATS = ("text", "json", "markdown")


COMMANDS = all_commands()
WITH_OUTPUT = [(p, c) for p, c in COMMANDS if any(x.name == "output" for x in c.params)]


def _required(command: Any) -> list[str]:
    """Stand-ins for a command's required arguments and options: enough to reach its checks."""
    args: list[str] = []
    for param in command.params:
        if param.required and param.param_type_name == "argument":
            args.append("missing")
        elif param.required:
            args += [param.opts[0], "http://127.0.0.1:1"]
    return args


def test_the_commands_with_an_output_option_are_found() -> None:
    found = {" ".join(p) for p, _ in WITH_OUTPUT}
    assert {"validate", "plan", "explain", "rollout analyze", "rollout status"} <= found


@pytest.mark.parametrize(("path", "command"), WITH_OUTPUT,
                         ids=[" ".join(p) for p, _ in WITH_OUTPUT])
def test_output_help_lists_exactly_the_accepted_formats(
    path: tuple[str, ...], command: Any, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)  # the default root: an empty folder, so nothing runs for long
    monkeypatch.delenv("GATEWAYCTL_PROMETHEUS_URL", raising=False)
    option = next(x for x in command.params if x.name == "output")
    listed = set(re.findall(r"\b(?:" + "|".join(FORMATS) + r")\b", option.help or ""))
    accepted = set()
    for fmt in FORMATS:
        main([*path, *_required(command), "-o", fmt])
        err = capsys.readouterr().err
        if f'unknown output format "{fmt}"' not in err:
            accepted.add(fmt)
    assert listed == accepted, f"help: {option.help!r}"


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_an_environment_variable_is_named_once(
    path: tuple[str, ...], command: Any, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    for param in command.params:
        envvar = getattr(param, "envvar", None)
        if isinstance(envvar, str):
            assert out.count(envvar) == 1, out


HELP_FACTS = [
    # (command, option or None for the command's own text, what docs/ says it must state)
    (("rollout", "pause"), None, "still aborts a failing canary"),  # docs/rollouts.md
    (("status",), None, "1 otherwise"),  # docs/local-gateway.md: scripts wait on it
    (("up",), None, "credential in ROOT/.secrets/"),  # docs/local-gateway.md: the mock rule
    (("mock-provider",), "require_key", "Gemini: 403"),
    (("rollout", "advance"), "live", "--apply-abort"),
    (("render",), "out", "Git work tree"),  # SPEC §7: refused inside a Git work tree
]


@pytest.mark.parametrize(("path", "param", "fact"), HELP_FACTS,
                         ids=[" ".join(p) + (f" {o}" if o else "") for p, o, _ in HELP_FACTS])
def test_help_states_what_the_docs_state(path: tuple[str, ...], param: str | None,
                                         fact: str) -> None:
    command = dict(COMMANDS)[path]
    text = command.help if param is None else next(
        x for x in command.params if x.name == param).help
    assert fact in " ".join((text or "").split())
