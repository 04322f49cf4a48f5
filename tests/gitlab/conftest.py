"""Fixtures of the pipeline tests: the GitLab and Kubernetes API fakes, one per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.gitlab_api import GitLabAPIServer
from tests.fakes.kubeapi.server import KubeAPIServer


@pytest.fixture
def gitlab() -> Iterator[GitLabAPIServer]:
    with GitLabAPIServer() as server:
        yield server


@pytest.fixture
def kube() -> Iterator[KubeAPIServer]:
    with KubeAPIServer(namespaces=("ai-gateway",)) as server:
        yield server
