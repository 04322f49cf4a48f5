"""The translating upstream filter (lua/translate.lua, as rendered) in LuaJIT with a fake handle.

Runs the shipped source the renderer builds (`translate_source`), so the golden cases and the
fuzz test exercise exactly what Envoy runs, without Envoy: one attempt's request
(`envoy_on_request`) and its response (`envoy_on_response`, a buffered body or a stream fed
chunk by chunk, as Envoy's bodyChunks() does, with the last chunk rewritten after the loop).
tests/providers/test_sdk_envoy.py runs the same source in a real Envoy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from gatewayctl.render.envoy.lua import translate_source
from gatewayctl.render.envoy.upstream import target_value

# Envoy's header map (get, remove, replace) over a Lua table; the fake handles start with it.
HEADERS_OF = r"""
local function headers_of(t)
  return {
    get = function(_, k) return t[k] end,
    remove = function(_, k) t[k] = nil end,
    replace = function(_, k, v) t[k] = v end,
  }
end
"""

_FAKE = HEADERS_OF + r"""
local mode, req_headers, body_text, chunk_list, md_in = ...
local md = md_in or {}
local mdw = {
  set = function(_, ns, k, v) md[ns] = md[ns] or {}; md[ns][k] = v end,
  get = function(_, ns) return md[ns] end,
}
local si = { dynamicMetadata = function() return mdw end }
local hdrs = {}
for k, v in pairs(req_headers) do hdrs[k] = v end
local body = body_text
local replied = nil
local function buffer(get, set)
  return {
    length = function() return #get() end,
    getBytes = function(_, i, n) return string.sub(get(), i + 1, i + n) end,
    setBytes = function(_, s) set(s) end,
  }
end
local out_chunks = {}
local h = {
  headers = function() return headers_of(hdrs) end,
  body = function() return buffer(function() return body end, function(s) body = s end) end,
  bodyChunks = function()
    local i = 0
    return function()
      i = i + 1
      local c = chunk_list[i]
      if c == nil then return nil end
      out_chunks[i] = c
      local idx = i
      return buffer(function() return out_chunks[idx] end, function(s) out_chunks[idx] = s end)
    end
  end,
  streamInfo = function() return si end,
  respond = function(_, rh, b) replied = { status = rh[":status"], headers = rh, body = b } end,
  logErr = function() end,
}
if mode == "request" then envoy_on_request(h) else envoy_on_response(h) end
return hdrs, body, table.concat(out_chunks), replied, md
"""


def lua_runtime() -> Any:
    from lupa import luajit21  # type: ignore[import-untyped]

    return luajit21.LuaRuntime(encoding=None, unpack_returned_tuples=True)


def to_py(value: Any) -> Any:
    """A Lua table (lupa) as Python dicts and lists of str."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "items"):
        items = {to_py(k): to_py(v) for k, v in value.items()}
        if items and all(isinstance(k, int) for k in items):
            return [items[i] for i in sorted(items)]
        return items
    return value


@dataclass
class Attempt:
    """The outcome of one attempt through the filter."""

    headers: dict[str, str]
    body: str
    replied: dict[str, Any] | None
    metadata: dict[str, Any] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


class LuaFilter:
    """One Lua state holding a rendered filter source, as one Envoy worker has it."""

    def __init__(self, source: str) -> None:
        self.rt = lua_runtime()
        self.rt.execute(source)
        self._run = self.rt.execute("return function(...) " + _FAKE + " end")
        self._md: Any = None

    def _table(self, mapping: dict[str, Any]) -> Any:
        """A Python mapping (nested mappings too) as a Lua table of byte strings."""
        return self.rt.table_from({
            k.encode(): self._table(v) if isinstance(v, dict)
            else v if isinstance(v, bytes) else v.encode()
            for k, v in mapping.items()})

    def run(self, mode: str, headers: dict[str, str], body: bytes = b"",
            chunks: list[bytes] | None = None, metadata: Any = None) -> Attempt:
        """One call of the filter's `envoy_on_request` (mode "request") or `envoy_on_response`
        with these headers, body or stream chunks and dynamic metadata (a mapping, or the Lua
        table an earlier call left); the metadata it leaves is kept for the next call."""
        md = self._table(metadata) if isinstance(metadata, dict) else metadata
        out_headers, out_body, streamed, replied, md = self._run(
            mode.encode(), self._table(headers), body,
            self.rt.table_from(list(chunks or [])), md)
        self._md = md
        text = streamed if chunks is not None else out_body
        return Attempt({k.decode(): v.decode() for k, v in out_headers.items()},
                       text.decode("utf-8", "replace"), to_py(replied), to_py(md))

    def request(self, target: str, body: bytes, headers: dict[str, str] | None = None,
                retry_of: Attempt | None = None) -> Attempt:
        """One attempt. `retry_of`: a retry after that attempt, which starts, as in Envoy, from
        the header map and the dynamic metadata the earlier attempt left."""
        base = retry_of.headers if retry_of is not None else {
            ":path": "/v1/chat/completions", ":method": "POST",
            "content-type": "application/json"}
        hdrs = {**base, "x-gw-target": target, **(headers or {})}
        return self.run("request", hdrs, body,
                        metadata=self._md if retry_of is not None else None)

    def response(self, status: int, headers: dict[str, str], body: bytes = b"",
                 chunks: list[bytes] | None = None) -> Attempt:
        return self.run("response", {":status": str(status), **headers}, body, chunks, self._md)


class TranslateFilter(LuaFilter):
    """The translating upstream filter (translate.lua) with its data."""

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(translate_source(data))


def target(model: str, provider: str, upstream: str, authority: str = "upstream.test") -> str:
    """The x-gw-target value header_mutation writes for an attempt (upstream.target_value)."""
    from gatewayctl.ir import ModelIR, ProviderIR

    m = ModelIR(model, provider, upstream, None, 0.0, 0.0, False)
    p = ProviderIR(provider, "openai", "https", authority, 443, "", 1000, 1, None, "", "")
    return target_value(m, p, authority)
