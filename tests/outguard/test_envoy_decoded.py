"""Output patterns on the text a client decodes, through a real Envoy: JSON escapes in content
(decoded once, as the client's JSON parser reads the reply) and in tool-call arguments
(decoded twice: the reply, then the arguments' own JSON, as the tool reads them), whole and
streamed, an escape and a surrogate pair cut between events included; and the empty
assertions `\\b` and `(?m)^` on whole and streamed answers.

The mock (`x-mock-json-escapes: letters`) writes every letter of its texts as a `\\u00XX`
escape, doubly escaped inside the arguments, whose stream it sends in pieces of 5 characters;
`x-mock-newline: ~~` turns `~~` of the echoed text into a line break."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.outguard.conftest import PHRASE, Gateway
from tests.outguard.test_envoy import CUT, PACED, TOOLS, _chat, _events, _log, _streamed

ESCAPED = {"x-mock-json-escapes": "letters"}
TOOL = {"tools": TOOLS, "tool_choice": "required"}
LINES = {"x-mock-newline": "~~"}
STREAMS = [PACED, CUT]


def _headers(*parts: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in parts:
        out.update(p)
    return out


def test_the_mock_really_escapes(gateway: Gateway) -> None:
    """What reaches the gateway: letters as escapes, doubly escaped in arguments, a pair."""
    import http.client

    mock = gateway.mocks["openai"]
    conn = http.client.HTTPConnection("127.0.0.1", mock.port, timeout=10)
    body = {"model": "m", "messages": [{"role": "user", "content": "px\U0001f600y"}], **TOOL}
    conn.request("POST", "/v1/chat/completions", json.dumps(body),
                 {"content-type": "application/json",
                  "authorization": f"Bearer {mock.config.require_key}", **ESCAPED})
    raw = conn.getresponse().read()
    conn.close()
    assert b"px" not in raw and b"\xf0" not in raw, raw
    arguments = json.loads(raw)["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert "\\u0070\\u0078\\ud83d\\ude00\\u0079" in arguments, arguments
    assert json.loads(arguments) == {"query": "px\U0001f600y"}


@pytest.mark.parametrize("stream", [None, *STREAMS], ids=["whole", "events-apart", "events-cut"])
def test_escaped_phrase_in_content_is_blocked(gateway: Gateway,
                                              stream: dict[str, str] | None) -> None:
    resp, rid = _chat(gateway, "og-block", f"this is {PHRASE}, keep it",
                      _headers(ESCAPED, stream or {}), stream=stream is not None)
    _assert_blocked(resp, stream)
    assert _log(gateway, rid)["output_guardrail"] == "blocked"


@pytest.mark.parametrize("stream", [None, *STREAMS], ids=["whole", "events-apart", "events-cut"])
def test_doubly_escaped_phrase_in_tool_arguments_is_blocked(
        gateway: Gateway, stream: dict[str, str] | None) -> None:
    resp, rid = _chat(gateway, "og-block", f"find {PHRASE}", _headers(ESCAPED, stream or {}),
                      stream=stream is not None, **TOOL)
    _assert_blocked(resp, stream)
    assert _log(gateway, rid)["output_guardrail"] == "blocked"


def _assert_blocked(resp: Any, stream: dict[str, str] | None) -> None:
    text = resp.body.decode()
    if stream is None:
        assert resp.status == 403 and resp.json()["error"]["code"] == "output_blocked"
    else:
        assert _streamed(resp.body)[2][-1] == "content_filter"
        assert _events(resp.body)[-1] == "[DONE]"
    # neither as text nor as escapes does the phrase reach the client
    decoded = json.loads(json.dumps(text))
    assert PHRASE not in decoded.lower() and "\\u0075\\u0073\\u0065" not in text


@pytest.mark.parametrize("stream", [None, *STREAMS], ids=["whole", "events-apart", "events-cut"])
def test_escaped_answer_without_the_phrase_arrives_as_the_client_decodes_it(
        gateway: Gateway, stream: dict[str, str] | None) -> None:
    resp, _ = _chat(gateway, "og-block", "find internal use, only partly",
                    _headers(ESCAPED, stream or {}), stream=stream is not None, **TOOL)
    if stream is None:
        call = resp.json()["choices"][0]["message"]["tool_calls"][0]
        arguments = call["function"]["arguments"]
    else:
        _, arguments, finishes = _streamed(resp.body)
        assert finishes[-1] == "tool_calls"
    assert json.loads(arguments) == {"query": "find internal use, only partly"}


@pytest.mark.parametrize("stream", [None, *STREAMS], ids=["whole", "events-apart", "events-cut"])
def test_escaped_email_is_redacted_and_the_output_is_valid_json(
        gateway: Gateway, stream: dict[str, str] | None) -> None:
    text = "write to jane.doe@example.com today"
    for extra in ({}, TOOL):
        resp, _ = _chat(gateway, "og-block", text, _headers(ESCAPED, stream or {}),
                        stream=stream is not None, **extra)
        assert resp.status == 200
        if stream is None:
            message = resp.json()["choices"][0]["message"]
            content = message["content"]
            arguments = message["tool_calls"][0]["function"]["arguments"] if extra else None
        else:
            content, arguments, _ = _streamed(resp.body)
        if extra:
            assert json.loads(arguments or "") == {"query": "write to [REDACTED_EMAIL] today"}
        else:
            assert content == "[mock:gpt-4o-2024-08-06] write to [REDACTED_EMAIL] today"
        assert "jane" not in json.loads(json.dumps(resp.body.decode())).lower()


def test_log_mode_records_escaped_phrases_and_passes_the_answer(gateway: Gateway) -> None:
    resp, rid = _chat(gateway, "og-log", f"find {PHRASE}", _headers(ESCAPED, CUT), stream=True,
                      **TOOL)
    _, arguments, finishes = _streamed(resp.body)
    assert json.loads(arguments) == {"query": f"find {PHRASE}"} and finishes[-1] == "tool_calls"
    assert _log(gateway, rid)["output_guardrail"] == "logged"
    resp, rid = _chat(gateway, "og-log", f"say {PHRASE}", ESCAPED)
    assert resp.json()["choices"][0]["message"]["content"].endswith(f"say {PHRASE}")
    assert _log(gateway, rid)["output_guardrail"] == "logged"


@pytest.mark.parametrize("stream", [None, *STREAMS], ids=["whole", "events-apart", "events-cut"])
@pytest.mark.parametrize(("text", "blocked"), [
    ("the secret is out", True),
    ("secret", True),
    ("secrets and secretaries", False),
    ("a_secret_", False),
    ("ok~~rm -rf /", True),
    ("ok rm -rf /", False),
    ("x\U0001f600y", True),
    ("x\U0001f600 y", False),
])
def test_word_boundaries_and_line_starts(gateway: Gateway, stream: dict[str, str] | None,
                                         text: str, blocked: bool) -> None:
    """`\\bsecret\\b`, `(?m)^rm -rf` and `x😀y` in content and in tool arguments (where the
    line break is the escape `\\n` and the pair `\\ud83d\\ude00`, decoded), escaped or not."""
    for extra, headers in (({}, LINES), (TOOL, LINES), (TOOL, _headers(LINES, ESCAPED))):
        resp, rid = _chat(gateway, "og-bounds", text, _headers(headers, stream or {}),
                          stream=stream is not None, **extra)
        if stream is None:
            assert (resp.status == 403) == blocked, (text, extra, headers, resp.body)
        else:
            finish = _streamed(resp.body)[2][-1]
            assert (finish == "content_filter") == blocked, (text, extra, headers, resp.body)
        if blocked:
            assert _log(gateway, rid)["output_guardrail"] == "blocked"


def test_word_boundary_log_mode(gateway: Gateway) -> None:
    resp, rid = _chat(gateway, "og-bounds-log", "the secret", CUT, stream=True)
    assert _streamed(resp.body)[0].endswith("the secret")
    assert _log(gateway, rid)["output_guardrail"] == "logged"
    resp, rid = _chat(gateway, "og-bounds-log", "secretive", CUT, stream=True)
    assert "output_guardrail" not in _log(gateway, rid)
