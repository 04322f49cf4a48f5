"""The mock's native APIs over real HTTP: each refuses what the real API refuses, in that API's
own error shape, and answers in that API's own shape (streams included)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from gatewayctl.local.mock import eventstream
from gatewayctl.local.mock_provider import MockProviderConfig, start_mock_provider

ANTHROPIC = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
MESSAGE = {"model": "claude-x", "max_tokens": 100, "system": "Be nice.",
           "messages": [{"role": "user", "content": "Hey"}]}
GEMINI_PATH = "/v1beta/models/gemini-x:generateContent"
CONTENTS = {"contents": [{"role": "user", "parts": [{"text": "Hey"}]}]}


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with start_mock_provider(config=MockProviderConfig(name="native", require_key="k")) as mock:
        yield mock.port


def post(port: int, path: str, body: Any, headers: dict[str, str] | None = None
         ) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=json.dumps(body),
                     headers={"content-type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


# Anthropic -----------------------------------------------------------------------------------


def test_anthropic_message(port: int) -> None:
    status, headers, raw = post(port, "/v1/messages", MESSAGE, ANTHROPIC)

    body = json.loads(raw)
    assert status == 200
    assert body["type"] == "message" and body["role"] == "assistant"
    assert body["content"] == [{"type": "text", "text": "[mock:claude-x] Hey"}]
    assert body["stop_reason"] == "end_turn"
    assert body["usage"] == {"input_tokens": 3, "output_tokens": 5,
                             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


@pytest.mark.parametrize(("change", "status", "message"), [
    ({"max_tokens": None}, 400, "max_tokens: Field required"),
    ({"temperature": 1.5}, 400, "temperature: Input should be less than or equal to 1"),
    ({"n": 2}, 400, "n: Extra inputs are not permitted"),
    ({"messages": [{"role": "system", "content": "x"}]}, 400,
     "messages.0.role: Input should be 'user' or 'assistant'"),
    ({"messages": [{"role": "user", "content": "  "}]}, 400,
     "messages.0.content: text content blocks must contain non-whitespace text"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]}],
      "tools": [{"name": "f", "input_schema": {"type": "object"}}]}, 400,
     "messages.0: unexpected `tool_use_id` found in `tool_result` blocks; each tool_result must "
     "have a corresponding tool_use in the previous message"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": [
        {"type": "tool_use", "id": "t1", "name": "f", "input": {}}]}]}, 400,
     "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: t1"),
])
def test_anthropic_refuses_what_the_api_refuses(port: int, change: dict[str, Any], status: int,
                                                message: str) -> None:
    body = {k: v for k, v in {**MESSAGE, **change}.items() if v is not None}

    got, _, raw = post(port, "/v1/messages", body, ANTHROPIC)

    assert got == status
    assert json.loads(raw) == {"type": "error", "error": {"type": "invalid_request_error",
                                                          "message": message}}


def test_anthropic_needs_its_key_and_version(port: int) -> None:
    no_key, _, raw = post(port, "/v1/messages", MESSAGE, {"anthropic-version": "2023-06-01"})
    no_version, _, raw2 = post(port, "/v1/messages", MESSAGE, {"x-api-key": "k"})

    assert no_key == 401 and json.loads(raw)["error"]["type"] == "authentication_error"
    assert no_version == 400 and "anthropic-version" in json.loads(raw2)["error"]["message"]


def test_anthropic_stream_events(port: int) -> None:
    status, headers, raw = post(port, "/v1/messages", {**MESSAGE, "stream": True}, ANTHROPIC)

    names = [block.split("\n", 1)[0] for block in raw.decode().split("\n\n") if block]
    assert status == 200 and headers["content-type"] == "text/event-stream"
    assert names == ["event: message_start", "event: ping", "event: content_block_start",
                     "event: content_block_delta", "event: content_block_delta",
                     "event: content_block_stop", "event: message_delta", "event: message_stop"]


# Bedrock -------------------------------------------------------------------------------------


def test_bedrock_refuses_an_unsigned_request(port: int) -> None:
    status, headers, raw = post(port, "/model/m/converse",
                                {"messages": [{"role": "user", "content": [{"text": "x"}]}]})

    assert status == 403
    assert headers["x-amzn-errortype"].startswith("MissingAuthenticationTokenException:")
    assert json.loads(raw) == {"message": "Missing Authentication Token"}


def test_event_stream_framing_round_trip() -> None:
    frames = eventstream.event("messageStart", b'{"role":"assistant"}') + eventstream.exception(
        "throttlingException", b'{"message":"slow"}')

    decoded = list(eventstream.decode(frames))

    assert decoded == [
        ({":event-type": "messageStart", ":content-type": "application/json",
          ":message-type": "event"}, b'{"role":"assistant"}'),
        ({":exception-type": "throttlingException", ":content-type": "application/json",
          ":message-type": "exception"}, b'{"message":"slow"}'),
    ]
    broken = bytearray(frames)
    broken[20] ^= 1
    with pytest.raises(ValueError, match="CRC"):
        list(eventstream.decode(bytes(broken)))


# Gemini --------------------------------------------------------------------------------------


def test_gemini_generate_content(port: int) -> None:
    status, _, raw = post(port, GEMINI_PATH, {**CONTENTS, "generationConfig": {
        "candidateCount": 2}}, {"x-goog-api-key": "k"})

    body = json.loads(raw)
    assert status == 200
    parts = [c["content"]["parts"] for c in body["candidates"]]
    assert parts == [[{"text": "[mock:gemini-x] Hey"}]] * 2
    assert body["usageMetadata"]["promptTokenCount"] == 1
    assert body["modelVersion"] == "gemini-x"


@pytest.mark.parametrize(("body", "headers", "status", "reason"), [
    (CONTENTS, {}, 403, None),
    (CONTENTS, {"x-goog-api-key": "wrong"}, 400, "API_KEY_INVALID"),
    ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, {"x-goog-api-key": "k"},
     400, None),
    ({"contents": [{"role": "user", "parts": [{"text": ""}]}]}, {"x-goog-api-key": "k"}, 400,
     None),
    ({**CONTENTS, "temperature": 1}, {"x-goog-api-key": "k"}, 400, None),
])
def test_gemini_refuses_what_the_api_refuses(port: int, body: Any, headers: dict[str, str],
                                             status: int, reason: str | None) -> None:
    got, _, raw = post(port, GEMINI_PATH, body, headers)

    error = json.loads(raw)["error"]
    assert got == status and error["code"] == status
    assert error["status"] == {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED"}[status]
    reasons = [d["reason"] for d in error.get("details", [])]
    assert reasons == ([reason] if reason else [])


def test_gemini_streams_sse_with_alt_sse_and_a_json_array_without(port: int) -> None:
    path = "/v1beta/models/gemini-x:streamGenerateContent"
    sse_status, sse_headers, sse = post(port, path + "?alt=sse", CONTENTS, {"x-goog-api-key": "k"})
    array_status, _, array = post(port, path, CONTENTS, {"x-goog-api-key": "k"})

    chunks = [json.loads(e.removeprefix("data: ")) for e in sse.decode().split("\r\n\r\n") if e]
    assert sse_status == array_status == 200
    assert sse_headers["content-type"] == "text/event-stream"
    assert chunks == json.loads(array)
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
