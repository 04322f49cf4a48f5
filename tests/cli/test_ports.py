"""A port option takes a TCP port, 1 to 65535: anything else is a usage error (exit 1) named at
once, before a process starts (a port out of range was an internal error, exit 70; port 0 made
`up` wait 30 s for an Envoy that listened elsewhere)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatewayctl.cli import main
from tests.cli.helpers import QUICKSTART

COMMANDS = [
    ("up", str(QUICKSTART), "--port"),
    ("up", str(QUICKSTART), "--admin-port"),
    ("up", str(QUICKSTART), "--mock-port"),
    ("mock-provider", "--port"),
    ("ratelimit-service", "--config", "missing.yaml", "--redis", "127.0.0.1:1", "--port"),
]


@pytest.mark.parametrize("port", ["0", "-1", "65536", "70000"])
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: f"{c[0]} {c[-1]}")
def test_a_port_outside_1_to_65535_is_a_usage_error(
    command: tuple[str, ...], port: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.setenv("GATEWAYCTL_STATE_DIR", str(tmp_path / "state"))
    assert main([*command, port]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: Invalid value for '{command[-1]}': Input should be "), err
    assert f"  hint: see `gatewayctl {command[0]} --help`" in err
    assert not (tmp_path / "state" / "logs").exists()  # nothing was started
