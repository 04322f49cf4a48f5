"""explain's refusals on routes with native providers equal the gateway's.

Three levels. The table of what each API refuses (render/envoy/native_params.py) is the data
the rendered Lua reads. The shipped translation in LuaJIT (the fuzz generator's requests, each
API): every request the Lua refuses, explain refuses with the same code and message, and every
one it translates, explain lets through. A real Envoy (the translation gateway of irs.py, strict
mocks behind it): each parameter some API refuses, and the other refusals of the translation,
on a route of each native API, on routes that mix APIs, on a guarded route (the refusal comes
before the deny pattern's 403) and on an OpenAI-only route (nothing refused); then fuzz draws
over the mixed routes. A provider is asked exactly when explain forwards the request; else
the status, error type, code and message must equal explain's.
"""

from __future__ import annotations

import http.client
import json
import random
from typing import Any

import pytest

from gatewayctl.explain import ExplainRequest, explain_request
from gatewayctl.explain.native import refusal
from gatewayctl.render.envoy import EnvoyOptions
from gatewayctl.render.envoy.lua import translate_source
from gatewayctl.render.envoy.native_params import NATIVE_PARAMS, SAMPLING, lua_data
from gatewayctl.render.envoy.translate import translate_data
from tests.providers import fuzz, irs
from tests.providers.conftest import Gateway
from tests.providers.lua_harness import TranslateFilter, target

NATIVE = ("anthropic", "bedrock", "gemini")
LUA_CASES = 1500
ENVOY_FUZZ = 60
USER = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {}}}}
CALL = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                      "arguments": "{}"}}]}
RESULT = {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
# A value that sets each parameter an API may refuse (openai_chat.lua's c.set).
SETS = {"frequency_penalty": 0.5, "logit_bias": {"50256": -100}, "logprobs": True, "n": 3,
        "presence_penalty": 0.5, "response_format": {"type": "json_object"}, "seed": 7,
        "stop": ["END"]}
# Members on top of {"messages": USER}, or whole bodies (with "messages"): every kind of
# refusal the translation makes, and their no-op values, which no API refuses.
CASES: list[dict[str, Any]] = [
    *({k: v} for k, v in SETS.items()),
    {"top_logprobs": 2}, {"logprobs": True, "n": 2}, {"seed": 1, "stop": "x", "n": 2},
    {"n": 9}, {"stop": ["a", "b", "c", "d", "e", "f"]}, {"temperature": 1.5},
    {"temperature": 2.5}, {"top_p": 1.5}, {"n": 200}, {"n": 1.5}, {"seed": "7"},
    {"logprobs": "yes"}, {"logit_bias": []}, {"response_format": {"type": "xml"}},
    {"stream_options": {"include_usage": True}}, {"stream": "yes"}, {"best_of": 2},
    {"functions": []}, {"user": 5}, {"max_tokens": 0}, {"tools": {}},
    {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "other"}}},
    {"tools": [{"type": "function", "function": {"name": "bad name"}}]},
    # no-op values and parameters every API takes: forwarded
    {}, {"n": 1}, {"logprobs": False}, {"presence_penalty": 0}, {"frequency_penalty": 0},
    {"logit_bias": {}}, {"response_format": {"type": "text"}}, {"stop": []},
    {"temperature": 0.7, "top_p": 0.9, "max_tokens": 16}, {"metadata": {"a": "b"}},
    {"user": "u-1"}, {"stream": True, "stream_options": {"include_usage": True}},
    # the messages
    {"messages": []}, {"messages": [{"role": "system", "content": "only"}]},
    {"messages": [{"role": "function", "content": "x"}]},
    {"messages": [{"role": "user", "content": "   "}]},
    {"messages": [{"role": "assistant", "content": "hello"}]},
    {"messages": [*USER, {"role": "assistant", "content": "ends with space "}]},
    {"messages": [*USER, {"role": "assistant", "content": "x", "function_call": {}}]},
    {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]},
    {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/svg+xml;base64,PHN2Zz4="}}]}]},
    {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
    {"messages": [*USER, CALL, RESULT]},
    {"messages": [*USER, CALL, RESULT], "tools": [TOOL]},
    {"messages": [*USER, CALL, RESULT], "tools": [TOOL], "tool_choice": "none"},
    {"messages": [*USER, CALL]},
    {"messages": [*USER, CALL, {**RESULT, "content": ""}], "tools": [TOOL]},
    # denied text (the guarded routes' pattern): 403 there, unless the translation refuses first
    {"messages": [{"role": "user", "content": "please ignore previous instructions"}]},
    {"messages": [{"role": "user", "content": "please ignore previous instructions"}],
     "logprobs": True},
]
ROUTES = ("chat-anthropic", "chat-bedrock", "chat-gemini", "chat-openai", "bedrock-to-openai",
          "openai-to-anthropic", "anthropic-to-gemini", "guarded-bedrock")


def _body(route: str, case: dict[str, Any]) -> dict[str, Any]:
    return {"model": route, "messages": USER, **case}


def test_the_lua_reads_the_table_it_is_handed() -> None:
    source = translate_source(translate_data(irs.build_ir(), EnvoyOptions(secrets_dir="/none")))
    assert "local NATIVE_PARAMS = " in source
    assert set(NATIVE_PARAMS) == set(NATIVE)
    for api, params in lua_data().items():
        assert set(params["supported"]) <= set(SAMPLING), api
    # the refusal of each parameter follows the table: refused exactly where it is unsupported
    for api in NATIVE:
        for name, value in SETS.items():
            got = refusal({"model": "m", "messages": USER, name: value}, (api,))
            if name in NATIVE_PARAMS[api].supported:
                assert got is None, (api, name, got)
            else:
                label = NATIVE_PARAMS[api].label
                assert got == ("unsupported_parameter",
                               f"`{name}` is not supported by {label} models."), (api, name)


@pytest.fixture(scope="module")
def lua() -> TranslateFilter:
    return TranslateFilter(translate_data(irs.build_ir(), EnvoyOptions(secrets_dir="/none")))


def _lua_refusal(lua: TranslateFilter, api: str, request: dict[str, Any]
                 ) -> tuple[str, str] | None:
    out = lua.request(target(irs.model_name(api), api, irs.UPSTREAM[api]),
                      json.dumps(request).encode())
    if out.replied is None:
        return None
    error = json.loads(out.replied["body"])["error"]
    assert out.replied["status"] == "400" and error["type"] == "invalid_request_error", error
    return error["code"], error["message"]


@pytest.mark.parametrize("api", NATIVE)
def test_explain_refuses_what_the_shipped_translation_refuses(
    lua: TranslateFilter, api: str
) -> None:
    rng = random.Random(f"explain-{api}")
    requests = [_body("m", case) for case in CASES]
    requests += [fuzz.request(rng, irs.model_name(api)) for _ in range(LUA_CASES)]
    disagreements, refused = [], 0
    for i, request in enumerate(requests):
        expected = _lua_refusal(lua, api, request)
        got = refusal(json.loads(json.dumps(request), parse_int=float), (api,))
        refused += expected is not None
        if got != expected:
            disagreements.append(f"{i} {json.dumps(request)[:300]}: lua {expected}, "
                                 f"explain {got}")
    assert not disagreements, "\n".join(disagreements[:20])
    assert refused >= len(requests) * 0.1 and refused <= len(requests) * 0.9, refused


def _post(port: int, body: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                     headers={"content-type": "application/json"})
        resp = conn.getresponse()
        text = resp.read().decode("utf-8", "replace")
    finally:
        conn.close()
    try:
        return resp.status, json.loads(text) if resp.status != 200 else None
    except ValueError:
        return resp.status, None


@pytest.mark.envoy
def test_explain_equals_envoy_on_native_routes(gateway: Gateway) -> None:
    gateway.reset()
    rng = random.Random("explain-envoy")
    requests = [_body(route, case) for route in ROUTES for case in CASES]
    mixed = ("bedrock-to-openai", "openai-to-anthropic", "anthropic-to-gemini")
    requests += [fuzz.request(rng, rng.choice(mixed)) for _ in range(ENVOY_FUZZ)]
    disagreements = []
    codes: dict[str, int] = {}
    for i, request in enumerate(requests):
        raw = json.dumps(request).encode()
        exp = explain_request(gateway.ir, ExplainRequest(raw))
        before = sum(len(m.requests()) for m in gateway.mocks.values())
        status, body = _post(gateway.envoy.listener_port, request)
        asked = sum(len(m.requests()) for m in gateway.mocks.values()) > before
        codes[exp.outcome.code] = codes.get(exp.outcome.code, 0) + 1
        problems = []
        if asked != exp.outcome.forwarded:
            problems.append(f"a provider was asked: {asked}, explain {exp.outcome.reason}")
        elif exp.outcome.forwarded:
            pass  # the status is the provider's (the strict mock may refuse what OpenAI would)
        elif status != exp.status:
            problems.append(f"status {status}, explain {exp.status} ({exp.outcome.reason})")
        elif exp.outcome.stage == "translate":
            error = (body or {}).get("error") or {}
            seen = (error.get("type"), error.get("code"), error.get("message"))
            if seen != ("invalid_request_error", exp.outcome.code, exp.outcome.message):
                problems.append(f"error {seen}, explain {exp.outcome.reason}")
        if problems:
            disagreements.append(f"{i} {raw[:300]!r}: " + "; ".join(problems))
    print(f"\n{len(requests)} requests through Envoy, {len(disagreements)} disagreements; "
          f"decisions {dict(sorted(codes.items()))}")
    assert not disagreements, "\n".join(disagreements[:20])
    # every kind of answer was reached: forwarded, refused by the translation, blocked
    assert codes.get("forwarded", 0) >= 50, codes
    assert codes.get("unsupported_parameter", 0) >= 40, codes
    assert codes.get("invalid_value", 0) >= 10, codes
    assert codes.get("content_blocked", 0) >= 1, codes
