"""The rate limit service's configuration (envoyproxy/ratelimit's format): golden, and read
back by the local stand-in, which matches descriptors as the official service does."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatewayctl.ir import LimitIR, LimitsIR
from gatewayctl.local.ratelimit.config import (
    ConfigError,
    Descriptor,
    Limit,
    cache_key,
    parse_config,
)
from gatewayctl.local.ratelimit.wire import (
    RateLimitRequest,
    decode_request,
    encode_request,
)
from gatewayctl.render.envoy.global_limits import budget_unit_usd, budget_units
from gatewayctl.render.ratelimit_config import dump_ratelimit_config, render_ratelimit_config
from tests.conftest import check_golden
from tests.limits.gateways import limits_ir

GOLDEN = Path(__file__).parent / "golden"
GLOBAL = LimitsIR(scope="global", redis_address="redis.ai:6379")


def global_ir():  # type: ignore[no-untyped-def]
    import dataclasses

    ir = limits_ir(requests=600, tokens=200_000, per_s=60, scope=GLOBAL,
                   budgets={"search-app": 500.0})
    # a limit by route beside the ones by consumer
    routes = tuple(
        dataclasses.replace(r, policy=dataclasses.replace(
            r.policy, rate_limits=(*r.policy.rate_limits,
                                   LimitIR(amount=10, period_s=1, by="route", policy="p"))))
        if r.name == "limited" else r
        for r in ir.routes
    )
    return dataclasses.replace(ir, routes=routes)


def test_config_is_golden(update_golden: bool) -> None:
    config = render_ratelimit_config(global_ir())
    assert config is not None
    check_golden(GOLDEN / "ratelimit-config.yaml", dump_ratelimit_config(config), update_golden)


def test_replica_scope_has_no_service_config() -> None:
    assert render_ratelimit_config(limits_ir()) is None


def test_the_stand_in_matches_the_rendered_descriptors() -> None:
    config = parse_config([dump_ratelimit_config(render_ratelimit_config(global_ir()) or {})])
    domain = "test-gateway"
    per_consumer = Descriptor((("l0", "limited"), ("consumer", "search-app")))
    assert config.limit_for(domain, per_consumer) == Limit(600, "minute")
    assert config.limit_for(domain, Descriptor((("l1", "limited"),))) == Limit(10, "second")
    assert config.limit_for(domain, Descriptor((("t0", "tokens"), ("consumer", "x")))) == Limit(
        200_000, "minute")
    assert config.limit_for(domain, Descriptor((("budget", "search-app"),))) == Limit(
        500_000_000, "month")
    # no limit: another consumer's budget, a shorter or longer descriptor, another domain
    assert config.limit_for(domain, Descriptor((("budget", "helpdesk"),))) is None
    assert config.limit_for(domain, Descriptor((("l0", "limited"),))) is None
    assert config.limit_for("other", per_consumer) is None
    # one count per consumer and window, named as the official service names it
    assert cache_key(domain, per_consumer, Limit(600, "minute"), 1_700_000_059) == (
        "test-gateway_l0_limited_consumer_search-app_1700000040")


def test_budget_units_fit_the_service_counters() -> None:
    ir = limits_ir(scope=GLOBAL, budgets={"search-app": 500.0})
    assert budget_unit_usd(ir) == 1e-6
    assert budget_units(ir, 0.000135) == 135
    big = limits_ir(scope=GLOBAL, budgets={"search-app": 10_000.0})
    assert budget_unit_usd(big) == 1e-5  # 1e10 micro-dollars would not fit in 32 bits
    assert budget_units(big, 10_000.0) < 2**32


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ConfigError, match="needs `domain`"):
        parse_config(["descriptors: []"])
    with pytest.raises(ConfigError, match="unknown unit"):
        parse_config(["domain: d\ndescriptors: [{key: a, rate_limit: {unit: fortnight}}]"])
    with pytest.raises(ConfigError, match="unknown fields"):
        parse_config(["domain: d\ndescriptors: [{key: a, limit: 3}]"])


def test_wire_round_trip() -> None:
    request = RateLimitRequest(
        "gw", (Descriptor((("l0", "chat"), ("consumer", "é")), hits_addend=0),
               Descriptor((("budget", "a"),))), hits_addend=300)
    assert decode_request(encode_request(request)) == request
