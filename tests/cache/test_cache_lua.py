"""The cache's Lua (as rendered) in LuaJIT with a fake handle: the store's byte bound, LRU order
and TTL, and what the filter refuses to store (cut streams, content-filtered answers, errors,
`no-store`, entries over the bound)."""

from __future__ import annotations

from typing import Any

import pytest

from gatewayctl.render.envoy.cache import STORE_MODULE
from gatewayctl.render.envoy.lua import assemble, module_source, to_lua
from gatewayctl.render.envoy.names import CACHE_NS, LUA_NAMES
from tests.providers.lua_harness import HEADERS_OF

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


_FAKE = HEADERS_OF + r"""
local md, status, resp_headers, body_text, chunk_list = ...
local mdw = {
  set = function(_, ns, k, v) md[ns] = md[ns] or {}; md[ns][k] = v end,
  get = function(_, ns) return md[ns] end,
}
local si = { dynamicMetadata = function() return mdw end }
local hdrs = {}
for k, v in pairs(resp_headers) do hdrs[k] = v end
hdrs[":status"] = status
local replied = nil
local h = {
  headers = function() return headers_of(hdrs) end,
  body = function()
    return { length = function() return #body_text end,
             getBytes = function(_, i, n) return string.sub(body_text, i + 1, i + n) end }
  end,
  bodyChunks = function()
    local i = 0
    return function()
      i = i + 1
      local c = chunk_list[i]
      if c == nil then return nil end
      return { length = function() return #c end,
               getBytes = function(_, a, n) return string.sub(c, a + 1, a + n) end }
    end
  end,
  streamInfo = function() return si end,
  respond = function(_, rh, b) replied = { headers = rh, body = b } end,
}
if status == nil then
  envoy_on_request(h)
else
  envoy_on_response(h)
end
return replied, hdrs
"""

ANSWER = b'{"choices":[{"message":{"content":"hi"},"finish_reason":"stop"}],"usage":{}}'
STREAM = [b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n', b"data: [DONE]\n\n"]


@pytest.fixture()
def cache_filter() -> Any:
    rt = luajit.LuaRuntime(encoding=None)
    data = {"routes": {"r": {"store": "s0", "ttl": 600, "max_entry": 4096}},
            "stores": {"s0": 1_000_000}}
    source = assemble(data, STORE_MODULE, "cache.lua")
    run = rt.execute(source + "\nreturn function(...) " + _FAKE + " end")

    def call(key: bytes, status: str | None = None, headers: dict[str, str] | None = None,
             body: bytes = b"", chunks: list[bytes] | None = None) -> Any:
        md = rt.table_from({CACHE_NS.encode(): rt.table_from({b"key": b"Lr\n" + key})})
        h = rt.table_from({k.encode(): v.encode() for k, v in (headers or {}).items()})
        c = rt.table_from(dict(enumerate(chunks or [], 1)))
        replied, hdrs = run(md, status.encode() if status else None, h, body, c)
        return replied, hdrs

    return call


def _stored(cache_filter: Any, key: bytes) -> bool:
    replied, _ = cache_filter(key)
    return replied is not None


def test_a_whole_answer_and_a_finished_stream_are_stored(cache_filter: Any) -> None:
    json_type = {"content-type": "application/json"}
    _, hdrs = cache_filter(b"k1", "200", json_type, ANSWER)
    assert hdrs[b"x-gateway-cache"] == b"miss"
    replied, _ = cache_filter(b"k1")
    assert replied[b"body"] == ANSWER
    assert replied[b"headers"][b"x-gateway-cache"] == b"hit"
    sse = {"content-type": "text/event-stream"}
    cache_filter(b"k2", "200", sse, chunks=STREAM)
    replied, _ = cache_filter(b"k2")
    assert replied[b"body"] == b"".join(STREAM)
    assert replied[b"headers"][b"content-type"] == b"text/event-stream"


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
