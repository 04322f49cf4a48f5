from __future__ import annotations

from pathlib import Path

import pytest

from gatewayctl.compile import compile_gateway
from gatewayctl.ir import GatewayIR
from gatewayctl.manifests.manifest_set import load_manifest_set
from gatewayctl.render.k8s.layout import EnvoyFiles
from tests.k8s.bundles import envoy_bundle

ROOT = Path(__file__).resolve().parents[2]


def compile_example(name: str) -> GatewayIR:
    manifests, diagnostics = load_manifest_set(ROOT / "examples" / name)
    assert not [d for d in diagnostics if d.is_error], diagnostics
    return compile_gateway(manifests)


@pytest.fixture(scope="session")
def multi_team() -> GatewayIR:
    return compile_example("multi-team")


@pytest.fixture(scope="session")
def quickstart() -> GatewayIR:
    return compile_example("quickstart")


@pytest.fixture(scope="session")
def multi_team_bundle(multi_team: GatewayIR) -> EnvoyFiles:
    return envoy_bundle(multi_team)
