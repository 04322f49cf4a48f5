"""Retry-After on the gateway's own 429s (local request and token limits), on a real Envoy
served both ways: Envoy's local_ratelimit filters with the Lua (dataPlaneFilters lua) and the
module's `limits` filter (module). The global scope's are in tests/limits/test_global.py.

Both give whole seconds, at least 1 (RFC 9110). The module knows its buckets and gives the time
until every bucket the request is charged from holds its charge again; the Lua cannot see
Envoy's buckets and gives the time they take to refill the charges from empty: the same value
when the refusing buckets are empty or refill the charge within a second, else an upper bound.
Waiting that long admits the request; the OpenAI SDK's retry waits that long."""

from __future__ import annotations

import dataclasses
import http.client
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from gatewayctl.ir import GatewayIR, LimitIR, RouteIR
from gatewayctl.local.mock.config import FaultConfig, FaultRule
from gatewayctl.local.mock_provider import MockProviderConfig, start_mock_provider
from tests.render import irs
from tests.render.conftest import needs_envoy
from tests.render.harness import RunningEnvoy, irs_gateway, with_filters

pytestmark = [needs_envoy, pytest.mark.envoy]

SEARCH = irs.CONSUMER_KEYS["search-app"]
# "t" * 200 costs 73 tokens a request in the mock's count (prompt and completion)
TOKEN_TEXT, TOKENS_USED = "t" * 200, 73


def _limit(amount: int, period_s: int, by: str = "consumer") -> LimitIR:
    return LimitIR(amount=amount, period_s=period_s, by=by, policy="p")  # type: ignore[arg-type]


def _ir() -> GatewayIR:
    """Routes (the test IR's, their limits replaced), each for one case below."""
    limits: dict[str, tuple[tuple[LimitIR, ...], tuple[LimitIR, ...]]] = {
        # 2 requests a second: the next token in at most 0.5 s
        "keys": ((_limit(2, 1, "route"),), ()),
        # 2 an hour by consumer and 4 by route: the consumer's bucket empty after 2
        "limited": ((_limit(4, 3600, "route"), _limit(2, 3600)), ()),
        # 100 tokens a second by consumer
        "tokens": ((), (_limit(100, 1),)),
        # 100 tokens an hour by consumer, 50 requests an hour by route; an output guardrail
        # has the Lua body filter serve it on a module gateway too (the module's `limits`
        # filter reads the Lua's headers, and its Retry-After is the one that stays)
        "chat": ((_limit(50, 3600, "route"),), (_limit(100, 3600),)),
        # 1 request in 2 seconds: the SDK's blind backoff (0.5 s) would come too early
        "llama": ((_limit(1, 2, "route"),), ()),
        # its provider answers 429 with its own Retry-After (no fallback here): passed on
        "fallback429": ((_limit(100, 3600, "route"),), ()),
    }

    def change(route: RouteIR) -> RouteIR:
        if route.name not in limits:
            return route
        requests, tokens = limits[route.name]
        policy = dataclasses.replace(route.policy, api_keys=True, rate_limits=requests,
                                     token_limits=tokens)
        if route.name == "chat":
            policy = dataclasses.replace(policy, output_deny_patterns=("(?i)never said",))
        fallback = () if route.name == "fallback429" else route.fallback
        return dataclasses.replace(route, policy=policy, rollout=None, fallback=fallback)
    ir = irs.build_ir()
    return dataclasses.replace(ir, routes=tuple(change(r) for r in ir.routes))


@pytest.fixture(params=["lua", "module"])
def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, RunningEnvoy]]:
    filters = request.param
    faults = FaultConfig(models={"flaky-429": FaultRule(error_rate=1.0, error_status=429)})
    mock = start_mock_provider(config=MockProviderConfig(name="openai",
                                                         require_key=irs.OPENAI_KEY,
                                                         faults=faults))
    try:
        with irs_gateway(tmp_path, with_filters(_ir(), filters), mock.url,
                         concurrency=1) as envoy:
            yield filters, envoy
    finally:
        mock.stop()


def _module_serves(route: str) -> bool:
    """Whether the module's body filter serves `route` on the module gateway (else the Lua's)."""
    from gatewayctl.render.envoy import EnvoyOptions
    from gatewayctl.render.envoy.listener import lua_off_routes
    return route in lua_off_routes(with_filters(_ir(), "module"), EnvoyOptions())


def _send(envoy: RunningEnvoy, model: str, text: str = "hello") -> tuple[int, list[str], str]:
    """Status, every Retry-After value, x-gateway-limit."""
    conn = http.client.HTTPConnection("127.0.0.1", envoy.listener_port, timeout=30)
    try:
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": text}]})
        conn.request("POST", "/v1/chat/completions", body=body,
                     headers={"content-type": "application/json", "x-api-key": SEARCH})
        resp = conn.getresponse()
        resp.read()
        return (resp.status, [v for k, v in resp.getheaders() if k.lower() == "retry-after"],
                resp.getheader("x-gateway-limit") or "")
    finally:
        conn.close()


def test_a_fast_request_limit_says_one_second_and_one_second_admits(
        gateway: tuple[str, RunningEnvoy]) -> None:
    _, envoy = gateway
    assert [_send(envoy, "keys")[:2] for _ in range(2)] == [(200, []), (200, [])]
    status, retry_after, kind = _send(envoy, "keys")
    assert (status, retry_after, kind) == (429, ["1"], "requests")
    time.sleep(int(retry_after[0]))
    assert _send(envoy, "keys")[0] == 200


def test_an_empty_bucket_says_its_refill_time_both_ways(
        gateway: tuple[str, RunningEnvoy]) -> None:
    """2 an hour by consumer: the consumer's bucket is empty after 2; one token comes back in
    1,800 s (the route's bucket, 4 an hour, has 2 left)."""
    _, envoy = gateway
    assert [_send(envoy, "limited")[0] for _ in range(2)] == [200, 200]
    assert _send(envoy, "limited") == (429, ["1800"], "requests")


def test_a_fast_token_limit_says_one_second_and_one_second_admits(
        gateway: tuple[str, RunningEnvoy]) -> None:
    """100 tokens a second: 73 used, then charged 73 with 99 left (26 left): the third is
    refused, its 73 back within 0.47 s. (On the module gateway the module's body filter
    serves this route.)"""
    filters, envoy = gateway
    assert filters == "lua" or _module_serves("tokens")
    assert [_send(envoy, "tokens", TOKEN_TEXT)[:2] for _ in range(2)] == [(200, [])] * 2
    status, retry_after, kind = _send(envoy, "tokens", TOKEN_TEXT)
    assert (status, retry_after, kind) == (429, ["1"], "tokens")
    time.sleep(int(retry_after[0]))
    assert _send(envoy, "tokens", TOKEN_TEXT)[0] == 200


def test_a_slow_token_limit_the_module_exact_the_lua_a_bound(
        gateway: tuple[str, RunningEnvoy]) -> None:
    """100 tokens an hour (one each 36 s): after 1 + 73 charged, 26 are left and the third
    request is charged 73. The module: the 47 missing, 1,692 s. The Lua: 73 from empty,
    2,628 s. (On the module gateway the Lua body filter serves this route and leaves the
    module's header as it is.)"""
    filters, envoy = gateway
    assert filters == "lua" or not _module_serves("chat")
    assert [_send(envoy, "chat", TOKEN_TEXT)[0] for _ in range(2)] == [200, 200]
    status, retry_after, kind = _send(envoy, "chat", TOKEN_TEXT)
    assert (status, kind) == (429, "tokens")
    exact = math.ceil((TOKENS_USED - (100 - 1 - TOKENS_USED)) * 3600 / 100)
    bound = math.ceil(TOKENS_USED * 3600 / 100)
    assert (exact, bound) == (1692, 2628)
    # the module's, from its bucket: a few milliseconds of refill may round it down by one
    assert int(retry_after[0]) in ((bound,) if filters == "lua" else (exact, exact - 1))


def test_a_providers_429_passes_with_its_own_headers(
        gateway: tuple[str, RunningEnvoy]) -> None:
    """The provider's 429 (the mock's Retry-After: 1, after the route's retries) is not the
    gateway's: no x-gateway-limit, the provider's Retry-After alone, its other headers kept."""
    _, envoy = gateway
    conn = http.client.HTTPConnection("127.0.0.1", envoy.listener_port, timeout=30)
    try:
        body = json.dumps({"model": "fallback429", "messages": [{"role": "user", "content": "hi"}]})
        conn.request("POST", "/v1/chat/completions", body=body,
                     headers={"content-type": "application/json", "x-api-key": SEARCH})
        resp = conn.getresponse()
        resp.read()
        headers = resp.getheaders()
    finally:
        conn.close()
    assert resp.status == 429
    assert [v for k, v in headers if k.lower() == "retry-after"] == ["1"]
    assert ("x-mock-fault", "error") in [(k.lower(), v) for k, v in headers]
    assert not [k for k, _ in headers if k.lower() == "x-gateway-limit"]


def test_the_openai_sdk_waits_what_retry_after_says(
        gateway: tuple[str, RunningEnvoy]) -> None:
    """1 request in 2 s: the SDK's retry (max_retries=1) waits the 2 s Retry-After says and is
    admitted; without the header it would back off 0.5 s and be refused again."""
    _, envoy = gateway
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{envoy.listener_port}/v1", api_key=SEARCH,
                           max_retries=0)
    client.chat.completions.create(model="llama-70b",
                                   messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="llama-70b",
                                       messages=[{"role": "user", "content": "hi"}])
    assert refused.value.response.headers["retry-after"] == "2"
    time.sleep(2)
    client.chat.completions.create(model="llama-70b",
                                   messages=[{"role": "user", "content": "hi"}])
    started = time.monotonic()
    answer = client.with_options(max_retries=1).chat.completions.create(
        model="llama-70b", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content
    assert time.monotonic() - started >= 1.9


@pytest.mark.parametrize("filters", ["lua", "module"])
def test_more_request_limits_than_the_module_takes(filters: str, tmp_path: Path) -> None:
    """9 request limits on a route (2 an hour by consumer, 8 of 100 an hour by route): Envoy's
    limiter keeps them on a module gateway too, and the Lua body filter serves the route there
    (the module's would pass the 429 on without Retry-After): the empty bucket's 1,800 s."""
    ir = _ir()
    many = (_limit(2, 3600),) + tuple(_limit(100 + i, 3600, "route") for i in range(8))
    ir = dataclasses.replace(ir, routes=tuple(
        dataclasses.replace(r, policy=dataclasses.replace(r.policy, rate_limits=many))
        if r.name == "limited" else r for r in ir.routes))
    from gatewayctl.render.envoy import EnvoyOptions
    from gatewayctl.render.envoy.listener import lua_off_routes
    assert "limited" not in lua_off_routes(with_filters(ir, "module"), EnvoyOptions())
    mock = start_mock_provider(config=MockProviderConfig(name="openai",
                                                         require_key=irs.OPENAI_KEY))
    try:
        with irs_gateway(tmp_path, with_filters(ir, filters), mock.url, concurrency=1) as envoy:
            assert [_send(envoy, "limited")[0] for _ in range(2)] == [200, 200]
            assert _send(envoy, "limited") == (429, ["1800"], "requests")
    finally:
        mock.stop()
