"""The cache store service (gatewayctl cache-store) over real HTTP, on a real redis-server."""

from __future__ import annotations

import contextlib
import http.client
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayctl.local.cachestore.server import RunningStore, start_store_service
from gatewayctl.local.cachestore.store import ENTRY_OVERHEAD, SharedStore
from gatewayctl.local.resp import RedisClient, command
from tests.limits.services import Redis, redis_binary, running_redis, start_redis

pytestmark = pytest.mark.skipif(redis_binary() is None, reason="redis-server not installed")


@contextlib.contextmanager
def store_service(gateway: str, redis: Redis) -> Iterator[RunningStore]:
    service = start_store_service(gateway, redis.address)
    try:
        yield service
    finally:
        service.stop()


def call(service: RunningStore, path: str, body: bytes = b"",
         headers: dict[str, str] | None = None, method: str = "POST"
         ) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def put(service: RunningStore, store: str, key: bytes, answer: bytes, *, ttl: int = 600,
        max_bytes: int = 1 << 20, model: str = "gpt-4o") -> int:
    status, _, _ = call(service, f"/store/{store}", key + answer, {
        "x-cache-key-bytes": str(len(key)), "x-cache-ttl": str(ttl),
        "x-cache-max-bytes": str(max_bytes), "content-type": "application/json",
        "x-gateway-model": model,
    })
    return status


def test_an_answer_stored_is_found_with_its_headers(tmp_path: Path) -> None:
    with running_redis(tmp_path) as redis, store_service("gw", redis) as service:
        assert call(service, "/lookup/s0", b"route\nkey")[0] == 404
        assert put(service, "s0", b"route\nkey", b'{"answer":1}') == 204
        status, headers, body = call(service, "/lookup/s0", b"route\nkey")
        assert (status, body) == (200, b'{"answer":1}')
        assert headers["content-type"] == "application/json"
        assert headers["x-gateway-model"] == "gpt-4o"
        assert headers["age"] in ("0", "1")
        # another key, another store: misses
        assert call(service, "/lookup/s0", b"route\nother")[0] == 404
        assert call(service, "/lookup/s1", b"route\nkey")[0] == 404
        assert call(service, "/healthz", method="GET")[0] == 200


def test_the_key_is_hashed_and_the_ttl_is_redis_expiry(tmp_path: Path) -> None:
    with running_redis(tmp_path) as redis, store_service("gw", redis) as service:
        assert put(service, "s0", b"route\nsecret-looking consumer", b"{}", ttl=1) == 204
        client = RedisClient(redis.address)
        try:
            (keys,) = client.pipeline([command(b"KEYS", b"*")])
            assert isinstance(keys, list)
            assert all(b"secret-looking" not in k for k in keys if isinstance(k, bytes))
            entry = [k for k in keys if isinstance(k, bytes) and b":e:" in k]
            assert len(entry) == 1 and entry[0].startswith(b"gatewayctl:cache:{gw/s0}:e:")
            (ttl,) = client.pipeline([command(b"PTTL", entry[0])])
            assert isinstance(ttl, int) and 0 < ttl <= 1000
        finally:
            client.close()
        time.sleep(1.3)
        assert call(service, "/lookup/s0", b"route\nsecret-looking consumer")[0] == 404


def test_a_gateway_cannot_read_another_gateways_entries(tmp_path: Path) -> None:
    with running_redis(tmp_path) as redis, store_service("team-a", redis) as a, \
            store_service("team-b", redis) as b:
        assert put(a, "s0", b"route\nkey", b'{"from":"a"}') == 204
        assert call(b, "/lookup/s0", b"route\nkey")[0] == 404
        assert put(b, "s0", b"route\nkey", b'{"from":"b"}') == 204
        assert call(a, "/lookup/s0", b"route\nkey")[2] == b'{"from":"a"}'
        assert call(b, "/lookup/s0", b"route\nkey")[2] == b'{"from":"b"}'


def test_max_bytes_bounds_the_store_oldest_out_first(tmp_path: Path) -> None:
    answer = b"x" * 1000
    with running_redis(tmp_path) as redis, store_service("gw", redis) as service:
        client = RedisClient(redis.address)
        shared = SharedStore("gw", client)
        try:
            # each entry counts ~1000 + its head + 64 (digest) + ENTRY_OVERHEAD bytes
            bound = 3 * (1000 + 64 + ENTRY_OVERHEAD + 40)
            for i in range(5):
                assert put(service, "s0", b"k%d" % i, answer, max_bytes=bound) == 204
                assert shared.used_bytes("s0") <= bound
            found = [call(service, "/lookup/s0", b"k%d" % i)[0] for i in range(5)]
            assert found == [404, 404, 200, 200, 200]
            # replacing an entry gives its room back instead of counting it twice
            assert put(service, "s0", b"k4", answer, max_bytes=bound) == 204
            assert [call(service, "/lookup/s0", b"k%d" % i)[0] for i in (2, 3, 4)] == [200] * 3
            # one entry larger than the whole store is refused, and evicts nothing
            assert put(service, "s0", b"big", b"y" * bound, max_bytes=bound) == 413
            assert call(service, "/lookup/s0", b"k2")[0] == 200
        finally:
            client.close()


def test_bad_store_calls_are_refused(tmp_path: Path) -> None:
    with running_redis(tmp_path) as redis, store_service("gw", redis) as service:
        assert call(service, "/store/s0", b"abc", {"x-cache-ttl": "5"})[0] == 400
        assert call(service, "/lookup/../x", b"k")[0] == 404
        assert call(service, "/lookup/s0", method="GET")[0] == 405


def test_redis_down_is_503_and_recovers(tmp_path: Path) -> None:
    redis = start_redis(tmp_path / "r")
    port = redis.port
    with store_service("gw", redis) as service:
        try:
            assert put(service, "s0", b"k", b"{}") == 204
            redis.stop()
            assert call(service, "/lookup/s0", b"k")[0] == 503
            assert put(service, "s0", b"k", b"{}") == 503
            redis = start_redis(tmp_path / "r", port=port)
            assert put(service, "s0", b"k", b"{}") == 204
            assert call(service, "/lookup/s0", b"k")[0] == 200
        finally:
            redis.stop()


def test_the_store_runs_on_uvloop_when_installed(tmp_path: Path) -> None:
    """As the rate limit stand-in: the `envoy` and `dev` extras install uvloop (asyncio's own
    loop costs more CPU per call)."""
    pytest.importorskip("uvloop")
    with running_redis(tmp_path) as redis, store_service("gw", redis) as service:
        assert type(service.loop).__module__.startswith("uvloop")
        assert put(service, "s0", b"route\nkey", b'{"answer":1}') == 204
        assert call(service, "/lookup/s0", b"route\nkey")[0] == 200
