"""outguard.lua without Envoy (LuaJIT through lupa, the module bound as the body filter binds
it): the automaton's walk against RE2, streamed redaction against whole redaction, and what a
stream's client receives when a phrase is split across chunks. tests/outguard/test_envoy.py
runs the same code in a real Envoy."""

from __future__ import annotations

import json
import random
import re
from typing import Any

import pytest

from tests.outguard.conftest import DIFFERENTIAL
from tests.outguard.lua_outguard import Outguard, guard

pytest.importorskip("lupa.luajit21", reason="lupa with LuaJIT 2.1 (Envoy's Lua)")
re2 = pytest.importorskip("re2")

# Envoy's RE2 is checked against the same patterns in test_envoy.py.
PATTERNS = [*DIFFERENTIAL, "\\Aab|ba$"]
ALPHABET = ["a", "b", "c", "x", "y", "z", "w", "q", "k", "K", "\u212a", "s", "\u017f", "é",
            "É", "\n", ".", " ", "1", "9", "A", "B", "C", "internal use only", "INTERNAL",
            "ab", "\u2028", "\U0001f600", "cat", "at", "_", "secret", "\u3a40"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_walk_equals_re2(pattern: str) -> None:
    """The Lua walk over the rendered table finds a match exactly when RE2 does, in the mode
    Envoy's RE2 matches the guardrails' text (one character per byte, measured in
    test_envoy.py; Python's binding of RE2 here)."""
    og = Outguard(guard([pattern]))
    options = re2.Options()
    options.encoding = re2.Options.Encoding.LATIN1
    rx = re2.compile(pattern.encode(), options)
    rnd = random.Random(pattern)
    for _ in range(1500):
        text = "".join(rnd.choice(ALPHABET) for _ in range(rnd.randint(0, 14)))
        raw = text.encode()
        if rnd.random() < 0.1:
            raw += bytes([rnd.choice([0x80, 0xFF, 0xC3])])  # not UTF-8: matches no character
        assert og.walk(raw) == (rx.search(raw) is not None), (pattern, raw)


@pytest.mark.parametrize("pattern", [r"\bcat\b", r"(?m)^secret$", r"x\z|\Aab", r"\Bat\b|q$"])
def test_streamed_verdict_equals_whole_at_every_cut(pattern: str) -> None:
    """feed() over two pieces of a text, cut at every position, finds a match exactly when the
    walk of the whole text does (and RE2 does): the byte before a cut is in the state, and a
    look-ahead waits for the first byte after it, or for the text's end."""
    og = Outguard(guard([pattern], action="log"))
    options = re2.Options()
    options.encoding = re2.Options.Encoding.LATIN1
    rx = re2.compile(pattern.encode(), options)
    rnd = random.Random(pattern)
    for _ in range(40):
        raw = "".join(rnd.choice(ALPHABET) for _ in range(rnd.randint(0, 8))).encode()
        whole = rx.search(raw) is not None
        for k in range(len(raw) + 1):
            t = og.module.new_text(og.g, False)
            first = og.module.feed(og.g, t, raw[:k], False)[1]
            last = og.module.feed(og.g, t, raw[k:], True)[1]
            assert bool(first or last) == whole, (pattern, raw, k)


def _redact_whole(og: Outguard, text: bytes) -> bytes:
    return og.redact_stream([text])


@pytest.mark.parametrize("seed", range(4))
def test_streamed_redaction_equals_whole(seed: int) -> None:
    """However a text is cut into chunks, what the client receives is the text redacted whole."""
    og = Outguard(guard(redact=["email", "ssn", "credit-card", "phone"]))
    rnd = random.Random(seed)
    parts = ["a", "b", "@", ".", "-", " ", "  ", "(", ")", "+", "1", "2", "5", "9", "x.y",
             "jo@ex.com", "555 123 4567", "4111 1111 1111 1111", "123-45-6789", "\n", "é"]
    for _ in range(300):
        text = "".join(rnd.choice(parts) for _ in range(rnd.randint(0, 25))).encode()
        cuts = sorted(rnd.sample(range(len(text) + 1), min(len(text) + 1, rnd.randint(0, 5))))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert og.redact_stream(pieces) == _redact_whole(og, text), (text, pieces)


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return _event({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def _content(out: list[bytes]) -> tuple[str, list[str | None]]:
    text, finishes = "", []
    for raw in b"".join(out).split(b"\n\n"):
        if not raw.startswith(b"data: {"):
            continue
        for choice in json.loads(raw[6:])["choices"]:
            text += choice.get("delta", {}).get("content") or ""
            finishes.append(choice.get("finish_reason"))
    return text, finishes


ANSWER = "Sure. This is internal use only, do not share."


@pytest.mark.parametrize("cut", range(1, len(ANSWER)))
def test_split_phrase_is_never_sent(cut: int) -> None:
    og = Outguard(guard(["(?i)internal use only"]))
    chunks = [_chunk({"role": "assistant", "content": ""}), _chunk({"content": ANSWER[:cut]}),
              _chunk({"content": ANSWER[cut:]}), _chunk({}, "stop"), b"data: [DONE]\n\n"]
    out, md = og.stream(chunks)
    text, finishes = _content(out)
    assert "internal use only" not in text.lower()
    assert ANSWER.startswith(text)
    assert finishes[-1] == "content_filter"
    assert b"".join(out).endswith(b"data: [DONE]\n\n")
    assert b"".join(out).count(b"[DONE]") == 1
    assert md == {b"output_guardrail": b"blocked"}


def test_text_without_a_match_arrives_whole_and_in_order() -> None:
    og = Outguard(guard(["(?i)internal use only"]))
    answer = "internal use is fine; only internal users; internal use onl"
    pieces = [answer[i:i + 3] for i in range(0, len(answer), 3)]
    chunks = [_chunk({"content": p}) for p in pieces] + [_chunk({}, "stop"), b"data: [DONE]\n\n"]
    out, md = og.stream(chunks)
    text, finishes = _content(out)
    assert text == answer
    assert finishes[-1] == "stop"
    assert md == {}


def test_log_mode_passes_the_answer_and_records_the_hit() -> None:
    og = Outguard(guard(["(?i)internal use only"], action="log"))
    chunks = [_chunk({"content": "this is inter"}), _chunk({"content": "nal use only."}),
              _chunk({}, "stop"), b"data: [DONE]\n\n"]
    out, md = og.stream(chunks)
    assert _content(out) == ("this is internal use only.", [None, None, "stop"])
    assert md == {b"output_guardrail": b"logged"}


def _tool_chunks(arguments: list[str]) -> list[bytes]:
    first = _chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                    "function": {"name": "lookup", "arguments": ""}}]})
    return [first, *(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": a}}]})
                     for a in arguments), _chunk({}, "tool_calls"), b"data: [DONE]\n\n"]


def _arguments(out: list[bytes]) -> str:
    text = ""
    for raw in b"".join(out).split(b"\n\n"):
        if raw.startswith(b"data: {"):
            for choice in json.loads(raw[6:])["choices"]:
                for call in choice.get("delta", {}).get("tool_calls") or []:
                    text += call.get("function", {}).get("arguments") or ""
    return text


def test_streamed_tool_arguments_are_checked() -> None:
    og = Outguard(guard(["(?i)internal use only"]))
    out, md = og.stream(_tool_chunks(['{"q": "inte', 'rnal use', ' only"}']))
    assert "internal use only" not in _arguments(out)
    assert _content(out)[1][-1] == "content_filter"
    assert md == {b"output_guardrail": b"blocked"}


def test_streamed_tool_arguments_are_redacted_as_json() -> None:
    og = Outguard(guard(redact=["email", "phone"]))
    out, _ = og.stream(_tool_chunks(['{"to": "jo@ex', '.com", "n": 5551', '234567}']))
    assert json.loads(_arguments(out)) == {"to": "[REDACTED_EMAIL]", "n": 5551234567}


def _reply(content: str, arguments: str | None = None) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if arguments is not None:
        message["tool_calls"] = [{"id": "call_1", "type": "function",
                                  "function": {"name": "f", "arguments": arguments}}]
    return json.dumps({"id": "c1", "object": "chat.completion", "choices": [
        {"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}).encode()


def test_whole_reply_blocked() -> None:
    og = Outguard(guard(["(?i)internal use only"]))
    out, md, headers = og.reply(_reply("This is INTERNAL use only."))
    assert out is not None and b"internal" not in out.lower()
    assert json.loads(out)["error"]["code"] == "output_blocked"
    assert headers[b":status"] == b"403"
    assert md == {b"output_guardrail": b"blocked"}
    out, md, _ = og.reply(_reply("fine", '{"note": "internal use only"}'))
    assert out is not None and json.loads(out)["error"]["code"] == "output_blocked"


def test_whole_reply_redacted_and_logged() -> None:
    og = Outguard(guard(["secret"], action="log", redact=["email"]))
    out, md, headers = og.reply(_reply("a secret for jo@ex.com", '{"to": "a@b.io", "n": 1}'))
    assert out is not None
    message = json.loads(out)["choices"][0]["message"]
    assert message["content"] == "a secret for [REDACTED_EMAIL]"
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == \
        {"to": "[REDACTED_EMAIL]", "n": 1}
    assert md == {b"output_guardrail": b"logged"} and headers == {}


def test_anchors_apply_per_text() -> None:
    og = Outguard(guard(["^secret$"]))
    assert og.walk(b"secret")
    assert not og.walk(b"a secret")
    out, _ = og.stream([_chunk({"content": "sec"}), _chunk({"content": "ret"}),
                        _chunk({}, "stop"), b"data: [DONE]\n\n"])
    assert "secret" not in _content(out)[0]
    assert re.search(r"content_filter", b"".join(out).decode())


def test_held_text_is_sent_when_the_stream_ends_without_done() -> None:
    og = Outguard(guard(["(?i)internal use only"], redact=["email"]))
    out, md = og.stream([_chunk({"content": "write to jo@ex.com inter"}),
                         _chunk({"content": "nal"})])
    assert _content(out)[0] == "write to [REDACTED_EMAIL] internal"
    out, md = og.stream([_chunk({"content": "internal use"}), _chunk({"content": " only"})])
    assert "internal use only" not in _content(out)[0]
    assert _content(out)[1][-1] == "content_filter"
    assert md == {b"output_guardrail": b"blocked"}


def test_crlf_event_boundaries() -> None:
    og = Outguard(guard(["(?i)internal use only"]))
    crlf = [c.replace(b"\n\n", b"\r\n\r\n") for c in
            [_chunk({"content": "this is inter"}), _chunk({"content": "nal use only"})]]
    out, md = og.stream(crlf)
    assert b"internal use only" not in b"".join(out)
    assert md == {b"output_guardrail": b"blocked"}
