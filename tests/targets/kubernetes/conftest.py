"""The fixtures of the Kubernetes target's tests: the API fake and a client bound to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayctl.targets.kubernetes.api import KubeClient
from gatewayctl.targets.kubernetes.options import KubeOptions
from tests.fakes.kubeapi import KubeAPIServer
from tests.targets.kubernetes import NAMESPACE


@pytest.fixture
def server() -> Iterator[KubeAPIServer]:
    with KubeAPIServer(namespaces=(NAMESPACE,)) as srv:
        yield srv


@pytest.fixture
def kube_options() -> dict[str, float]:
    """Bounded: a request to the local fake waits at most 10 s (room for a loaded CI machine)
    and is retried once. A module overrides this fixture to test other settings."""
    return {"request_timeout": 10, "retries": 1, "backoff": 0.01}


@pytest.fixture
def kube(server: KubeAPIServer, tmp_path: Path,
         kube_options: dict[str, float]) -> Iterator[KubeClient]:
    path = server.write_kubeconfig(tmp_path / "kubeconfig")
    options = KubeOptions(kubeconfig=str(path), **kube_options)  # type: ignore[arg-type]
    with KubeClient(options) as client:
        yield client
