"""One exit-code table for every command (SPEC §7), each row through `gatewayctl.cli.main`:
0 success; 1 error, usage errors included; 2 changes / canary failed or aborted; 3 analysis
inconclusive; 70 internal error with a crash log; 130 interrupted."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gatewayctl import __version__
from gatewayctl.cli import main
from gatewayctl.errors import (
    EXIT_BUG,
    EXIT_CANARY_FAILED,
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_INCONCLUSIVE,
    EXIT_INTERRUPTED,
    EXIT_OK,
)
from tests.cli.helpers import QUICKSTART, gatewayctl
from tests.conftest import REPO
from tests.rollout.fake_prometheus import FakePrometheus
from tests.rollout.helpers import make_root

CANARY, STABLE = "r_chat_gpt-4o-2024-11-20", "r_chat_gpt-4o-2024-08-06"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_table() -> None:
    assert (EXIT_OK, EXIT_ERROR, EXIT_CHANGES, EXIT_CANARY_FAILED, EXIT_INCONCLUSIVE, EXIT_BUG,
            EXIT_INTERRUPTED) == (0, 1, 2, 2, 3, 70, 130)


def test_0_success(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "validate", str(QUICKSTART))[0] == 0
    assert run(capsys, "--version") == (0, f"gatewayctl {__version__}\n", "")
    assert run(capsys, "version") == (0, f"gatewayctl {__version__}\n", "")
    code, out, _ = run(capsys, "plan", "--help")
    assert code == 0 and out.startswith("Usage: gatewayctl plan [OPTIONS]")


def test_1_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("apiVersion: gatewayctl.dev/v1alpha1\nkind: Nope\n")
    code, out, _ = run(capsys, "validate", str(tmp_path))
    assert code == 1 and "bad.yaml:2:7: error[" in out


@pytest.mark.parametrize(("args", "message"), [
    (("plan", ".", "--detailed-exitcode", "--outt", "x"),
     "error: No such option: --outt (Possible options: --context, --out, --output)\n"
     "  hint: see `gatewayctl plan --help`\n"),
    (("rollout", "advance", "chat-nov"),
     "error: Missing option '--prometheus' (env var: 'GATEWAYCTL_PROMETHEUS_URL').\n"
     "  hint: see `gatewayctl rollout advance --help`\n"),
    (("no-such-command",),
     "error: No such command 'no-such-command'.\n  hint: see `gatewayctl --help`\n"),
    (("render", ".", "--format"), "error: Option '--format' requires an argument.\n"),
    (("plan", "--detailed-exitcode=maybe"), "error: Option '--detailed-exitcode' does not "
     "take a value.\n"),
])
def test_1_usage_errors(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                        args: tuple[str, ...], message: str) -> None:
    monkeypatch.delenv("GATEWAYCTL_PROMETHEUS_URL", raising=False)
    code, out, err = run(capsys, *args)
    assert (code, out) == (1, "")
    assert err.startswith(message)


def test_1_a_bare_command_group_prints_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "rollout")
    assert code == 1 and "Usage: gatewayctl rollout [OPTIONS] COMMAND [ARGS]..." in err


def test_2_there_are_changes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    live = f"dir:{tmp_path / 'nothing-yet'}"
    assert run(capsys, "plan", str(QUICKSTART), "--live", live)[0] == 0
    assert run(capsys, "plan", str(QUICKSTART), "--live", live, "--detailed-exitcode")[0] == 2
    assert run(capsys, "apply", str(QUICKSTART), "--live", live, "--auto-approve")[0] == 0
    assert run(capsys, "plan", str(QUICKSTART), "--live", live, "--detailed-exitcode")[0] == 0


@pytest.mark.parametrize(("canary", "code"), [((200, 2), 0), ((200, 20), 2), ((40, 0), 3)])
def test_2_and_3_rollout_analyze(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                 canary: tuple[int, int], code: int) -> None:
    root = make_root(tmp_path / "root")
    with FakePrometheus() as fake:
        fake.add_traffic(CANARY, *canary)
        fake.add_traffic(STABLE, 800, 0)
        got = run(capsys, "rollout", "analyze", "chat-nov", "--root", str(root),
                  "--prometheus", fake.url)
    assert got[0] == code, got


def test_2_rollout_advance_aborts_a_failing_canary(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    root = make_root(tmp_path / "root")
    with FakePrometheus() as fake:
        fake.add_traffic(CANARY, 200, 30)
        fake.add_traffic(STABLE, 800, 0)
        code, out, _ = run(capsys, "rollout", "advance", "chat-nov", "--root", str(root),
                           "--prometheus", fake.url)
    assert code == 2 and "decision: abort" in out


def _explode() -> int:
    raise RuntimeError("a bug in gatewayctl")


def test_70_internal_error_writes_a_crash_log(capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    import gatewayctl.schema

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    monkeypatch.setattr(gatewayctl.schema, "export_schemas",
                        lambda *_a, **_k: _explode())

    code, out, err = run(capsys, "schema", "export", str(tmp_path / "schemas"))

    assert (code, out) == (70, "")
    match = re.fullmatch(r"error: gatewayctl hit an internal error; the traceback is in (\S+)\n"
                         r"  hint: run again with --debug, and report it with that log\n", err)
    assert match, err
    log = Path(match.group(1))
    assert log.parent == tmp_path
    assert "RuntimeError: a bug in gatewayctl" in log.read_text()

    code, _, err = run(capsys, "--debug", "schema", "export", str(tmp_path / "schemas"))
    assert code == 70 and "Traceback (most recent call last)" in err


def test_130_interrupted(capsys: pytest.CaptureFixture[str],
                         monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import gatewayctl.schema

    def interrupted(*_a: object, **_k: object) -> tuple[int, str]:
        raise KeyboardInterrupt

    monkeypatch.setattr(gatewayctl.schema, "export_schemas", interrupted)
    assert run(capsys, "schema", "export", str(tmp_path)) == (130, "", "interrupted\n")


def test_the_process_exit_code_is_mains(tmp_path: Path) -> None:
    """The console script and `python -m gatewayctl` exit with main's code."""
    usage = gatewayctl("plan", ".", "--detailed-exitcode", "--outt", "x", cwd=tmp_path)
    assert usage.returncode == 1
    changes = gatewayctl("plan", str(QUICKSTART), "--live", f"dir:{tmp_path / 'x'}",
                         "--detailed-exitcode")
    assert changes.returncode == 2, changes.stderr


def test_the_table_is_documented_once_and_matches() -> None:
    doc = (REPO / "docs" / "plan-and-apply.md").read_text()
    section = doc.split("### Exit codes\n", 1)[1].split("\n#", 1)[0]
    rows = dict(re.findall(r"^\| (\d+) \| ([^|]+) \|", section, re.M))
    assert sorted(map(int, rows)) == [0, 1, 2, 3, 70, 130]
    assert "usage errors" in rows["1"] and "crash log" in rows["70"]
    readme = (REPO / "README.md").read_text()
    assert "docs/plan-and-apply.md#exit-codes" in readme
