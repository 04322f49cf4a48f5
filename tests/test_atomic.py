"""The one atomic file writer, and the writers that now use it (each once had its own)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gatewayctl.atomic import DEFAULT_MODE, write_atomic
from gatewayctl.rollout.analysis import AnalysisResult, BackendStats
from gatewayctl.rollout.document import save_analysis, store_path
from gatewayctl.validate import run_validate
from tests.conftest import REPO


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_replaces_the_content_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "state.json"
    write_atomic(target, "one\n")
    write_atomic(target, b"two\n")

    assert target.read_text() == "two\n"
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]
    assert _mode(target) == DEFAULT_MODE


def test_keeps_the_mode_of_the_file_it_replaces_unless_told(tmp_path: Path) -> None:
    target = tmp_path / "rollout.yaml"
    target.write_text("before\n")
    target.chmod(0o640)

    write_atomic(target, "after\n")
    assert _mode(target) == 0o640
    write_atomic(target, "secret\n", mode=0o600)
    assert _mode(target) == 0o600


def test_a_failed_write_leaves_the_target_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "plan.json"
    target.mkdir()  # the rename over it fails
    (target / "kept").write_text("kept\n")

    with pytest.raises(OSError):
        write_atomic(target, "new\n")

    assert (target / "kept").read_text() == "kept\n"
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]


def test_two_writers_never_share_a_temporary_name(tmp_path: Path) -> None:
    # A leftover at any fixed temporary name (a crash, another process) must not matter.
    target = tmp_path / "ir.json"
    for leftover in (".ir.json.tmp", "ir.json.tmp", f".ir.json.tmp{os.getpid()}"):
        (tmp_path / leftover).mkdir()

    write_atomic(target, "{}\n")

    assert target.read_text() == "{}\n"


def _result() -> AnalysisResult:
    stats = BackendStats("r_chat_a", 100.0, 1.0, 99.0, (), None, None)
    return AnalysisResult("chat-b", "chat", "2026-01-02T12:00:00Z", 300_000, 100, 1, 25,
                          stats, stats, ())


def test_the_saved_analysis_ignores_a_leftover_temporary(tmp_path: Path) -> None:
    leftover = store_path(tmp_path, "chat-b").with_suffix(".json.tmp")
    leftover.mkdir(parents=True)  # where the analysis store once wrote, every time

    path = save_analysis(tmp_path, _result())

    assert AnalysisResult.from_json(path.read_text()) == _result()


def test_a_report_ignores_a_leftover_temporary(tmp_path: Path) -> None:
    report = tmp_path / "gl-code-quality.json"
    (tmp_path / "gl-code-quality.json.tmp").mkdir()  # where validate once wrote, every time

    code, _ = run_validate(REPO / "examples" / "quickstart", output="text", strict=False,
                           reports=[f"codequality={report}"], colour=False)

    assert code == 0
    assert report.read_text().startswith("[")
