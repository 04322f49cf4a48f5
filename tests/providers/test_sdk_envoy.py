"""The official OpenAI Python SDK against a real Envoy, one suite for every provider type.

Each test runs once per provider type (openai, anthropic, bedrock, gemini): the client speaks
OpenAI's API to the gateway, the gateway translates to each strict native mock (which refuses
what the real API refuses, and checks Bedrock's SigV4 signature with botocore), and the client
must see the same thing whatever provider answered: the mocks answer one conversation alike
(gatewayctl/local/mock/conversation.py), so the only difference is the model's name.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from gatewayctl.local.mock_provider import FaultConfig, FaultRule
from tests.providers import irs
from tests.providers.conftest import Gateway

pytestmark = pytest.mark.envoy

KINDS = irs.PROVIDER_TYPES
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
# The native request each provider type's mock must have received.
NATIVE_PATHS = {
    "openai": "/v1/chat/completions",
    "anthropic": "/v1/messages",
    "bedrock": "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse",
    "gemini": "/v1beta/models/gemini-2.5-flash:generateContent",
}


@pytest.fixture
def gw(gateway: Gateway) -> Iterator[Gateway]:
    gateway.reset()
    yield gateway


def client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url, api_key="unused", max_retries=0, timeout=20)


def mock_text(kind: str, text: str) -> str:
    return f"[mock:{irs.UPSTREAM[kind]}] {text}"


def tokens(text: str) -> int:
    """The mocks' count: max(1, ceil(characters / 4))."""
    return max(1, math.ceil(len(text) / 4))


def logged(gw: Gateway, *request_ids: str) -> dict[str, dict[str, Any]]:
    """The access log lines of these requests, once all are written (bounded wait)."""
    deadline = time.monotonic() + 10
    while True:
        lines = {line.get("request_id"): line for line in gw.envoy.access_log_lines(0)}
        if all(r in lines for r in request_ids) or time.monotonic() > deadline:
            return {r: lines[r] for r in request_ids if r in lines}
        time.sleep(0.05)


def last_request(gw: Gateway, kind: str) -> dict[str, Any]:
    return gw.mocks[kind].requests()[-1]


@pytest.mark.parametrize("kind", KINDS)
def test_chat(gw: Gateway, kind: str) -> None:
    raw = client(gw).chat.completions.with_raw_response.create(
        model=irs.route_name(kind),
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "Hello   there"}],
    )
    reply = raw.parse()

    assert reply.object == "chat.completion"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == mock_text(kind, "Hello there")
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == 6  # "Be brief." + "Hello   there": 22 characters
    assert reply.usage.completion_tokens == tokens(mock_text(kind, "Hello there"))
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert raw.headers["x-gateway-route"] == irs.route_name(kind)
    assert raw.headers["x-gateway-model"] == irs.model_name(kind)
    seen = last_request(gw, kind)
    assert seen["path"] == NATIVE_PATHS[kind]
    assert seen["status"] == 200


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("include_usage", [True, False])
def test_stream(gw: Gateway, kind: str, include_usage: bool) -> None:
    extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(client(gw).chat.completions.create(
        model=irs.route_name(kind), stream=True,
        messages=[{"role": "user", "content": "Stream these four words"}], **extra,
    ))

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and
                c.choices[0].finish_reason]
    usage_chunks = [c for c in chunks if not c.choices]
    assert text == mock_text(kind, "Stream these four words")
    assert finishes == ["stop"]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    if include_usage:
        assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1]
        usage = usage_chunks[0].usage
        assert usage is not None
        assert (usage.prompt_tokens, usage.completion_tokens) == (6, tokens(text))
    else:
        assert usage_chunks == []  # exactly what OpenAI sends without include_usage


@pytest.mark.parametrize("kind", KINDS)
def test_max_tokens_cuts_the_reply(gw: Gateway, kind: str) -> None:
    reply = client(gw).chat.completions.create(
        model=irs.route_name(kind), max_tokens=3,
        messages=[{"role": "user", "content": "a long enough reply to be cut"}],
    )

    assert reply.choices[0].finish_reason == "length"
    assert reply.choices[0].message.content == mock_text(kind, "a long")[:12]


@pytest.mark.parametrize("kind", KINDS)
def test_anthropic_gets_max_tokens_from_the_model(gw: Gateway, kind: str) -> None:
    client(gw).chat.completions.create(
        model=irs.route_name(kind), messages=[{"role": "user", "content": "hi"}])

    body = last_request(gw, kind)["body"]
    sent = {"openai": body.get("max_tokens"), "anthropic": body.get("max_tokens"),
            "bedrock": body.get("inferenceConfig", {}).get("maxTokens"),
            "gemini": body.get("generationConfig", {}).get("maxOutputTokens")}[kind]
    assert sent == irs.MAX_OUTPUT.get(kind)  # anthropic: the Model's maxOutputTokens


@pytest.mark.parametrize("kind", KINDS)
def test_multipart_content_and_images(gw: Gateway, kind: str) -> None:
    png = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNg"
           "YGD4DwABBAEAfbLI3wAAAABJRU5ErkJggg==")
    reply = client(gw).chat.completions.create(
        model=irs.route_name(kind),
        messages=[
            {"role": "developer", "content": [{"type": "text", "text": "Rule one."},
                                              {"type": "text", "text": "Rule two."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is "},
                {"type": "image_url", "image_url": {"url": png}},
                {"type": "text", "text": "in this picture?"}]},
        ],
    )

    assert reply.choices[0].message.content == mock_text(kind, "What is in this picture?")


@pytest.mark.parametrize("kind", KINDS)
def test_tool_call_round_trip(gw: Gateway, kind: str) -> None:
    c = client(gw)
    messages: list[Any] = [{"role": "user", "content": "Use get_weather for Paris"}]
    first = c.chat.completions.create(model=irs.route_name(kind), messages=messages,
                                      tools=[WEATHER_TOOL])

    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Use get_weather for Paris"}
    assert call.id

    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 degrees"}]
    second = c.chat.completions.create(model=irs.route_name(kind), messages=messages,
                                       tools=[WEATHER_TOOL])

    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == mock_text(
        kind, "get_weather returned Sunny, 21 degrees")


@pytest.mark.parametrize("kind", KINDS)
def test_tool_call_streamed(gw: Gateway, kind: str) -> None:
    chunks = list(client(gw).chat.completions.create(
        model=irs.route_name(kind), stream=True, tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        messages=[{"role": "user", "content": "Lyon"}],
    ))

    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert deltas[0].id and deltas[0].function and deltas[0].function.name == "get_weather"
    assert {d.index for d in deltas} == {0}
    arguments = "".join(d.function.arguments or "" for d in deltas if d.function)
    assert json.loads(arguments) == {"city": "Lyon"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices
            and c.choices[0].finish_reason] == ["tool_calls"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_request_no_provider_could_take_is_the_gateways_400(gw: Gateway, kind: str) -> None:
    # logprobs: OpenAI has them, no native API does
    c = client(gw)
    if kind == "openai":
        assert c.chat.completions.create(model=irs.route_name(kind), logprobs=True,
                                         messages=[{"role": "user", "content": "hi"}])
        return
    with pytest.raises(openai.BadRequestError) as raised:
        c.chat.completions.create(model=irs.route_name(kind), logprobs=True,
                                  messages=[{"role": "user", "content": "hi"}])

    assert raised.value.status_code == 400
    assert raised.value.code == "unsupported_parameter"
    assert "logprobs" in raised.value.message
    assert gw.mocks[kind].requests() == []  # the gateway answered; the provider saw nothing


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("status", "error"), [
    (429, openai.RateLimitError),
    (500, openai.InternalServerError),
    (400, openai.BadRequestError),
])
def test_provider_errors_reach_the_client_as_openai_errors(
    gw: Gateway, kind: str, status: int, error: type[openai.APIStatusError]
) -> None:
    gw.mocks[kind].set_faults(FaultConfig(default=FaultRule(error_rate=1.0, error_status=status)))

    with pytest.raises(error) as raised:
        client(gw).chat.completions.create(model=irs.route_name(kind),
                                           messages=[{"role": "user", "content": "hi"}])

    assert raised.value.status_code == status
    body = raised.value.body
    assert isinstance(body, dict) and "injected fault" in body["message"]


@pytest.mark.parametrize("kind", KINDS)
def test_provider_errors_in_a_stream_raise_in_the_client(gw: Gateway, kind: str) -> None:
    gw.mocks[kind].set_faults(FaultConfig(default=FaultRule(error_rate=1.0, error_status=429)))

    with pytest.raises(openai.RateLimitError):
        list(client(gw).chat.completions.create(
            model=irs.route_name(kind), stream=True,
            messages=[{"role": "user", "content": "hi"}]))


@pytest.mark.parametrize("kind", KINDS)
def test_a_refused_provider_credential_is_the_gateways_502(gw: Gateway, kind: str) -> None:
    """A wrong key (Gemini answers 400 API_KEY_INVALID; Bedrock a 403 for a bad signature)
    is the gateway's problem, never the client's: 502, with nothing of the provider's reply."""
    with pytest.raises(openai.InternalServerError) as raised:
        client(gw).chat.completions.create(model=f"badkey-{kind}",
                                           messages=[{"role": "user", "content": "hi"}])

    assert raised.value.status_code == 502
    assert raised.value.code == "upstream_authentication_failed"
    refused = last_request(gw, kind)["status"]
    assert refused == {"openai": 401, "anthropic": 401, "bedrock": 403, "gemini": 400}[kind]


def _shape(value: Any) -> Any:
    """The structure of a reply: keys and value types, not the values."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__


@pytest.mark.parametrize(("route", "primary", "fallback"), [
    ("bedrock-to-openai", "bedrock", "openai"),
    ("openai-to-anthropic", "openai", "anthropic"),
    ("anthropic-to-gemini", "anthropic", "gemini"),
])
def test_fallback_across_provider_types_keeps_the_clients_view(
    gw: Gateway, route: str, primary: str, fallback: str
) -> None:
    messages = [{"role": "user", "content": "Same view please"}]
    direct = client(gw).chat.completions.with_raw_response.create(
        model=irs.route_name(fallback), messages=messages)
    gw.mocks[primary].set_faults(FaultConfig(default=FaultRule(error_rate=1.0, error_status=503)))

    raw = client(gw).chat.completions.with_raw_response.create(model=route, messages=messages)
    streamed = list(client(gw).chat.completions.create(model=route, messages=messages,
                                                       stream=True))

    via = raw.parse()
    assert raw.headers["x-gateway-model"] == irs.model_name(fallback)
    assert via.choices[0].message.content == mock_text(fallback, "Same view please")
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == \
        mock_text(fallback, "Same view please")
    # the same reply shape as asking the fallback's provider directly, and as an OpenAI reply
    assert _shape(json.loads(raw.text)) == _shape(json.loads(direct.text))
    assert [r["status"] for r in gw.mocks[primary].requests()] == [503, 503]


def test_usage_and_cost_in_the_access_log_for_every_provider_type(gw: Gateway) -> None:
    c = client(gw)
    for kind in KINDS:
        c.chat.completions.create(model=irs.route_name(kind),
                                  messages=[{"role": "user", "content": "count me"}],
                                  extra_headers={"x-request-id": f"usage-{kind}"})
        # a stream whose client did not ask for usage: a translated one is counted all the same
        # (its provider always reports usage); an OpenAI provider sends none to count
        list(c.chat.completions.create(model=irs.route_name(kind), stream=True,
                                       messages=[{"role": "user", "content": "count me"}],
                                       extra_headers={"x-request-id": f"usage-s-{kind}"}))
    lines = logged(gw, *(f"usage{s}-{k}" for k in KINDS for s in ("", "-s")))
    assert "prompt_tokens" not in lines["usage-s-openai"]["gateway"]
    for kind in KINDS:
        for rid in (f"usage-{kind}", f"usage-s-{kind}"):
            if rid == "usage-s-openai":
                continue
            line = lines[rid]["gateway"]
            completion = tokens(mock_text(kind, "count me"))
            assert (line["prompt_tokens"], line["completion_tokens"]) == (2, completion), rid
            assert line["cost_usd"] == pytest.approx((2 * 3.0 + completion * 15.0) / 1e6)


@pytest.mark.parametrize("kind", KINDS)
def test_token_limits_are_charged_with_the_providers_usage(gw: Gateway, kind: str) -> None:
    """A token limit of 100 per hour; each request here uses some 60 tokens (its provider's
    usage in OpenAI's terms). The 1st is charged 1; the 2nd 1 + the 1st's usage (admitted);
    the 3rd 1 + the 2nd's, more than is left: 429. The 2nd is a stream whose client did not
    ask for usage: a translated stream is charged all the same; an OpenAI provider's only when
    the client asks (the access log counts it alike), so the OpenAI case asks.

    One keep-alive connection (not the SDK's pool): each Envoy worker keeps its own debt."""
    body: dict[str, Any] = {"model": f"tokens-{kind}",
                            "messages": [{"role": "user", "content": "t" * 160}]}
    first = gw.envoy.request("POST", "/v1/chat/completions", body, keep_alive=True)
    assert first.status == 200
    usage = first.json()["usage"]
    text = first.json()["choices"][0]["message"]["content"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (40, tokens(text))
    assert irs.TOKEN_LIMIT / 2 < usage["total_tokens"] < irs.TOKEN_LIMIT  # the arithmetic holds
    stream = {**body, "stream": True}
    if kind == "openai":
        stream["stream_options"] = {"include_usage": True}
    second = gw.envoy.request("POST", "/v1/chat/completions", stream, keep_alive=True)
    assert second.status == 200
    assert second.body.decode().rstrip().endswith("data: [DONE]")
    assert ('"usage"' in second.body.decode()) == (kind == "openai")

    third = gw.envoy.request("POST", "/v1/chat/completions", body, keep_alive=True)

    assert third.status == 429
    assert third.headers["x-gateway-limit"] == "tokens"
    assert len(gw.mocks[kind].requests()) == 2
    # another route's budget is its own
    assert gw.envoy.request("POST", "/v1/chat/completions",
                            {**body, "model": irs.route_name(kind)}).status == 200


def test_cached_prompt_tokens_are_counted_in_openai_terms(gw: Gateway) -> None:
    """Gemini (like OpenAI) serves a long prompt partly from its cache: OpenAI's usage counts
    those tokens in prompt_tokens and again in prompt_tokens_details.cached_tokens."""
    long_prompt = "word " * 1200  # 6000 characters: 1500 tokens
    reply = client(gw).chat.completions.create(
        model=irs.route_name("gemini"), extra_headers={"x-request-id": "cached-gemini"},
        messages=[{"role": "user", "content": long_prompt}])

    assert reply.usage is not None and reply.usage.prompt_tokens == 1500
    assert reply.usage.prompt_tokens_details is not None
    assert reply.usage.prompt_tokens_details.cached_tokens == 1408
    line = logged(gw, "cached-gemini")["cached-gemini"]["gateway"]
    assert (line["prompt_tokens"], line["cached_tokens"]) == (1500, 1408)


@pytest.mark.parametrize("kind", ["anthropic", "bedrock", "gemini"])
def test_native_routes_serve_chat_completions_only(gw: Gateway, kind: str) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client(gw).embeddings.create(model=irs.route_name(kind), input="x")

    assert raised.value.code == "unsupported_endpoint"
