"""`gatewayctl up` with global limits and a response cache: the cache store service runs beside
Redis and the rate limit service, the cache's entries are in that Redis, `down` stops it."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest

from gatewayctl.local import process
from gatewayctl.local.gateway import down, up
from gatewayctl.local.resp import RedisClient, command
from gatewayctl.local.state import StateDir
from tests.limits.local_roots import global_quickstart
from tests.limits.services import redis_binary
from tests.limits.test_local_up import state  # noqa: F401 - the fixture

pytestmark = [
    pytest.mark.envoy,
    pytest.mark.slow,
    pytest.mark.skipif(redis_binary() is None, reason="redis-server (Debian) not on PATH"),
]

CACHE = """
---
apiVersion: gatewayctl.dev/v1alpha1
kind: Policy
metadata: {name: cached}
spec:
  cache: {ttl: 10m}
"""


@pytest.fixture
def cache_root(tmp_path: Path) -> Path:
    return global_quickstart(tmp_path, "cached", CACHE)


def chat(port: int, text: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps({"model": "chat", "messages": [{"role": "user", "content": text}]})
    conn.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status, resp.getheader("x-gateway-cache") or ""


def test_up_shares_the_cache_through_its_redis(cache_root: Path,
                                               state: StateDir) -> None:  # noqa: F811
    result = up(cache_root, listener_port=process.free_port(), admin_port=process.free_port(),
                state_dir=state.path)
    store = state.read_pid("cachestore")
    assert store is not None and process.is_alive(store)
    port = result.ports.listener
    assert chat(port, "hello cache") == (200, "miss")
    assert chat(port, "hello cache") == (200, "hit")
    current = state.read_state()
    assert current is not None and current.cache_store_port == result.ports.cache_store
    redis = RedisClient(f"127.0.0.1:{current.redis_port}")
    try:
        (keys,) = redis.pipeline([command(b"KEYS", b"gatewayctl:cache:*:e:*")])
    finally:
        redis.close()
    assert isinstance(keys, list) and len(keys) == 1
    assert keys[0].startswith(b"gatewayctl:cache:{ai-gateway/s0}:e:")  # type: ignore[union-attr]
    stopped = down(state_dir=state.path)
    assert "cachestore" in dict(stopped.stopped)
    assert not process.is_alive(store)
