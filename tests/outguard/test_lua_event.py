"""Stream events skimmed (outguard_event.lua) instead of decoded whole: the skim reads the texts
json.lua reads or gives the event up; a stream's client receives the same answer either way;
an event whose texts go out unchanged is sent byte for byte (its chunk not even rewritten),
and one whose text is held back, redacted or blocked is rewritten in that string only."""

from __future__ import annotations

import json
import random
import re
from typing import Any

import pytest

from tests.outguard.lua_outguard import Outguard, guard

pytest.importorskip("lupa.luajit21", reason="lupa with LuaJIT 2.1 (Envoy's Lua)")

PHRASE = "internal use only"
PATTERN = "(?i)internal use only"

# What the skim reads of an event, and what the decoded path (json.decode, then outguard.lua's
# own reading of the table) reads of it: one line per choice and per tool call with a text.
READINGS = """
local ev, json = ...
local function num(n) return string.format("%.17g", n) end
local function skimmed(payload)
  local r = ev.skim(payload)
  if r == nil then return nil end
  local out = {}
  for _, c in ipairs(r.choices) do
    out[#out + 1] = "choice " .. num(c.index) .. (c.finish and " finish" or "")
    if c.content ~= nil then out[#out + 1] = "text " .. ev.text(payload, c.content) end
    for _, call in ipairs(c.calls) do
      out[#out + 1] = "call " .. num(call.index) .. " " .. ev.text(payload, call.slot)
    end
  end
  return out
end
local function decoded(payload)
  local ok, chunk = pcall(json.decode, payload)
  if not ok or type(chunk) ~= "table" or type(chunk.choices) ~= "table" then return nil end
  local out = {}
  for position, choice in ipairs(chunk.choices) do
    if type(choice) == "table" then
      local finish = choice.finish_reason ~= nil and choice.finish_reason ~= json.null
      out[#out + 1] = "choice " .. num(type(choice.index) == "number" and choice.index
                                       or position - 1) .. (finish and " finish" or "")
      local delta, text = choice.delta, nil
      if type(delta) == "table" then text = delta.content
      elseif type(choice.text) == "string" then text = choice.text end
      if type(text) == "string" then out[#out + 1] = "text " .. text end
      local calls = type(delta) == "table" and delta.tool_calls or nil
      if type(calls) == "table" then
        for k, call in ipairs(calls) do
          local fn = type(call) == "table" and call["function"]
          if type(fn) == "table" and type(fn.arguments) == "string" then
            local ci = type(call.index) == "number" and call.index or k - 1
            out[#out + 1] = "call " .. num(ci) .. " " .. fn.arguments
          end
        end
      end
    end
  end
  return out
end
local function has_usage(payload)
  local chunk = json.decode(payload)
  return type(chunk.usage) == "table" and chunk.usage ~= json.null
end
return skimmed, decoded, has_usage
"""


class Obj:
    """A JSON object as written: its members in order, repeats allowed."""

    def __init__(self, *pairs: tuple[str, Any]) -> None:
        self.pairs = list(pairs)


def _ws(rnd: random.Random) -> str:
    return rnd.choice(["", "", "", " ", "\n", " \t", "\r\n "])


def _string(s: str, rnd: random.Random) -> str:
    text = json.dumps(s, ensure_ascii=rnd.random() < 0.3)
    if rnd.random() < 0.2:  # letters written as \\u escapes
        text = re.sub(r"[a-z]", lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


def _dump(v: Any, rnd: random.Random) -> str:
    if isinstance(v, Obj):
        members = []
        for k, value in v.pairs:
            key = json.dumps(k)
            if ODD[0] and rnd.random() < 0.03:  # a key written with an escape
                key = '"\\u00' + f"{ord(k[0]):02x}" + k[1:] + '"'
            members.append(f"{_ws(rnd)}{key}{_ws(rnd)}:{_ws(rnd)}{_dump(value, rnd)}{_ws(rnd)}")
        return "{" + ",".join(members) + "}"
    if isinstance(v, list):
        return "[" + ",".join(_ws(rnd) + _dump(x, rnd) + _ws(rnd) for x in v) + "]"
    if isinstance(v, str):
        return _string(v, rnd)
    return json.dumps(v)


TEXT_PARTS = ["a", "b", "internal", " use", " only", "é", "\U0001f600", '"', "\\", "\n",
              "jo@ex.com", "\u2028", " ", "\x01", "/", "{\"q\": 1}"]


def _text(rnd: random.Random) -> str:
    return "".join(rnd.choice(TEXT_PARTS) for _ in range(rnd.randint(0, 5)))


def _maybe(rnd: random.Random, p: float, *pair: Any) -> list[tuple[str, Any]]:
    return [pair] if rnd.random() < p else []  # type: ignore[list-item]


# Whether the event being written may be odd (types not expected, repeats, escaped keys,
# finishes, broken JSON); a plain one is only written in any order and spacing.
ODD = [False]


def _pick(rnd: random.Random, plain: list[Any], odd: list[Any]) -> Any:
    return rnd.choice(plain + odd if ODD[0] else plain)


def _call(rnd: random.Random, k: int) -> Any:
    if ODD[0] and rnd.random() < 0.05:
        return None
    fn = Obj(*_maybe(rnd, 0.3, "name", "lookup"),
             *_maybe(rnd, 0.9, "arguments", _pick(rnd, [_text(rnd)], [None, 3])))
    return Obj(*_maybe(rnd, 0.9, "index", _pick(rnd, [k, k, 0, 2, 1.0], ["0"])),
               *_maybe(rnd, 0.3, "id", "call_1"), *_maybe(rnd, 0.3, "type", "function"),
               *_maybe(rnd, 0.95, "function", _pick(rnd, [fn], ["f", None])))


def _choice(rnd: random.Random, position: int) -> Any:
    delta = Obj(*_maybe(rnd, 0.2, "role", "assistant"),
                *_maybe(rnd, 0.8, "content", _pick(rnd, [_text(rnd)] * 4 + [None], [7])),
                *_maybe(rnd, 0.2, "tool_calls",
                        _pick(rnd, [[_call(rnd, k) for k in range(rnd.randint(0, 2))], None],
                              ["x"])))
    with_delta = rnd.random() < 0.9
    pairs = [*_maybe(rnd, 0.9, "index", _pick(rnd, [position - 1] * 3 + [5], ["1", 0.5])),
             *(_maybe(rnd, 1, "delta", _pick(rnd, [delta], [None, 1])) if with_delta else
               _maybe(rnd, 0.8, "text", _pick(rnd, [_text(rnd), None], [2]))),
             *_maybe(rnd, 0.1 if ODD[0] else 0, "text", _text(rnd)),
             *_maybe(rnd, 0.5, "logprobs", rnd.choice([None, Obj(("content", [Obj(
                 ("token", "x"), ("content", "y"))]))])),
             *_maybe(rnd, 0.8, "finish_reason", _pick(rnd, [None], ["stop", "length"]))]
    return Obj(*pairs)


def _event(rnd: random.Random) -> str:
    ODD[0] = rnd.random() < 0.5
    choices = [_choice(rnd, p) for p in range(1, rnd.choice([1, 1, 1, 1, 2, 3]) + 1)]
    if ODD[0] and rnd.random() < 0.05:
        choices = []
    pairs = [("id", "chatcmpl-1"), ("object", "chat.completion.chunk"),
             ("created", rnd.choice([1, 1700000000, -0.5e3, 12.25])), ("model", "m"),
             *_maybe(rnd, 0.97, "choices", choices),
             *_maybe(rnd, 0.2, "usage", _pick(rnd, [None], [Obj(("prompt_tokens", 1))])),
             *_maybe(rnd, 0.1, "extra", [Obj(("deep", [[[True, False, None]]]))])]
    rnd.shuffle(pairs) if rnd.random() < 0.3 else None
    if ODD[0] and rnd.random() < 0.1 and pairs:
        pairs.append(rnd.choice(pairs))  # a member repeated
    text = _ws(rnd) + _dump(Obj(*pairs), rnd) + _ws(rnd)
    if ODD[0] and rnd.random() < 0.3:  # not JSON: a byte removed, doubled or changed, or cut
        at = rnd.randrange(len(text))
        text = rnd.choice([text[:at] + text[at + 1:], text[:at] + text[at] + text[at:],
                           text[:at] + rnd.choice("{}[],:\"\\0e-.ntf \x00") + text[at + 1:],
                           text[:at]])
    return text


def test_skim_reads_what_json_reads() -> None:
    """Over random events (members in any order, repeated, escaped keys and texts, whitespace,
    nested extras, types that are not expected, broken JSON): whatever the skim reads, json.lua
    decodes and outguard.lua's decoded path reads the same texts, indexes, calls and finishes
    from; it gives up every event with a usage object. And it reads most plain events."""
    og = Outguard(guard([PATTERN]))
    skimmed, decoded, has_usage = og.rt.execute(READINGS, og.event, og.rt.eval("json"))
    rnd = random.Random(21)
    read = 0
    for _ in range(6000):
        payload = _event(rnd).encode()
        got = skimmed(payload)
        if got is None:
            continue
        read += 1
        want = decoded(payload)
        assert want is not None, payload
        assert list(got.values()) == list(want.values()), payload
        assert not has_usage(payload), payload
    assert read > 2500  # the plain events (half of these) are read


@pytest.mark.parametrize("literal,text", [
    (r'"\" \\ \/ \b \f \n \r \t"', '" \\ / \b \f \n \r \t'),
    (r'"\u0041\u00e9\u20ac\u00411"', "A\u00e9\u20acA1"),
    (r'"\\u0041 \\\u0041"', "\\u0041 \\A"),
    (r'"\ud83d\ude00 \u00e9"', "\U0001f600 \u00e9"),
    (r'"\ud800x"', "\ufffdx"), (r'"\udc00"', "\ufffd"), (r'"a\\"', "a\\"),
    (r'"\u0000"', "\x00"),
])
def test_a_text_is_decoded_as_json_lua_decodes_it(literal: str, text: str) -> None:
    """Escapes of one character in place, `\\u` escapes to UTF-8, an escaped backslash before
    a `u` left as it is, a surrogate (a pair, a lone one) as json.lua reads it."""
    og = Outguard(guard([PATTERN]))
    payload = ('{"choices":[{"index":0,"delta":{"content":' + literal + '}}]}').encode()
    slot = og.event.skim(payload).choices[1].content
    assert og.event.text(payload, slot) == text.encode()
    assert og.event.text(payload, slot) == og.rt.eval("json").decode(literal.encode())


@pytest.mark.parametrize("payload", [
    '{"choices":[],"usage":{"prompt_tokens":1}}',
    '{"choices":[{"index":0,"delta":{"content":"x"}}],"usage":{"prompt_tokens":1}}',
    '{"choices":[{"index":0,"delta":{"c\\u006fntent":"x"}}]}',
    '{"choices":[{"index":0,"delta":{"content":"x","content":"y"}}]}',
    '{"choices":[{"index":0,"delta":{"content":"x"},"text":"y"}]}',
    '{"choices":[{"index":0,"delta":{"content":"x\\q"}}]}',
    '{"choices":[{"index":0,"delta":{"content":"x"}}]} x',
    '{"choices":[{"index":01,"delta":{"content":"x"}}]}',
    '{"choices":[{"index":0,"delta":{"content":5}}]}',
    '{"choices":[{"index":"0","delta":{"content":"x"}}]}',
    '{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":null}}]}}]}',
    '{"choices":[{"index":0,"delta":{"content":"x"}}],"a":' + "[" * 40 + "]" * 40 + "}",
    '{"choices":{"index":0}}',
    "[]",
])
def test_events_the_skim_gives_up(payload: str) -> None:
    """Each of these is left to json.decode: a usage object, an escaped key, a
    repeated member, delta beside text, a bad escape, trailing bytes, a bad number, a text or
    index of another type, null arguments, deep nesting, choices not an array, not an object."""
    og = Outguard(guard([PATTERN]))
    assert og.event.skim(payload.encode()) is None


def _sse(payload: str) -> bytes:
    return b"data: " + payload.encode() + b"\n\n"


def _chunk(delta: str, finish: str | None = None, index: int = 0) -> str:
    """A chunk as OpenAI writes it (members not in byte order, so a re-encoded one differs)."""
    return ('{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
            f'"choices":[{{"index":{index},"delta":{delta},"logprobs":null,'
            f'"finish_reason":{json.dumps(finish)}}}]}}')


def _content(text: str) -> str:
    return _chunk(json.dumps({"content": text}))


def _arguments(text: str) -> str:
    return _chunk(json.dumps({"tool_calls": [{"index": 0, "function": {"arguments": text}}]}))


DONE = b"data: [DONE]\n\n"


def test_unchanged_events_go_out_byte_for_byte() -> None:
    """Texts that start no match and need no redaction: every event and chunk as it came (the
    stream's chunks are not even rewritten), odd spacing and escapes included."""
    og = Outguard(guard([PATTERN]))
    chunks = [_sse(_chunk('{"role":"assistant","content":""}')),
              _sse(_content("internal use is fine, ")),
              b'data:  {"choices" : [ {"delta": {"content": "only \\u0070art\\n"}, "index": 0} ]}'
              b" \r\n\r\n",
              _sse(_arguments('{"q": "a\\u00e9"}')),
              _sse(_chunk("{}", "stop")), DONE]
    out, md = og.stream(chunks)
    assert out == chunks
    assert og.rewritten == 0
    assert md == {}


def test_an_event_that_starts_a_match_is_rewritten_in_its_text_only() -> None:
    og = Outguard(guard([PATTERN]))
    first = _content("this is internal us")
    out, md = og.stream([_sse(first), _sse(_content("e only")), _sse(_chunk("{}", "stop")),
                         DONE])
    # the text from `internal` on is held back; the event's other bytes are as they came
    assert out[0] == _sse(first.replace("this is internal us", "this is "))
    assert PHRASE not in b"".join(out).decode()
    assert b"content_filter" in out[1] and out[1].endswith(DONE)
    assert md == {b"output_guardrail": b"blocked"}


def test_a_phrase_that_does_not_complete_is_released_with_the_next_event() -> None:
    og = Outguard(guard([PATTERN]))
    out, md = og.stream([_sse(_content("so internal")), _sse(_content(" use is open")), DONE])
    assert out[0] == _sse(_content("so "))
    assert out[1] == _sse(_content("internal use is open"))
    assert out[2] == DONE
    assert md == {}


def test_an_escape_split_across_events_is_held_back() -> None:
    """Arguments whose escape is cut by the event's end (`\\u00` + `69nternal`): the walk
    cannot tell yet, so the escape's bytes wait for the next event, which completes the phrase."""
    og = Outguard(guard([PATTERN]))
    first = _arguments('{"q": "\\u00')
    out, md = og.stream([_sse(first), _sse(_arguments('69nternal use only"}')),
                         _sse(_chunk("{}", "tool_calls")), DONE])
    assert out[0] == _sse(_arguments('{"q": "'))
    assert b"nternal use only" not in b"".join(out)
    assert b"content_filter" in out[1]
    assert md == {b"output_guardrail": b"blocked"}
    # the same cut, completing no phrase: the escape goes out whole with the next event
    out, md = og.stream([_sse(first), _sse(_arguments('69s fine"}')),
                         _sse(_chunk("{}", "tool_calls")), DONE])
    assert out[0] == _sse(_arguments('{"q": "'))
    assert out[1] == _sse(_arguments('\\u0069s fine"}'))
    assert md == {}


@pytest.mark.parametrize("after", [
    # the same bytes before and after the text, a second `content` between them
    _content("ok ").replace('"ok "', '"ok ", "content": "internal use only"'),
    # the same bytes before the text, another choice after it
    _content("ok ").replace('null}]}', 'null}, {"index": 1, "delta": {"content": "internal use '
                            'only"}}]}'),
], ids=["member-between", "choice-after"])
def test_an_event_of_another_shape_is_read_whole(after: str) -> None:
    """Events that differ from the one before only by their text are read by comparing the
    bytes around it; one that differs otherwise is skimmed (or decoded) whole, so a text it
    has beside the compared one is checked."""
    og = Outguard(guard([PATTERN]))
    out, md = og.stream([_sse(_content("fine ")), _sse(after), DONE])
    assert out[0] == _sse(_content("fine "))
    assert PHRASE not in b"".join(out).decode()
    assert md == {b"output_guardrail": b"blocked"}


def test_an_event_with_other_bytes_after_its_text_is_read_whole() -> None:
    """The bytes after the text are compared too: here they are as long as the previous
    event's, but hold a second choice with the phrase."""
    og = Outguard(guard([PATTERN]))
    head = '{"choices":[{"index":0,"delta":{"content":"ok "},"x":"'
    second = '"},{"index":1,"delta":{"content":"internal use only"}}]}'
    first = head + "_" * (len(second) + 10 - 4) + '"}]}'
    after = head + "_" * 10 + second
    assert len(after) == len(first)
    out, md = og.stream([_sse(first), _sse(after), DONE])
    assert out[0] == _sse(first)
    assert PHRASE not in b"".join(out).decode()
    assert md == {b"output_guardrail": b"blocked"}


def test_redaction_rewrites_the_text_only() -> None:
    og = Outguard(guard(redact=["email"]))
    out, _ = og.stream([_sse(_content("mail jo@ex.com now ")), _sse(_content("ok ")), DONE])
    assert out[0] == _sse(_content("mail [REDACTED_EMAIL] now "))
    assert out[1] == _sse(_content("ok "))
    assert og.rewritten == 1


def test_a_finish_adds_the_held_content_to_its_delta() -> None:
    """A finish whose choice still holds content (a phrase begun, a word a redaction could
    span) adds it to the event's `delta` object, the rest of the event as it came; a finish
    that holds nothing goes out as it came."""
    og = Outguard(guard([PATTERN]))
    out, _ = og.stream([_sse(_content("so inter")), _sse(_chunk("{}", "stop")), DONE])
    assert out[0] == _sse(_content("so "))
    assert out[1] == _sse(_chunk('{"content":"inter"}', "stop"))
    out, _ = og.stream([_sse(_content("so inter")), _sse(_chunk('{"role":"x"}', "stop")), DONE])
    assert out[1] == _sse(_chunk('{"content":"inter","role":"x"}', "stop"))
    out, _ = og.stream([_sse(_content("so ")), _sse(_chunk("{}", "stop")), DONE])
    assert out[1] == _sse(_chunk("{}", "stop"))
    og = Outguard(guard(redact=["email"]))
    out, _ = og.stream([_sse(_content("to jo@ex.com")), _sse(_chunk("{}", "stop")), DONE])
    assert out[0] == _sse(_content("to "))
    assert out[1] == _sse(_chunk('{"content":"[REDACTED_EMAIL]"}', "stop"))


def test_a_finish_that_releases_other_held_text_is_decoded_and_re_encoded() -> None:
    """Held text the event has no place for (arguments kept whole for redaction, content when
    `delta` has `content: null` or is missing): that event goes through json.lua (re-encoded,
    members in byte order)."""
    og = Outguard(guard(redact=["email"]))
    out, _ = og.stream([_sse(_arguments('{"to": "jo@ex.com"}')), _sse(_chunk("{}", "tool_calls")),
                        DONE])
    assert out[0] == _sse(_arguments(""))
    assert out[1].startswith(b'data: {"choices":')
    calls = json.loads(out[1][6:])["choices"][0]["delta"]["tool_calls"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"to": "[REDACTED_EMAIL]"}
    og = Outguard(guard([PATTERN]))
    for finish in (_chunk('{"content":null}', "stop"),
                   '{"id":"c1","choices":[{"index":0,"finish_reason":"stop"}]}'):
        out, _ = og.stream([_sse(_content("so inter")), _sse(finish), DONE])
        assert out[1].startswith(b'data: {"choices":')
        choice = json.loads(out[1][6:])["choices"][0]
        assert (choice.get("delta") or choice)[("content" if "delta" in choice else "text")] \
            == "inter"
        assert choice["finish_reason"] == "stop"


def test_usage_is_read_from_an_event_without_choices() -> None:
    og = Outguard(guard([PATTERN]))
    usage = '{"id":"c1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}'
    h = og.fake(og.rt.table_from([_sse(_content("ok")), _sse(usage), DONE]))
    assert tuple(og.module.stream(h, og.g))[:2] == (3, 2)
    assert h.list[2].data == _sse(usage)


# Stream differential: the skim against decoding every event.
STREAM_PARTS = ["a ", "b", "in", "ternal", " use", " only", "INTERNAL USE ONLY", "jo@ex.com ",
                "é", "\U0001f600", "\n", "\\", '"', " "]


def _styled(rnd: random.Random, delta: str, finish: str | None = None) -> bytes:
    """An event in one of a few writings (a stream's events may change shape midway)."""
    f = json.dumps(finish)
    return _sse(rnd.choice([
        _chunk(delta, finish),
        f'{{"choices":[{{"delta":{delta},"index":0,"finish_reason":{f}}}],"id":"c2"}}',
        f'{{"id":"c1", "usage":null, "choices": [ {{"index": 0, "delta": {delta} }} ] }}'
        if finish is None else _chunk(delta, finish),
    ]))


def _random_stream(rnd: random.Random) -> list[bytes]:
    events = [_sse(_chunk('{"role":"assistant","content":""}'))]
    tools = rnd.random() < 0.4
    text = "".join(rnd.choice(STREAM_PARTS) for _ in range(rnd.randint(0, 12)))
    if tools:
        raw = json.dumps({"q": text})
        if rnd.random() < 0.5:  # letters escaped in the arguments' JSON
            raw = re.sub(r"[a-z]", lambda m: f"\\u{ord(m.group()):04x}", raw)
        pieces = [raw[i:i + rnd.randint(1, 6)] for i in range(0, len(raw), 3)]
        pieces = [raw[a:b] for a, b in zip(range(0, len(raw), 3), range(3, len(raw) + 3, 3),
                                           strict=True)] if rnd.random() < 0.5 else pieces
        events += [_styled(rnd, json.dumps({"tool_calls": [{"index": 0, "function": {
            "arguments": p}}]})) for p in pieces]
        finish = "tool_calls"
    else:
        cuts = sorted(rnd.sample(range(len(text) + 1), min(len(text) + 1, rnd.randint(0, 8))))
        events += [_styled(rnd, json.dumps({"content": text[a:b]}))
                   for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        finish = "stop"
    if rnd.random() < 0.8:
        events.append(_styled(rnd, rnd.choice(["{}", "{}", '{"role":"assistant"}',
                                                '{"content":null}']), finish))
    if rnd.random() < 0.8:
        events.append(DONE)
    data = b"".join(events)
    if rnd.random() < 0.5:  # network chunks that cut events anywhere
        at = sorted(rnd.sample(range(1, max(2, len(data))), min(len(data) - 1, rnd.randint(1, 6))))
        return [data[a:b] for a, b in zip([0, *at], [*at, len(data)], strict=True)]
    return events


def _parsed(out: list[bytes]) -> list[Any]:
    return [json.loads(block[6:]) if block.startswith(b"data: {") else block
            for block in b"".join(out).split(b"\n\n")]


@pytest.mark.parametrize("action,redact", [("block", ["email"]), ("log", ["email"]),
                                           ("block", None), (None, ["email"])])
def test_a_client_receives_what_decoding_every_event_gives(
        action: str | None, redact: list[str] | None) -> None:
    """Random streams (the phrase cut anywhere, escapes cut between events, addresses, network
    chunks cutting events): each event the client decodes, the verdict and the log are those of
    the path that decodes and re-encodes every event."""
    patterns = [PATTERN] if action else None
    fast = Outguard(guard(patterns, action or "block", redact))
    slow = Outguard(guard(patterns, action or "block", redact), skim=False)
    rnd = random.Random(f"{action}{redact}")
    for _ in range(400):
        chunks = _random_stream(rnd)
        got, got_md = fast.stream(chunks)
        want, want_md = slow.stream(chunks)
        assert _parsed(got) == _parsed(want), chunks
        assert got_md == want_md, chunks
