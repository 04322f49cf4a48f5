"""The import contracts in pyproject.toml hold, and they do catch a forbidden import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(exe), "--no-cache"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_contracts_are_kept() -> None:
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_a_plan_module_importing_a_target_breaks_them(tmp_path: Path) -> None:
    shutil.copytree(REPO / "gatewayctl", tmp_path / "gatewayctl",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    leak = tmp_path / "gatewayctl" / "plan" / "leak.py"
    leak.write_text("from gatewayctl.targets.kubernetes import transport\nimport deepdiff\n")
    render_leak = tmp_path / "gatewayctl" / "render" / "leak.py"
    render_leak.write_text("import deepdiff\n")

    done = lint_imports(tmp_path, pythonpath=tmp_path)

    assert done.returncode == 1, done.stdout
    assert "The plan is pure: it knows no target" in done.stdout
    assert "deepdiff only in gatewayctl.plan BROKEN" in done.stdout
    assert "gatewayctl.render.leak -> deepdiff" in done.stdout
