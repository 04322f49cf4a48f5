"""A file or address the user gives that gatewayctl cannot use is the user's error: exit 1 with
one message naming it, not an internal error (exit 70). A saved plan or a LiteLLM config that
is not UTF-8 text, and a `--redis` that is not HOST:PORT, were internal errors."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from gatewayctl.cli import main
from tests.render.harness import free_port

NOT_TEXT = b"\xff\xfe\x00{"


@pytest.fixture(autouse=True)
def crash_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "crash-logs"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))  # where a crash log would go
    return folder


def _run(capsys: pytest.CaptureFixture[str], crash_logs: Path, *args: str) -> str:
    code = main(list(args))
    err = capsys.readouterr().err
    assert code == 1, err
    assert not list(crash_logs.iterdir()), err
    return err


@pytest.mark.parametrize("command", [
    ("apply", "{plan}", "--live", "dir:{tmp}/live"),
    ("gitlab", "comment", "--plan", "{plan}"),
])
def test_a_saved_plan_that_is_not_text(command: tuple[str, ...], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str],
                                       crash_logs: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_bytes(NOT_TEXT)
    args = [a.format(plan=plan, tmp=tmp_path) for a in command]
    err = _run(capsys, crash_logs, *args)
    assert err.startswith(f"error: {plan} is not a usable saved plan: not UTF-8 text\n"), err
    assert "  hint: save plans with `gatewayctl plan ROOT --out plan.json`" in err


def test_a_litellm_config_that_is_not_text(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          crash_logs: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_bytes(NOT_TEXT)
    err = _run(capsys, crash_logs, "import", "litellm", str(config), "--out",
               str(tmp_path / "out"))
    assert err.startswith(f"error: cannot read {config}: not UTF-8 text\n"), err
    assert not (tmp_path / "out").exists()


@pytest.mark.timeout(30)  # a service that starts anyway would serve until stopped
@pytest.mark.parametrize("redis", ["x", "127.0.0.1", "127.0.0.1:", ":6379", "host:port",
                                   "127.0.0.1:70000"])
def test_a_redis_address_that_is_not_host_port(redis: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               crash_logs: Path) -> None:
    config = tmp_path / "ratelimit.yaml"
    config.write_text("domain: gatewayctl\ndescriptors: []\n")
    err = _run(capsys, crash_logs, "ratelimit-service", "--config", str(config),
               "--redis", redis, "--port", str(free_port()))
    assert err == (f'error: invalid --redis "{redis}"\n'
                   "  hint: give the Redis address as HOST:PORT, e.g. 127.0.0.1:6379\n")
