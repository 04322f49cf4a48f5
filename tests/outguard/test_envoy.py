"""Output guardrails through a real Envoy: whole replies and streams (a phrase split across
chunks and inside an event), tool-call arguments, redaction, log mode, a translated provider
(Anthropic), the counter, and the automaton against Envoy's own RE2.

The mock echoes the last user message (`[mock:<model>] <text>`), so the user's text is what the
model "returns"; `x-mock-stream-pace-ms` makes it send each event in writes of its own (and
`x-mock-stream-write-bytes` cuts events in the middle)."""

from __future__ import annotations

import json
import random
import re
import uuid
from typing import Any

import pytest

from gatewayctl.manifests.output_dfa import compile_patterns
from tests.outguard.conftest import DIFFERENTIAL, PHRASE, Gateway
from tests.render.harness import Response

PACED = {"x-mock-stream-pace-ms": "5"}
CUT = {"x-mock-stream-pace-ms": "2", "x-mock-stream-write-bytes": "7"}
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {
    "type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}]


def _chat(gw: Gateway, model: str, text: str, headers: dict[str, str] | None = None,
          **extra: Any) -> tuple[Response, str]:
    rid = f"og-{uuid.uuid4().hex}"
    resp = gw.envoy.chat(model, text, headers={"x-request-id": rid, **(headers or {})}, **extra)
    return resp, rid


def _log(gw: Gateway, rid: str) -> dict[str, Any]:
    for _ in range(100):
        for line in gw.envoy.access_log_lines(expected=0, timeout_s=0):
            if line["request_id"] == rid:
                return line["gateway"] or {}
        import time
        time.sleep(0.05)
    raise AssertionError(f"no access log line for {rid}")


def _events(body: bytes) -> list[Any]:
    out = []
    for block in body.split(b"\n\n"):
        if block.startswith(b"data: "):
            payload = block[6:]
            out.append("[DONE]" if payload == b"[DONE]" else json.loads(payload))
    return out


def _streamed(body: bytes) -> tuple[str, str, list[str | None]]:
    """(content, tool-call arguments, finish reasons) of a chat stream."""
    content, arguments, finishes = "", "", []
    for ev in _events(body):
        if ev == "[DONE]":
            continue
        for choice in ev.get("choices", []):
            delta = choice.get("delta") or {}
            content += delta.get("content") or ""
            for call in delta.get("tool_calls") or []:
                arguments += (call.get("function") or {}).get("arguments") or ""
            finishes.append(choice.get("finish_reason"))
    return content, arguments, finishes


def test_whole_reply_with_the_phrase_is_blocked(gateway: Gateway) -> None:
    resp, rid = _chat(gateway, "og-block", f"this is {PHRASE}, keep it")
    assert resp.status == 403
    assert PHRASE not in resp.body.decode().lower()
    assert resp.json()["error"]["code"] == "output_blocked"
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert resp.headers["x-gateway-guardrail"] == "output-blocked"
    fields = _log(gateway, rid)
    assert fields["output_guardrail"] == "blocked"
    assert fields["prompt_tokens"] > 0  # the provider's tokens are still accounted


def test_reply_without_the_phrase_passes_unchanged(gateway: Gateway) -> None:
    resp, rid = _chat(gateway, "og-block", "internal use is fine, only not that")
    assert resp.status == 200
    assert resp.json()["choices"][0]["message"]["content"].endswith(
        "internal use is fine, only not that")
    assert "output_guardrail" not in _log(gateway, rid)


@pytest.mark.parametrize("pacing", [PACED, CUT], ids=["events-apart", "events-cut"])
def test_stream_with_the_phrase_split_across_chunks_ends_with_content_filter(
        gateway: Gateway, pacing: dict[str, str]) -> None:
    resp, rid = _chat(gateway, "og-block", f"begin {PHRASE} end", pacing, stream=True)
    assert resp.status == 200
    assert PHRASE not in resp.body.decode().lower()
    content, _, finishes = _streamed(resp.body)
    assert content.startswith("[mock:") and "begin" in content
    assert finishes[-1] == "content_filter"
    assert _events(resp.body)[-1] == "[DONE]"
    assert _log(gateway, rid)["output_guardrail"] == "blocked"
    # the mock did send the phrase, in several chunks
    assert gateway.mocks["openai"].requests()[-1]["body"]["stream"] is True


def test_stream_without_the_phrase_is_passed_whole(gateway: Gateway) -> None:
    resp, rid = _chat(gateway, "og-block", "internal use, but only partly", CUT, stream=True,
                      stream_options={"include_usage": True})
    content, _, finishes = _streamed(resp.body)
    assert content == "[mock:gpt-4o-2024-08-06] internal use, but only partly"
    assert finishes[-1] == "stop"
    fields = _log(gateway, rid)
    assert "output_guardrail" not in fields and fields["completion_tokens"] > 0


_ID = re.compile(rb'"id":"[^"]*"')


def test_stream_events_go_out_as_the_provider_wrote_them(gateway: Gateway) -> None:
    """Events whose text starts no match and needs no redaction are sent byte for byte (the
    route without output guardrails gives the provider's bytes); those that hold back a match
    in progress (`internal `, `use `: the phrase could follow) and the one with an address have
    only their text rewritten; the last word, held for redaction (a redaction could span it and
    what follows), comes with the finish."""
    text = "write to jo@ex.com about internal use today"
    plain, _ = _chat(gateway, "plain", text, PACED, stream=True)
    guarded, rid = _chat(gateway, "og-block", text, PACED, stream=True)
    want = [_ID.sub(b'"id":""', e) for e in plain.body.split(b"\n\n") if e]
    got = [_ID.sub(b'"id":""', e) for e in guarded.body.split(b"\n\n") if e]
    assert len(got) == len(want) and want[-1] == got[-1] == b"data: [DONE]"
    rewritten = {"jo@ex.com ": "[REDACTED_EMAIL] ", "internal ": "", "use ": ""}
    for i in range(len(want) - 3):  # the role, every word but the last
        content = json.loads(want[i][6:])["choices"][0]["delta"].get("content")
        expected = want[i]
        if content in rewritten:
            expected = want[i].replace(json.dumps(content).encode(),
                                       json.dumps(rewritten[content]).encode())
        assert got[i] == expected, i
    assert _streamed(guarded.body)[0] == _streamed(plain.body)[0].replace(
        "jo@ex.com", "[REDACTED_EMAIL]")
    assert "output_guardrail" not in _log(gateway, rid)


def test_tool_call_arguments_are_checked(gateway: Gateway) -> None:
    extra = {"tools": TOOLS, "tool_choice": "required"}
    resp, _ = _chat(gateway, "og-block", f"find {PHRASE}", **extra)
    assert resp.status == 403 and PHRASE not in resp.body.decode().lower()
    resp, _ = _chat(gateway, "og-block", f"find {PHRASE}", PACED, stream=True, **extra)
    _, arguments, finishes = _streamed(resp.body)
    assert PHRASE not in resp.body.decode().lower()
    assert finishes[-1] == "content_filter"
    # without the phrase the call arrives whole
    resp, _ = _chat(gateway, "og-block", "find the weather", PACED, stream=True, **extra)
    _, arguments, finishes = _streamed(resp.body)
    assert json.loads(arguments) == {"query": "find the weather"}
    assert finishes[-1] == "tool_calls"


def test_redaction_whole_and_streamed(gateway: Gateway) -> None:
    text = "write to jane.doe@example.com today"
    resp, _ = _chat(gateway, "og-block", text)
    content = resp.json()["choices"][0]["message"]["content"]
    assert content == "[mock:gpt-4o-2024-08-06] write to [REDACTED_EMAIL] today"
    for pacing in (PACED, CUT):
        resp, _ = _chat(gateway, "og-block", text, pacing, stream=True)
        assert b"jane.doe" not in resp.body and b"example.com" not in resp.body
        streamed, _, finishes = _streamed(resp.body)
        assert streamed == content and finishes[-1] == "stop"
    extra = {"tools": TOOLS, "tool_choice": "required"}
    resp, _ = _chat(gateway, "og-block", text, PACED, stream=True, **extra)
    assert json.loads(_streamed(resp.body)[1]) == {"query": "write to [REDACTED_EMAIL] today"}


def test_log_mode_answers_unchanged_and_records_the_hit(gateway: Gateway) -> None:
    resp, rid = _chat(gateway, "og-log", f"say {PHRASE}")
    assert resp.status == 200 and PHRASE in resp.json()["choices"][0]["message"]["content"]
    assert _log(gateway, rid)["output_guardrail"] == "logged"
    resp, rid = _chat(gateway, "og-log", f"say {PHRASE}", CUT, stream=True)
    content, _, finishes = _streamed(resp.body)
    assert content == f"[mock:gpt-4o-2024-08-06] say {PHRASE}" and finishes[-1] == "stop"
    assert _log(gateway, rid)["output_guardrail"] == "logged"
    metrics = gateway.envoy.admin("/stats/prometheus")
    logged = re.search(r'envoy_gatewayctl_output_guardrail_hits\{route="og-log",'
                       r'verdict="logged"\} (\d+)', metrics)
    assert logged is not None and int(logged.group(1)) >= 2, metrics[-2000:]


def test_translated_provider_is_checked_after_translation(gateway: Gateway) -> None:
    resp, rid = _chat(gateway, "og-anthropic", f"this is {PHRASE}")
    assert resp.status == 403 and PHRASE not in resp.body.decode().lower()
    assert _log(gateway, rid)["output_guardrail"] == "blocked"
    resp, rid = _chat(gateway, "og-anthropic", f"begin {PHRASE} end", PACED, stream=True)
    assert PHRASE not in resp.body.decode().lower()
    assert _streamed(resp.body)[2][-1] == "content_filter"
    resp, _ = _chat(gateway, "og-anthropic", "mail jane@example.com", CUT, stream=True)
    content, _, finishes = _streamed(resp.body)
    assert content == "[mock:claude-sonnet-4-5] mail [REDACTED_EMAIL]" and finishes[-1] == "stop"


def test_routes_without_output_guardrails_are_untouched(gateway: Gateway) -> None:
    resp, rid = _chat(gateway, "plain", f"{PHRASE} jane@example.com", CUT, stream=True)
    content, _, _ = _streamed(resp.body)
    assert content == f"[mock:gpt-4o-2024-08-06] {PHRASE} jane@example.com"
    assert "output_guardrail" not in _log(gateway, rid)


ALPHABET = ["a", "b", "c", "x", "y", "z", "w", "q", "k", "K", "\u212a", "s", "\u017f", "é", "É",
            "\n", ".", " ", "1", "9", "A", "B", "C", "internal use only", "INTERNAL", "ab", "\t",
            "cat", "at", "_", "secret", "\u3a40", "ã"]


MATCHING = (["internal use only"], ["ae12x", "a.9x"], ["xa", "ay"], ["abcc", "ABccc"],
            ["a z", "_z"], ["aéb", "a😀b"], ["a\nb"], ["ééx"], ["kas", "KAS"],
            ["xyzyzw", "q123"], ["aéb", "axyb"], ["éx", "©x"],
            ["cat", "a cat."], ["secret", "x\nsecret\ny"], ["bat", "ax"], ["é", "\u3a40"],
            ["a9", "ab"], ["\na", "bb"])


@pytest.mark.parametrize("index", range(len(DIFFERENTIAL)))
def test_automaton_agrees_with_envoys_re2(gateway: Gateway, index: int) -> None:
    """Seeded random texts: the automaton's verdict (the table outguard.lua walks, walked by
    its Python port; test_lua.py walks it in LuaJIT) against Envoy's RE2 (the same pattern as
    a request deny pattern: 403 when it matches the text). Envoy's RE2 reads the text one
    character per byte: `a..b` matches "aéb" and `a.b` does not."""
    pattern = DIFFERENTIAL[index]
    dfa = compile_patterns([pattern])
    rnd = random.Random(f"outguard-{index}")
    # pieces of texts that match, and whole ones, so that both verdicts come up often
    pieces = ALPHABET * 3 + [m[i:i + 2] for m in MATCHING[index] for i in range(0, len(m), 2)]

    def noise() -> str:
        return "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 6)))

    agreed = {True: 0, False: 0}
    for n in range(150):
        text = noise() + (rnd.choice(MATCHING[index]) if n % 3 == 0 else "") + noise()
        # /v1/completions: the guardrails' text is the prompt alone (chat adds member names)
        resp = gateway.envoy.request("POST", "/v1/completions",
                                     {"model": f"re2-{index}", "prompt": text})
        assert resp.status in (200, 403), resp.body
        re2_match = resp.status == 403
        assert dfa.search(text.encode()) == re2_match, (pattern, text)
        agreed[re2_match] += 1
    assert agreed[True] > 0 and agreed[False] > 0, agreed  # both verdicts were exercised


def test_stream_keeps_streaming(gateway: Gateway) -> None:
    """The checked stream reaches the client event by event, not held to its end: with the
    mock's events 30 ms apart, the client reads the body in several pieces."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", gateway.envoy.listener_port, timeout=30)
    body = {"model": "og-block", "stream": True,
            "messages": [{"role": "user", "content": "one two three four five six"}]}
    conn.request("POST", "/v1/chat/completions", json.dumps(body),
                  {"content-type": "application/json", "x-mock-stream-pace-ms": "30"})
    resp = conn.getresponse()
    pieces = []
    while True:
        piece = resp.read1(65536)
        if not piece:
            break
        pieces.append(piece)
    conn.close()
    assert _streamed(b"".join(pieces))[0].endswith("one two three four five six")
    assert len([p for p in pieces if b'"content"' in p]) >= 3, pieces


def test_answers_replayed_by_the_response_cache_are_checked_too(gateway: Gateway) -> None:
    """The cache is per Envoy worker: one keep-alive connection stays on one worker."""
    def ask(text: str, headers: dict[str, str] | None = None, **extra: Any) -> Response:
        body = {"model": "og-cache", "messages": [{"role": "user", "content": text}], **extra}
        return gateway.envoy.request("POST", "/v1/chat/completions", body, headers,
                                     keep_alive=True)

    for _ in range(2):
        resp = ask(f"cached {PHRASE} jane@example.com")
        assert resp.status == 403 and PHRASE not in resp.body.decode().lower()
        resp = ask("cached mail jane@example.com")
        assert resp.status == 200 and b"jane@" not in resp.body
    assert resp.headers.get("x-gateway-cache") == "hit"
    for _ in range(2):
        resp = ask(f"streamed {PHRASE}", PACED, stream=True)
        assert PHRASE not in resp.body.decode().lower()
        assert _streamed(resp.body)[2][-1] == "content_filter"
    assert resp.headers.get("x-gateway-cache") == "hit"
