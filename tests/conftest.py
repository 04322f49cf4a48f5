"""Shared test options: `--update-golden` rewrites every golden file instead of comparing
(and deletes the stale ones; see tests/goldens.py).

Under CI (`CI=true`, as GitLab CI and `.ci/run` set it) a skipped test is a failed one: every
skip in this suite means a test tool is missing (envoy, lupa, helm-python-sdk, prometheus,
check-jsonschema, kubernetes-validate, gitlab-ci-local), and CI must have them all. A
developer's machine without one still skips, and says which. Under CI a module that cannot
be collected does not stop the run either, so that one run lists every failure.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
UNDER_CI = os.environ.get("CI", "").lower() == "true"


def pytest_configure(config: pytest.Config) -> None:
    if UNDER_CI:  # a module that fails to collect must not hide the other failures
        config.option.continue_on_collection_errors = True


def _fail_skip(report: Any) -> None:
    """Turn a skip report into a failure that names what was missing."""
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else longrepr
    report.outcome = "failed"
    report.longrepr = (f"skipped under CI=true, where every test tool must be installed: "
                       f"{reason}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if UNDER_CI and report.skipped and not hasattr(report, "wasxfail"):
        _fail_skip(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if UNDER_CI and report.skipped:  # a module-level importorskip
        _fail_skip(report)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden files from the current output (and delete stale ones)",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


def __getattr__(name: str) -> Any:
    """`from tests.conftest import check_golden` still works; it lives in tests/goldens.py
    (imported only when asked for: this file is copied alone by test_ci_script)."""
    if name == "check_golden":
        from tests.goldens import check_golden

        return check_golden
    raise AttributeError(name)
