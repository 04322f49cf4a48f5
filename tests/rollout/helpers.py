"""Shared pieces of the rollout tests: a manifest root, its Git repository, a CLI runner."""

from __future__ import annotations

import contextlib
import difflib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayctl.local.gateway import UpResult, down, up
from gatewayctl.local.process import free_port
from tests.cli.helpers import MainRunner

BASE = """\
apiVersion: gatewayctl.dev/v1alpha1
kind: Gateway
metadata: {name: gw}
spec: {namespace: gw}
---
apiVersion: gatewayctl.dev/v1alpha1
kind: Provider
metadata: {name: openai}
spec:
  type: openai
  endpoint: https://api.openai.com
  auth: {secretRef: {name: openai-credentials, key: api-key}}
---
apiVersion: gatewayctl.dev/v1alpha1
kind: Model
metadata: {name: gpt-4o-2024-08-06}
spec: {provider: openai, pricing: {inputPerMillion: 2.50, outputPerMillion: 10.00}}
---
apiVersion: gatewayctl.dev/v1alpha1
kind: Model
metadata: {name: gpt-4o-2024-11-20}
spec: {provider: openai, pricing: {inputPerMillion: 2.50, outputPerMillion: 10.00}}
---
apiVersion: gatewayctl.dev/v1alpha1
kind: Route
metadata: {name: chat}
spec:
  backends:
    - {model: gpt-4o-2024-08-06, weight: 100}
"""

ROLLOUT = """\
# Canary of chat to the November model.
apiVersion: gatewayctl.dev/v1alpha1
kind: Rollout
metadata:
  name: chat-nov
  labels: {team: platform}
spec:
  route: chat
  stable: gpt-4o-2024-08-06
  canary: gpt-4o-2024-11-20
  steps: [{weight: 5, pause: 10m}, {weight: 25, pause: 30m}, {weight: 100}]
  step: 1      # 5%
  state: progressing
  analysis:
    metrics:
      - {name: error-rate, max: 0.02}
"""


def make_root(path: Path, rollout: str = ROLLOUT, *, git: bool = False) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "gateway.yaml").write_text(BASE, encoding="utf-8")
    (path / "rollout.yaml").write_bytes(rollout.encode("utf-8"))
    if git:
        init_git(path)
    return path


def git(path: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=path, capture_output=True, text=True, check=True,
                          timeout=30)
    return done.stdout.strip()


def init_git(path: Path) -> None:
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Test")
    git(path, "config", "user.email", "test@example.com")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "initial")


def changed(before: str, after: str) -> tuple[list[str], list[str]]:
    """(removed lines, added lines), line ends included."""
    removed: list[str] = []
    added: list[str] = []
    a, b = before.splitlines(keepends=True), after.splitlines(keepends=True)
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag != "equal":
            removed += a[i1:i2]
            added += b[j1:j2]
    return removed, added


def cli() -> MainRunner:
    """gatewayctl's real entry point, in-process."""
    return MainRunner()


@contextlib.contextmanager
def local_gateway(root: Path, state: Path, monkeypatch: pytest.MonkeyPatch,
                  listener_port: int | None = None) -> Iterator[UpResult]:
    """The local gateway serving `root` (state in `state`, free ports), stopped at the end."""
    monkeypatch.setenv("GATEWAYCTL_STATE_DIR", str(state))
    result = up(root, listener_port=listener_port or free_port(), admin_port=free_port(),
                state_dir=state)
    try:
        yield result
    finally:
        down(state_dir=state)
