"""Fuzz (seeded, bounded): a random OpenAI request is translated to a request the strict mock
of each API accepts, or refused by the gateway with a clear 400; nothing else.

Two levels: the shipped translation in LuaJIT against the mocks' own validators (thousands of
requests, fast), and the whole gateway in a real Envoy against the mocks over HTTP (hundreds):
there every answer must be the provider's 200, or the gateway's own 400 (an OpenAI error
naming the problem) with nothing sent to the provider.
"""

from __future__ import annotations

import http.client
import json
import random
import re
from typing import Any

import pytest

from gatewayctl.local.mock import anthropic_api, bedrock_api, gemini_api
from gatewayctl.render.envoy import EnvoyOptions
from gatewayctl.render.envoy.translate import translate_data
from tests.providers import fuzz, irs
from tests.providers.conftest import Gateway
from tests.providers.lua_harness import TranslateFilter, target

NATIVE = ("anthropic", "bedrock", "gemini")
LUA_CASES = 1500
ENVOY_CASES = 120


def accepted_by_mock(api: str, path: str, body: dict[str, Any]) -> None:
    """Raise what the strict mock would answer with, if it would not answer 200."""
    if api == "anthropic":
        assert path == "/v1/messages"
        anthropic_api.read(body)
    elif api == "bedrock":
        assert bedrock_api.PATH.match(path), path
        bedrock_api.read(body)
    else:
        assert gemini_api.PATH.match(path.split("?")[0]), path
        gemini_api.read(body)


@pytest.fixture(scope="module")
def lua() -> TranslateFilter:
    return TranslateFilter(translate_data(irs.build_ir(), EnvoyOptions(secrets_dir="/none")))


@pytest.mark.parametrize("api", NATIVE)
def test_translated_requests_are_accepted_or_refused_with_a_400(
    lua: TranslateFilter, api: str
) -> None:
    rng = random.Random(f"translate-{api}")
    outcomes = {"accepted": 0, "refused": 0}
    for i in range(LUA_CASES):
        request = fuzz.request(rng, irs.model_name(api))
        out = lua.request(target(irs.model_name(api), api, irs.UPSTREAM[api]),
                          json.dumps(request).encode())
        if out.replied is not None:
            body = json.loads(out.replied["body"])
            assert out.replied["status"] == "400", (i, request, body)
            assert body["error"]["type"] == "invalid_request_error", (i, request, body)
            assert body["error"]["code"] and body["error"]["message"], (i, request, body)
            outcomes["refused"] += 1
            continue
        try:
            accepted_by_mock(api, out.headers[":path"], out.json())
        except (anthropic_api.AnthropicError, bedrock_api.BedrockError,
                gemini_api.GeminiError) as exc:
            pytest.fail(f"case {i}: the {api} mock refuses the translation: {exc}\n"
                        f"request: {json.dumps(request)}\nsent: {out.body}")
        outcomes["accepted"] += 1
    # the fuzz must exercise both ways out
    assert outcomes["accepted"] >= LUA_CASES * 0.3, outcomes
    assert outcomes["refused"] >= LUA_CASES * 0.1, outcomes


def _post(port: int, body: dict[str, Any]) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                     headers={"content-type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


@pytest.mark.envoy
@pytest.mark.parametrize("api", NATIVE)
def test_through_envoy_every_answer_is_the_providers_200_or_the_gateways_400(
    gateway: Gateway, api: str
) -> None:
    gateway.reset()
    rng = random.Random(f"envoy-{api}")
    mock = gateway.mocks[api]
    seen = 0
    statuses: dict[int, int] = {}
    for i in range(ENVOY_CASES):
        request = fuzz.request(rng, irs.route_name(api))
        status, text = _post(gateway.envoy.listener_port, request)
        statuses[status] = statuses.get(status, 0) + 1
        records = mock.requests()
        if status == 400:
            error = json.loads(text)["error"]
            assert error["type"] == "invalid_request_error" and error["code"], (i, request, text)
            assert len(records) == seen, (i, request, "the provider was asked", records[-1:])
            continue
        assert status == 200, (i, request, text, records[-1:])
        seen += 1
        assert len(records) == seen and records[-1]["status"] == 200, (i, request)
        if request.get("stream"):
            events = [e for e in re.split(r"\n\n", text) if e]
            assert events[-1] == "data: [DONE]", (i, request, text[-300:])
            assert all(e.startswith("data: ") for e in events)
        else:
            assert json.loads(text)["object"] == "chat.completion"
    assert statuses.get(200, 0) >= ENVOY_CASES * 0.3, statuses
    assert statuses.get(400, 0) >= ENVOY_CASES * 0.1, statuses
