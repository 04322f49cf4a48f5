"""The cache's Lua (as rendered) in LuaJIT with the fake handle of tests/providers/lua_harness:
the store's byte bound, LRU order and TTL, and what the filter refuses to store (cut streams,
content-filtered answers, errors, `no-store`, entries over the bound)."""

from __future__ import annotations

from typing import Any

import pytest

from gatewayctl.render.envoy.cache import STORE_MODULE
from gatewayctl.render.envoy.lua import assemble, module_source, to_lua
from gatewayctl.render.envoy.names import CACHE_NS, LUA_NAMES
from tests.providers.lua_harness import Attempt, LuaFilter

luajit = pytest.importorskip("lupa.luajit21", reason="lupa with LuaJIT 2.1 (Envoy's Lua)")


@pytest.fixture()
def store() -> Any:
    rt = luajit.LuaRuntime(encoding=None)
    names = "NAMES = " + to_lua(LUA_NAMES) + "\n"
    return rt.execute(names + "return " + module_source("cache_store.lua"))


def value(store: Any, s: Any, key: bytes, now: int) -> Any:
    """The stored value (get also returns when it was stored)."""
    found = store.get(s, key, now)
    return found[0] if isinstance(found, tuple) else found


def test_store_evicts_least_recently_used_by_bytes(store: Any) -> None:
    overhead = store.OVERHEAD
    s = store.new(3 * (100 + 1 + overhead))  # three entries of 100 bytes with 1-byte keys
    for key in (b"a", b"b", b"c"):
        assert store.put(s, key, key, 100, 60, 0) == 0
    assert value(store, s, b"a", 1) == b"a"  # a is now the most recently used
    assert store.put(s, b"d", b"d", 100, 60, 1) == 1  # evicts b
    assert value(store, s, b"b", 1) is None
    assert [value(store, s, k, 1) for k in (b"a", b"c", b"d")] == [b"a", b"c", b"d"]
    assert s.bytes == 3 * (100 + 1 + overhead) and s.count == 3
    # replacing an entry frees its old size first
    assert store.put(s, b"a", b"A", 100, 60, 1) == 0
    assert s.count == 3 and value(store, s, b"a", 1) == b"A"
    # an entry larger than the whole store is refused, and evicts nothing
    assert store.put(s, b"huge", b"x", 10_000, 60, 1) is None
    assert s.count == 3


def test_store_expires_by_ttl(store: Any) -> None:
    s = store.new(100_000)
    store.put(s, b"k", b"v", 10, 5, 100)
    assert value(store, s, b"k", 104) == b"v"
    assert value(store, s, b"k", 105) is None
    assert s.count == 0 and s.bytes == 0


ANSWER = b'{"choices":[{"message":{"content":"hi"},"finish_reason":"stop"}],"usage":{}}'
STREAM = [b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n', b"data: [DONE]\n\n"]


@pytest.fixture()
def cache_filter() -> Any:
    data = {"routes": {"r": {"store": "s0", "ttl": 600, "max_entry": 4096}},
            "stores": {"s0": 1_000_000}}
    lua = LuaFilter(assemble(data, STORE_MODULE, "cache.lua"))

    def call(key: bytes, status: str | None = None, headers: dict[str, str] | None = None,
             body: bytes = b"", chunks: list[bytes] | None = None) -> Attempt:
        """A lookup (no status) or a response to store, under the request's cache key."""
        md = {CACHE_NS: {"key": b"Lr\n" + key}}
        if status is None:
            return lua.run("request", headers or {}, metadata=md)
        return lua.run("response", {":status": status, **(headers or {})}, body, chunks, md)

    return call


def _stored(cache_filter: Any, key: bytes) -> bool:
    return cache_filter(key).replied is not None


def test_a_whole_answer_and_a_finished_stream_are_stored(cache_filter: Any) -> None:
    json_type = {"content-type": "application/json"}
    assert cache_filter(b"k1", "200", json_type, ANSWER).headers["x-gateway-cache"] == "miss"
    replied = cache_filter(b"k1").replied
    assert replied["body"] == ANSWER.decode()
    assert replied["headers"]["x-gateway-cache"] == "hit"
    sse = {"content-type": "text/event-stream"}
    cache_filter(b"k2", "200", sse, chunks=STREAM)
    replied = cache_filter(b"k2").replied
    assert replied["body"] == b"".join(STREAM).decode()
    assert replied["headers"]["content-type"] == "text/event-stream"


@pytest.mark.parametrize(
    ("status", "headers", "body", "chunks"),
    [
        ("503", {"content-type": "application/json"}, b'{"error":{}}', None),
        ("200", {"content-type": "application/json", "cache-control": "private, no-store"},
         ANSWER, None),
        ("200", {"content-type": "application/json"},
         b'{"choices":[{"finish_reason": "content_filter"}]}', None),
        ("200", {"content-type": "application/json"}, b"x" * 5000, None),  # over max_entry
        ("200", {"content-type": "text/event-stream"}, b"", STREAM[:1]),  # no [DONE]
        ("200", {"content-type": "text/event-stream"}, b"",
         [b'data: {"choices":[{"finish_reason":"content_filter"}]}\n\n', STREAM[1]]),
        ("200", {"content-type": "text/event-stream"}, b"", [b"data: " + b"x" * 5000, STREAM[1]]),
    ],
    ids=["error", "no-store", "content-filter", "too-large", "cut-stream",
         "filtered-stream", "stream-too-large"],
)
def test_what_is_not_stored(cache_filter: Any, status: str, headers: dict[str, str],
                            body: bytes, chunks: list[bytes] | None) -> None:
    cache_filter(b"k", status, headers, body, chunks)
    assert not _stored(cache_filter, b"k")
