"""The shipped Lua without Envoy: its modules and filters in LuaJIT (lupa), with a fake handle.

Every module is loaded as the renderer binds it (`module_source`), never a copy or a slice.

These pin the fast paths of the filter: the response's `usage` is read from the top-level
member only (never from text inside a string or a nested object), the request body is
re-encoded only when its content changes, and one-backend routes get their upstream model
written downstream. tests/render/test_dataplane.py runs the same code in a real Envoy.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gatewayctl.render.envoy import EnvoyOptions
from gatewayctl.render.envoy.listener import auth_filter_data, gateway_lua_data
from gatewayctl.render.envoy.lua import (
    auth_source,
    gateway_source,
    module_source,
    shipped_source,
    strip_lua,
    to_lua,
    upstream_source,
)
from gatewayctl.render.envoy.names import LUA_NAMES
from gatewayctl.render.envoy.upstream import provider_data, target_value
from tests.providers.lua_harness import HEADERS_OF
from tests.render import irs

luajit = pytest.importorskip("lupa.luajit21", reason="lupa with LuaJIT 2.1 (Envoy's Lua)")


def _runtime() -> Any:
    return luajit.LuaRuntime(encoding=None)


def load_module(rt: Any, name: str, prelude: str = "") -> Any:
    """A shipped module as the filters bind it, after the names table and `prelude` (the
    globals it reads: the modules and data bound before it in the filter)."""
    return rt.execute(
        "NAMES = " + to_lua(LUA_NAMES) + "\njsonstring = " + module_source("jsonstring.lua")
        + "\n" + prelude + "\nreturn " + module_source(name)
    )


@pytest.fixture(scope="module")
def jsonlib() -> Any:
    rt = _runtime()
    return rt, load_module(rt, "json.lua")


def _usage(jsonlib: Any, doc: str) -> Any:
    rt, lib = jsonlib
    get = rt.eval(
        "function(J, s) local u = J.top_level_member(s, 'usage')"
        " if u == nil then return nil end return J.encode(u) end"
    )
    out = get(lib, doc.encode())
    return None if out is None else json.loads(out)


USAGE = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
FAKE = '\\"usage\\": {\\"prompt_tokens\\": 999, \\"completion_tokens\\": 999}'


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        # the usual place: last member
        ('{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":%s}', USAGE),
        # before choices (the structural scan)
        ('{"usage" : %s , "choices":[{"message":{"content":"hi"}}]}', USAGE),
        # absent
        ('{"id":"x","choices":[]}', None),
        ('{"id":"x","choices":[],"usage":null}', None),
        # a reply quoting `"usage": {...}` in its content, before and after the real one
        ('{"choices":[{"message":{"content":"' + FAKE + '"}}],"usage":%s}', USAGE),
        ('{"usage":%s,"choices":[{"message":{"content":"' + FAKE + '"}}]}', USAGE),
        ('{"choices":[{"message":{"content":"' + FAKE + '"}}]}', None),
        # content ending in `"usage` (its closing quote then reads as `"usage"`)
        ('{"choices":[{"message":{"content":"say \\"usage"}}],"n":1}', None),
        ('{"a":"say \\"usage", "usage":%s}', USAGE),
        # a nested object's `usage` member is not the response's
        ('{"choices":[{"usage":{"prompt_tokens":1,"completion_tokens":1}}]}', None),
        ('{"usage":%s,"choices":[{"usage":{"prompt_tokens":1,"completion_tokens":1}}]}', USAGE),
        ('{"x":{"usage":{"prompt_tokens":1}},"usage":%s}', USAGE),
        # repeated top-level member: the last one, as a full decode would keep
        ('{"usage":{"prompt_tokens":1,"completion_tokens":1},"usage":%s}', USAGE),
        # not an object at the top, or broken
        ('[{"usage":%s}]', None),
        ('"usage"', None),
        ('{"usage":{"prompt_tokens":5,', None),
        ("", None),
    ],
)
def test_usage_is_the_top_level_member_only(jsonlib: Any, doc: str, expected: Any) -> None:
    text = doc % json.dumps(USAGE) if "%s" in doc else doc
    assert _usage(jsonlib, text) == expected


def test_usage_of_large_reply_with_escapes_and_unicode(jsonlib: Any) -> None:
    content = 'line "usage": {} \\ \n' * 2000 + "é漢\U0001f600"
    doc: dict[str, Any] = {
        "choices": [{"message": {"content": content}}],
        "usage": USAGE,
        "z": [1, {"a": "}"}],
    }
    assert _usage(jsonlib, json.dumps(doc)) == USAGE
    assert _usage(jsonlib, json.dumps(doc, ensure_ascii=False)) == USAGE


def test_decode_members_spans_and_repeated_keys(jsonlib: Any) -> None:
    rt, lib = jsonlib
    members = rt.eval(
        "function(J, s) local o, m, unique = J.decode_members(s) local t = {}"
        " for i = 1, #m, 3 do t[#t + 1] = m[i] .. '=' .. string.sub(s, m[i + 1], m[i + 2]) end"
        " return table.concat(t, '|'), unique end"
    )
    assert members(lib, b' { "model" : "m" ,\n"a":[1, {"b":2}] , "c":"\\u0041"} ') == (
        b'model="model" : "m"|a="a":[1, {"b":2}]|c="c":"\\u0041"',
        True,
    )
    assert members(lib, b"{}") == (b"", True)
    assert members(lib, b'{"model":"m","model":"n"}')[1] is False
    assert members(lib, b'{"m":[{"content":"a","content":"b"}]}')[1] is False
    assert members(lib, b'{"m":[{"content":"a"},{"content":"b"}]}')[1] is True
    for bad in (b"[1]", b'{"a":1', b'{"a":1} x', b'"s"'):
        ok = rt.eval("function(J, s) return (pcall(J.decode_members, s)) end")(lib, bad)
        assert ok is False, bad


def test_decode_encode_round_trip(jsonlib: Any) -> None:
    rt, lib = jsonlib
    roundtrip = rt.eval("function(J, s) return J.encode(J.decode(s)) end")
    doc: dict[str, Any] = {
        "s": 'q"uo\\te\n\t\x01\x7f é漢\U0001f600',
        "n": [0, -1, 1.5, -0.25, 1e21, 12345678901234],
        "o": {},
        "a": [],
        "z": None,
        "b": [True, False],
    }
    assert json.loads(roundtrip(lib, json.dumps(doc).encode())) == doc
    for bad in ("01", "1.", "1e", "-", ".5", "+1", '"\\x"', '"a\nb"', "[1,]", "{} {}"):
        ok = rt.eval("function(J, s) return (pcall(J.decode, s)) end")(lib, bad.encode())
        assert ok is False, bad


# The gateway filter in a fake Envoy ---------------------------------------------------------

_FAKE_ENVOY = HEADERS_OF + r"""
local reqbody, req_headers, status, resp_headers, respbody, chunks = ...
local md = {}
local mdw = {
  set = function(_, ns, k, v) md[ns] = md[ns] or {}; md[ns][k] = v end,
  get = function(_, ns) return md[ns] end,
}
local si = { dynamicMetadata = function() return mdw end }
local function handle(hdrs, text, chunk_list)
  local body = text
  local bw = {
    length = function() return #body end,
    getBytes = function(_, i, n) return string.sub(body, i + 1, i + n) end,
    setBytes = function(_, s) body = s end,
  }
  local function chunk(s)
    return {
      length = function() return #s end,
      getBytes = function(_, i, n) return string.sub(s, i + 1, i + n) end,
    }
  end
  local h = {
    headers = function() return headers_of(hdrs) end,
    body = function() return bw end,
    bodyChunks = function()
      local i = 0
      return function() i = i + 1; if chunk_list[i] then return chunk(chunk_list[i]) end end
    end,
    streamInfo = function() return si end,
    clearRouteCache = function() end,
    respond = function(_, rh, b) body = b; hdrs[":status"] = rh[":status"] end,
    logErr = function() end,
  }
  return h, function() return body end
end
local rh = {}
for k, v in pairs(req_headers) do rh[k] = v end
local h, forwarded = handle(rh, reqbody, {})
envoy_on_request(h)
local out_md = {}
for k, v in pairs(md.gw or {}) do out_md[k] = v end
if status ~= nil then
  local hh = {}
  for k, v in pairs(resp_headers) do hh[k] = v end
  local cl = {}
  for i, c in pairs(chunks) do cl[i] = c end
  local r = handle(hh, respbody, cl)
  envoy_on_response(r)
end
local result = {}
for k, v in pairs(md.gw or {}) do result[k] = v end
return forwarded(), rh, result
"""


# The auth filter (headers only) in a fake Envoy: the headers it leaves, and its reply if any.
_FAKE_AUTH = HEADERS_OF + r"""
local req_headers = ...
local hdrs = {}
for k, v in pairs(req_headers) do hdrs[k] = v end
local replied = nil
local md = { set = function() end }
local h = {
  headers = function() return headers_of(hdrs) end,
  streamInfo = function() return { dynamicMetadata = function() return md end } end,
  clearRouteCache = function() end,
  respond = function(_, rh, b) replied = b end,
}
envoy_on_request(h)
return hdrs, replied
"""


@dataclass(frozen=True)
class Filters:
    """The two downstream Lua filters, each run in a Lua state of its own as in Envoy."""

    auth: str
    gateway: str


@pytest.fixture(scope="module")
def gateway_lua() -> Filters:
    ir = irs.build_ir()
    options = EnvoyOptions(secrets_dir="/nonexistent")
    return Filters(
        auth_source(auth_filter_data(ir, options)),
        gateway_source(gateway_lua_data(ir, options)),
    )


def _authenticate(filters: Filters, headers: dict[bytes, bytes]) -> dict[bytes, bytes]:
    rt = _runtime()
    rt.execute(filters.auth)
    out, replied = rt.execute("return function(...) " + _FAKE_AUTH + " end")(rt.table_from(headers))
    assert replied is None, replied
    return dict(out.items())


def _run(
    filters: Filters,
    body: bytes,
    *,
    path: str = "/v1/chat/completions",
    response: bytes | None = None,
    content_type: str = "application/json",
    chunks: list[bytes] | None = None,
    headers: dict[bytes, bytes] | None = None,
    status: int = 200,
) -> tuple[bytes, dict[bytes, bytes], dict[bytes, Any]]:
    sent = _authenticate(filters, {b":method": b"POST", b":path": path.encode(), **(headers or {})})
    rt = _runtime()
    rt.execute(filters.gateway)
    run = rt.execute("return function(...) " + _FAKE_ENVOY + " end")
    table = rt.table_from
    req_headers = table(sent)
    resp_headers = table(
        {
            b":status": str(status).encode(),
            b"content-type": content_type.encode(),
            b"x-gateway-model": b"m",
        }
    )
    forwarded, out_headers, md = run(
        body,
        req_headers,
        status if response is not None or chunks is not None else None,
        resp_headers,
        response or b"",
        table(chunks or []),
    )
    return forwarded, dict(out_headers.items()), dict(md.items())


def test_route_only_request_forwards_the_client_bytes(gateway_lua: Filters) -> None:
    # One backend and no fallback (pinned): the upstream model is written here, and so are
    # the authority and credential the per-attempt filters (off on this route) would set.
    body = b'{ "messages" : [ {"role":"user","content":"hi \\u00e9"} ],\n"n": 1E2,'
    body += b' "model":"llama-70b", "prompt_variables": {"x": 1} }'
    forwarded, headers, md = _run(gateway_lua, body)
    assert forwarded == (
        b'{"model":"meta-llama/Llama-3.1-70B-Instruct",'
        b'"messages" : [ {"role":"user","content":"hi \\u00e9"} ],"n": 1E2}'
    )
    assert b"x-gw-body-model" not in headers
    assert headers[b":authority"] == b"api.openai.example.com"
    assert headers[b"x-gw-route"] == b"llama"
    assert md[b"route"] == b"llama" and md[b"requested_model"] == b"llama-70b"


def test_one_backend_with_a_fallback_tells_the_upstream_filter(gateway_lua: Filters) -> None:
    # One backend, a fallback to another model: the backend's upstream name is written here
    # and x-gw-body-model tells the per-attempt filter which attempts need no splice.
    forwarded, headers, _ = _run(gateway_lua, b'{"messages":[],"model":"fallback503"}')
    assert forwarded == b'{"model":"flaky-503","messages":[]}'
    assert headers[b"x-gw-body-model"] == b"flaky-503"
    assert b":authority" not in headers


def test_two_backends_leave_the_model_to_the_upstream_filter(gateway_lua: Filters) -> None:
    forwarded, headers, _ = _run(gateway_lua, b'{"messages":[],"model":"chat"}')
    assert forwarded == b'{"model":"chat","messages":[]}'
    assert b"x-gw-body-model" not in headers


@pytest.mark.parametrize(
    "body",
    [
        # a repeated key anywhere: what the provider reads must be what was checked
        b'{"model":"chat","messages":[{"role":"user","content":"a","content":"b"}]}',
        b'{"model":"chat","model":"chat","messages":[]}',
    ],
)
def test_repeated_keys_are_re_encoded(gateway_lua: Filters, body: bytes) -> None:
    forwarded, _, _ = _run(gateway_lua, body)
    assert json.loads(forwarded)["model"] == "chat"
    assert forwarded.startswith(b'{"model":"chat",')
    assert forwarded.count(b'"content"') <= 1 and forwarded.count(b'"model"') == 1


def test_redaction_and_prompt_re_encode(gateway_lua: Filters) -> None:
    forwarded, _, _ = _run(
        gateway_lua, b'{"model":"guarded","messages":[{"role":"user","content":"mail a@b.co"}]}'
    )
    assert json.loads(forwarded)["messages"][0]["content"] == "mail [REDACTED_EMAIL]"
    # Nothing to redact: the client's bytes go on.
    body = b'{"messages":[{"role":"user","content":"nothing here"}], "model":"guarded"}'
    forwarded, _, _ = _run(gateway_lua, body)
    assert forwarded == (
        b'{"model":"gpt-4o-2024-08-06","messages":[{"role":"user","content":"nothing here"}]}'
    )
    forwarded, _, md = _run(
        gateway_lua, b'{"model":"assistant","messages":[],"prompt_variables":{"product":"A"}}'
    )
    sent = json.loads(forwarded)
    assert sent["messages"][0]["role"] == "system" and "prompt_variables" not in sent
    assert md[b"prompt"] == b"support-assistant"


def _reply(usage_first: bool = False, content: str = "hello") -> bytes:
    doc: dict[str, Any] = {"id": "c1", "object": "chat.completion", "model": "m"}
    choices = [{"index": 0, "message": {"role": "assistant", "content": content}}]
    if usage_first:
        doc = {"usage": USAGE, **doc, "choices": choices}
    else:
        doc = {**doc, "choices": choices, "usage": USAGE}
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "reply",
    [
        _reply(),
        _reply(usage_first=True),
        _reply(content='"usage": {"prompt_tokens": 999, "completion_tokens": 999}'),
        _reply(usage_first=True, content='x", "usage": {"prompt_tokens": 999}}'),
    ],
)
def test_response_usage_reaches_the_metadata(gateway_lua: Filters, reply: bytes) -> None:
    _, _, md = _run(gateway_lua, b'{"model":"llama-70b"}', response=reply)
    assert (md[b"prompt_tokens"], md[b"completion_tokens"]) == (5, 7)


def test_response_without_usage_sets_no_tokens(gateway_lua: Filters) -> None:
    reply = json.dumps({"choices": [{"message": {"content": '"usage": {"prompt_tokens": 9}'}}]})
    _, _, md = _run(gateway_lua, b'{"model":"llama-70b"}', response=reply.encode())
    assert b"prompt_tokens" not in md and b"cost_usd" not in md


def test_streamed_usage_from_the_final_chunk(gateway_lua: Filters) -> None:
    events = [
        {"choices": [{"delta": {"content": '"usage": {"prompt_tokens": 999}'}}], "usage": None},
        {"choices": [{"delta": {"content": "more"}}], "usage": None},
        {"choices": [], "usage": USAGE},
    ]
    stream = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    raw = stream.encode()
    # Split anywhere, including inside the usage event.
    cut = raw.index(b'"usage": {"prompt_tokens": 5') + 7
    chunks = [raw[:13], raw[13:cut], raw[cut:]]
    _, _, md = _run(
        gateway_lua, b'{"model":"llama-70b"}', content_type="text/event-stream", chunks=chunks
    )
    assert (md[b"prompt_tokens"], md[b"completion_tokens"]) == (5, 7)


def test_email_redaction_matches_the_lua_pattern() -> None:
    """redact_email (scan from each `@`) gives gsub's result for the documented pattern."""
    rt = _runtime()
    redact = load_module(rt, "redact.lua", "json = " + module_source("json.lua")).email
    pattern = rt.eval(
        'function(s) return (string.gsub(s, "[%w%.%%%+%-_]+@[%w%-]+%.[%w%.%-]*%w",'
        ' "[REDACTED_EMAIL]")) end'
    )
    rng = random.Random(7)
    alphabet = b"ab1.@-_+% \nX@\xc3\xa9"
    cases = [b"mail jane.doe+x@example.co.uk, ok", b"a@b.c@d.e", b"x@@y.z", b"@a.b", b"q a@b. c"]
    cases += [bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 16))) for _ in range(20000)]
    for text in cases:
        assert redact(text) == pattern(text), text


_FAKE_UPSTREAM = HEADERS_OF + r"""
local hdrs, raw = ...
local body, buffered = raw, false
local h = {
  headers = function() return headers_of(hdrs) end,
  body = function()
    buffered = true
    return {
      length = function() return #body end,
      getBytes = function(_, i, n) return string.sub(body, i + 1, i + n) end,
      setBytes = function(_, s) body = s end,
    }
  end,
  logErr = function() end,
}
envoy_on_request(h)
return body, buffered, hdrs
"""


@pytest.mark.parametrize(
    ("body_model", "buffered", "sent"),
    [
        # the downstream filter already wrote this attempt's upstream model: body untouched
        ("llama-3.1-70b", False, b'{"model":"already-written","x":1}'),
        # a fallback attempt (another model), or a route with several backends: spliced
        ("gpt-4o-2024-08-06", True, b'{"model":"meta-llama/Llama-3.1-70B-Instruct","x":1}'),
        (None, True, b'{"model":"meta-llama/Llama-3.1-70B-Instruct","x":1}'),
    ],
)
def test_upstream_filter_skips_the_body_only_for_its_model(
    body_model: str | None, buffered: bool, sent: bytes
) -> None:
    ir = irs.build_ir()
    options = EnvoyOptions(secrets_dir="/nonexistent")
    data = {
        "providers": provider_data(ir, options),
        "secret_ttl_s": 10,
    }
    models = {m.name: m for m in ir.models}
    providers = {p.name: p for p in ir.providers}
    assert models["llama-3.1-70b"].upstream_model == "meta-llama/Llama-3.1-70B-Instruct"
    rt = _runtime()
    rt.execute(upstream_source(data))
    run = rt.execute("return function(...) " + _FAKE_UPSTREAM + " end")
    headers = {
        b":path": b"/v1/chat/completions",
        b"x-gw-target": target_value(
            models["llama-3.1-70b"], providers["openai"], "api.openai.example.com"
        ).encode(),
    }
    if body_model is not None:
        headers[b"x-gw-body-model"] = body_model.encode()
    out, was_buffered, after = run(rt.table_from(headers), b'{"model":"already-written","x":1}')
    assert (out, was_buffered) == (sent, buffered)
    left = dict(after.items())
    assert not any(k.startswith(b"x-gw-") for k in left), left
    assert left[b":authority"] == b"api.openai.example.com"


@pytest.mark.parametrize(("ttl", "second"), [(0, b"rotated"), (3600, b"first")])
def test_secret_reader_trims_caches_and_rereads_after_the_ttl(
    tmp_path: Path, ttl: int, second: bytes
) -> None:
    # Both filters read provider credentials through secrets.lua: a rotated Secret is picked
    # up once the cached value is older than secret_ttl_s, without a reload.
    secret = tmp_path / "api-key"
    secret.write_text(" first\n")
    rt = _runtime()
    read = load_module(rt, "secrets.lua", f"DATA = {{secret_ttl_s = {ttl}}}").read
    assert read(str(secret).encode()) == b"first"
    secret.write_text("rotated\n")
    assert read(str(secret).encode()) == second
    assert read(str(tmp_path / "missing").encode()) is None


@pytest.mark.parametrize(
    ("text", "end"),
    [(b'"abc"', 5), (b'"a\\"b"', 6), (b'"a\\\\"', 5), (b'"\\\\\\""x', 6), (b'"open', None),
     (b'"a\\"', None)],
)
def test_json_string_end_skips_escapes(jsonlib: Any, text: bytes, end: int | None) -> None:
    # the one scanner of a JSON string: json.lua's member scan and target.lua's model splice
    rt, _ = jsonlib
    assert load_module(rt, "jsonstring.lua").string_end(text, 2) == end


@pytest.mark.parametrize(("ttl", "second"), [(0, b"rotated"), (3600, b"first")])
def test_consumer_keys_share_the_secret_files_ttl(tmp_path: Path, ttl: int, second: bytes) -> None:
    # auth.lua finds consumers through secrets.lua too: one reader and one TTL for every file.
    (tmp_path / "a").write_text("first\n")
    (tmp_path / "b").write_text("  \n")
    rt = _runtime()
    keys = load_module(rt, "secrets.lua", f"DATA = {{secret_ttl_s = {ttl}}}")[b"keys"]
    entries = [("app", "a"), ("none", "b"), ("gone", "missing")]
    consumers = rt.eval(
        "{" + ",".join(f'{{name="{n}",file="{tmp_path / f}"}}' for n, f in entries) + "}"
    )
    assert dict(keys(consumers).items()) == {b"first": b"app"}
    (tmp_path / "a").write_text("rotated")
    assert dict(keys(consumers).items()) == {second: b"app"}


def test_strip_lua_keeps_every_literal_whole() -> None:
    source = (
        "  local a = [[first\n  -- not a comment\n\n  last]] -- a comment\n"
        '  local b = "--" .. \'-- \\\' --\' --[==[ a long\n comment ]==] .. [=[ ]] ]=]\n'
        "--[[ whole\nlines ]]\n\n  return a .. b\n"
    )
    stripped = strip_lua(source)
    assert stripped == (
        "local a = [[first\n  -- not a comment\n\n  last]]\n"
        'local b = "--" .. \'-- \\\' --\'   .. [=[ ]] ]=]\n'
        "return a .. b\n"
    )
    run = _runtime().execute
    assert run(source) == run(stripped)
    with pytest.raises(ValueError, match="unfinished long string"):
        strip_lua("local a = [[ never closed")
    with pytest.raises(ValueError, match="unfinished string"):
        strip_lua('local a = "no end\nlocal b = 1')


_SHIPPED = sorted(
    p.name for p in (Path(__file__).parents[2] / "gatewayctl/render/envoy/lua").glob("*.lua")
)


@pytest.mark.parametrize("name", _SHIPPED)
def test_shipped_lua_spells_no_name_of_names_py(name: str) -> None:
    """Headers, metadata namespaces and keys come from the generated NAMES table only, and
    every NAMES field the Lua reads exists."""
    import re

    code = shipped_source(name)
    used = set(re.findall(r"\bNAMES\.([A-Za-z_]+)", code))
    assert used <= set(LUA_NAMES), used - set(LUA_NAMES)
    spelled = re.findall(r"""["'](x-gw-[^"']*|x-gateway-[^"']*|gw(?:\.[a-z]+)?)["']""", code)
    assert not spelled, spelled
    compiled = _runtime().eval("function(s) local _, err = loadstring(s); return err end")
    assert compiled(code.encode()) is None
