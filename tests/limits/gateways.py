"""Small gateways for the limit tests: one limited route, one unlimited, one with two backends
(for unrelated applies), run for real on Envoy against the mock provider."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gatewayctl.ir import ConsumerIR, GatewayIR, LimitIR, LimitsIR, PolicyIR, SecretRefIR
from gatewayctl.local.mock_provider import (
    MockProviderConfig,
    MockProviderHandle,
    start_mock_provider,
)
from gatewayctl.render.envoy import EnvoyOptions, render_envoy
from tests.render import irs
from tests.render.harness import (
    RunningEnvoy,
    loopback_options,
    publish,
    start_envoy,
    write_secrets,
)

KEYS = {"search-app": "gw-key-search", "helpdesk": "gw-key-helpdesk"}


def auth(consumer: str) -> dict[str, str]:
    return {"authorization": f"Bearer {KEYS[consumer]}"}


def limits_ir(
    *,
    requests: int = 5,
    tokens: int | None = None,
    per_s: int = 3600,
    scope: LimitsIR | None = None,
    budgets: dict[str, float] | None = None,
    enforce: bool = True,
) -> GatewayIR:
    """Routes: `limited` (requests per consumer), `tokens` (a token limit per consumer, when
    given), `open` (no limit, no key) and `chat` (two backends, no limit)."""
    base = irs.build_ir()
    policy = PolicyIR(
        sources=("p",),
        api_keys=True,
        rate_limits=(LimitIR(amount=requests, period_s=per_s, by="consumer", policy="p"),),
    )
    keep = {"chat", "limited", "llama"}
    routes = []
    for route in base.routes:
        if route.name not in keep:
            continue
        if route.name == "limited":
            route = dataclasses.replace(route, policy=policy)
        if route.name == "llama":  # the open route: no key, no limit
            route = dataclasses.replace(route, name="open", public_model="open")
        routes.append(route)
    if tokens is not None:
        tpolicy = PolicyIR(
            sources=("t",),
            api_keys=True,
            token_limits=(LimitIR(amount=tokens, period_s=per_s, by="consumer", policy="t"),),
        )
        limited = next(r for r in routes if r.name == "limited")
        routes.append(dataclasses.replace(limited, name="tokens", public_model="tokens",
                                          policy=tpolicy))
    consumers = tuple(
        ConsumerIR(
            name=n,
            team="t",
            api_key=SecretRefIR(name=f"{n}-key", key="key"),
            budget_usd_per_month=(budgets or {}).get(n),
            budget_enforce=enforce and n in (budgets or {}),
        )
        for n in sorted(KEYS)
    )
    return dataclasses.replace(
        base,
        routes=tuple(sorted(routes, key=lambda r: r.name)),
        consumers=consumers,
        limits=scope or LimitsIR(),
    )


@dataclass
class Replica:
    envoy: RunningEnvoy
    options: EnvoyOptions
    config_dir: Path

    def apply(self, ir: GatewayIR) -> None:
        publish(self.config_dir, render_envoy(ir, self.options))


@contextlib.contextmanager
def mock_providers() -> Iterator[dict[str, MockProviderHandle]]:
    openai = start_mock_provider(
        config=MockProviderConfig(name="openai", require_key=irs.OPENAI_KEY)
    )
    try:
        yield {"openai": openai}
    finally:
        openai.stop()


def start_replica(
    root: Path,
    ir: GatewayIR,
    providers: dict[str, MockProviderHandle],
    *,
    ratelimit_address: str | None = None,
) -> Replica:
    secrets_dir = root / "secrets"
    write_secrets(
        secrets_dir,
        {
            ("openai-credentials", "api-key"): irs.OPENAI_KEY,
            **{(f"{n}-key", "key"): k for n, k in KEYS.items()},
        },
    )
    overrides = {p.name: providers["openai"].url for p in ir.providers}
    options = loopback_options(
        root, secrets_dir,
        stats_flush_interval_ms=200,
        provider_overrides=overrides,
        ratelimit_address=ratelimit_address,
    )
    envoy = start_envoy(
        root / "envoy",
        render_envoy(ir, options),
        listener_port=options.listener_port,
        admin_port=options.admin_port,
        access_log=root / "access.log",
    )
    return Replica(envoy, options, root / "config")
