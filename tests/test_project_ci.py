"""The project's own pipeline is valid GitLab CI and the schemas folder is current."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_project_pipeline_and_the_example_pass_the_gitlab_ci_schema() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.gitlab-ci",
            str(REPO / ".gitlab-ci.yml"),
            str(REPO / "examples" / ".gitlab-ci.yml"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_schemas_folder_is_current() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gatewayctl", "schema", "export", str(REPO / "schemas"), "--check"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is up to date (10 schemas)" in proc.stdout


def test_examples_validate_strictly() -> None:
    for example in ("quickstart", "multi-team"):
        proc = subprocess.run(
            [sys.executable, "-m", "gatewayctl", "validate", f"examples/{example}", "--strict"],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert proc.returncode == 0, proc.stdout
