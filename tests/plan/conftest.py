"""Fixtures for plan/apply tests: a manifest root to edit, the fake API server, the CLI."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import Result

from gatewayctl.targets.kubernetes.options import KubeOptions
from tests.cli.helpers import MainRunner
from tests.fakes.kubeapi import KubeAPIServer

FIXTURE_ROOT = Path(__file__).parent / "fixtures" / "root"
NAMESPACE = "ai-gateway"
GATEWAY = "ai-gateway"
# Bounded: a request to the local fake waits at most 10 s (room for a loaded CI machine), and
# is retried once.
FAST_KUBE = {"request_timeout": 10.0, "retries": 1, "backoff": 0.01}


class Cli:
    def __init__(self) -> None:
        self.runner = MainRunner()

    def __call__(self, *args: str, env: dict[str, str] | None = None,
                 input: str | None = None) -> Result:
        return self.runner.invoke(list(args), env=env, input=input)


@pytest.fixture
def cli() -> Cli:
    return Cli()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    target = tmp_path / "root"
    shutil.copytree(FIXTURE_ROOT, target)
    return target


def set_rollout_step(root: Path, step: int) -> None:
    path = root / "routes.yaml"
    path.write_text(re.sub(r"step: \d+", f"step: {step}", path.read_text()))


def edit(root: Path, file: str, old: str, new: str) -> None:
    path = root / file
    text = path.read_text()
    assert old in text, f"{old!r} not in {file}"
    path.write_text(text.replace(old, new))


@pytest.fixture
def kube_server() -> Iterator[KubeAPIServer]:
    with KubeAPIServer(namespaces=(NAMESPACE,)) as server:
        yield server


@pytest.fixture
def kubeconfig(kube_server: KubeAPIServer, tmp_path: Path) -> Path:
    return kube_server.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def kube_options(kubeconfig: Path) -> KubeOptions:
    return KubeOptions(kubeconfig=str(kubeconfig), **FAST_KUBE)  # type: ignore[arg-type]
