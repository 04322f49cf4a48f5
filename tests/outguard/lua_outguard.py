"""outguard.lua in LuaJIT (lupa), bound as the body filter binds it, with a fake handle whose
body is a list of chunks: what a stream's client would receive, chunk by chunk."""

from __future__ import annotations

import json
from typing import Any

from gatewayctl.manifests.output_dfa import compile_patterns
from gatewayctl.render.envoy.lua import module_source, to_lua
from gatewayctl.render.envoy.names import LUA_NAMES

FAKE_HANDLE = """
local function fake(chunks)
  local h = { md = {}, status = nil, headers_set = {}, rewritten = 0 }
  local list = {}
  for i, c in ipairs(chunks) do
    list[i] = { data = c, getBytes = function(self, a, n) return self.data end,
                length = function(self) return #self.data end,
                setBytes = function(self, s) self.data = s; h.rewritten = h.rewritten + 1 end }
  end
  h.list = list
  function h:bodyChunks()
    local i = 0
    return function() i = i + 1; return list[i] end
  end
  function h:streamInfo()
    return { dynamicMetadata = function() return {
      set = function(_, ns, k, v) h.md[k] = v end } end }
  end
  function h:headers()
    return { replace = function(_, k, v) h.headers_set[k] = v end,
             remove = function(_, k) h.headers_set[k] = false end }
  end
  return h
end
"""


def guard(patterns: list[str] | None = None, action: str = "block",
          redact: list[str] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"block": action == "block" and bool(patterns)}
    if patterns:
        entry["dfa"] = compile_patterns(patterns).to_data()
    if redact:
        entry["redact"] = {k: True for k in redact}
    return entry


# outguard_event.lua replaced by a skim that reads no event: every event decoded whole.
NO_SKIM = "{ skim = function() return nil end }"


class Outguard:
    """The module, with DATA.outguards = {g = the guard}; `skim=False`: with every stream event
    decoded whole by json.lua (the path for events outguard_event.lua does not read)."""

    def __init__(self, g: dict[str, Any], skim: bool = True) -> None:
        import lupa.luajit21 as luajit

        self.rt = luajit.LuaRuntime(encoding=None)
        prelude = (
            "NAMES = " + to_lua(LUA_NAMES) + "\n"
            "jsonstring = " + module_source("jsonstring.lua") + "\n"
            "json = " + module_source("json.lua") + "\n"
            "DATA = " + to_lua({"outguards": {"g": g}}) + "\n"
            "redact = " + module_source("redact.lua") + "\n"
            "usage = " + module_source("usage.lua") + "\n"
            + FAKE_HANDLE
            + "local outguard_walk = " + module_source("outguard_walk.lua") + "\n"
            + "local outguard_event = "
            + (module_source("outguard_event.lua") if skim else NO_SKIM) + "\n"
            + "local M = " + module_source("outguard.lua") + "\n"
            "return M, fake, DATA.outguards.g, outguard_event"
        )
        self.module, self.fake, self.g, self.event = self.rt.execute(prelude)
        self.rewritten = 0  # chunks the last stream() rewrote (setBytes)

    def stream(self, chunks: list[bytes]) -> tuple[list[bytes], dict[str, Any]]:
        h = self.fake(self.rt.table_from(chunks))
        self.module.stream(h, self.g)
        out = [h.list[i + 1].data for i in range(len(chunks))]
        md = {k: v for k, v in h.md.items()}
        self.rewritten = int(h.rewritten)
        return out, md

    def reply(self, raw: bytes) -> tuple[bytes | None, dict[str, Any], dict[str, Any]]:
        h = self.fake(self.rt.table_from([]))
        out = self.module.reply(h, self.g, raw)
        return out, dict(h.md.items()), dict(h.headers_set.items())

    def walk(self, text: bytes) -> bool:
        dfa = self.g.dfa
        s = self.module.walk(dfa, dfa.start, text)
        return bool(s == 0 or dfa.end_set[s])

    def redact_stream(self, pieces: list[bytes]) -> bytes:
        """Feeds pieces of one text (not final, then final): what the client gets, joined."""
        t = self.module.new_text(self.g, False)
        out = []
        for p in pieces:
            out.append(self.module.feed(self.g, t, p, False)[0])
        out.append(self.module.feed(self.g, t, b"", True)[0])
        return b"".join(out)

    def arguments_hit(self, pieces: list[bytes]) -> bool:
        """A stream's tool-call arguments fed in pieces (the last one final): matched?"""
        t = self.module.new_text(self.g, True)
        hit = False
        for n, piece in enumerate(pieces):
            hit = bool(self.module.feed(self.g, t, piece, n == len(pieces) - 1)[1]) or hit
        return hit

    def reply_hit_arguments(self, arguments: bytes) -> bool:
        """A whole reply whose one tool call has these arguments: matched (log mode)?"""
        call = {"id": "c", "type": "function",
                "function": {"name": "f", "arguments": arguments.decode()}}
        raw = json.dumps({"choices": [{"index": 0, "message": {
            "role": "assistant", "content": None, "tool_calls": [call]}}]})
        return b"output_guardrail" in self.reply(raw.encode())[1]
