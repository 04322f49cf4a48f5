"""Tool-call arguments walked as the tool reads them (outguard.lua in LuaJIT): their JSON
escapes decoded (`\\u0070`, `\\n`, surrogate pairs, a lone surrogate as U+FFFD) whole and at
every cut, against the automaton over the text Python's JSON decoder gives."""

from __future__ import annotations

import json
import random
import re

import pytest

from gatewayctl.manifests.output_dfa import compile_patterns
from tests.outguard.lua_outguard import Outguard, guard

pytest.importorskip("lupa.luajit21", reason="lupa with LuaJIT 2.1 (Envoy's Lua)")

PATTERNS = ["(?i)internal use only", r"\bsecret\b", "(?m)^rm -rf", "x\U0001f600y",
            '\ufffd["A]', '"q":"p', r'\\"']
_ESCAPE = re.compile(r'\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}'
                     r'|u[0-9a-fA-F]{4}|["\\/bfnrt])')


def decoded(text: str) -> bytes:
    """The arguments as the tool reads their strings: each escape decoded (lone surrogates as
    U+FFFD, as json.lua decodes them), the rest as it is."""
    def one(m: re.Match[str]) -> str:
        value = json.loads('"' + m.group(0) + '"')
        return "\ufffd" if len(value) == 1 and 0xD800 <= ord(value) <= 0xDFFF else value
    return _ESCAPE.sub(one, text).encode()


def _escape(rnd: random.Random, ch: str) -> str:
    """ch as the model may write it in a JSON string: itself, \\uXXXX, or a short escape."""
    short = {"\n": "\\n", '"': '\\"', "\\": "\\\\", "/": "\\/", "\t": "\\t"}
    r = rnd.random()
    if ch in short and r < 0.7:
        return short[ch]
    if r < 0.5 and ch not in '"\\':
        return ch
    raw = ch.encode("utf-16-be")
    return "".join(f"\\u{raw[i]:02x}{raw[i + 1]:02x}" for i in range(0, len(raw), 2))


PIECES = ["internal use only", "INTERNAL", "secret", "secrets", " ", "\n", "rm -rf", "x", "y",
          "\U0001f600", "a", "b", "q", '"', "\\", "/", "p", "é", "x\U0001f600y", "\nrm -rf"]


def _arguments(rnd: random.Random) -> str:
    text = "".join(rnd.choice(PIECES) for _ in range(rnd.randint(0, 6)))
    value = "".join(_escape(rnd, c) for c in text)
    if rnd.random() < 0.1:
        value += "\\ud83d" + rnd.choice(["", "x", "\\u0041", "\\n"])  # a lone high surrogate
    if rnd.random() < 0.05:
        value += "\\ude00"  # a lone low one
    return '{"q":"' + value + '"}'


@pytest.mark.parametrize("pattern", PATTERNS)
def test_arguments_are_walked_decoded_whole_and_cut_anywhere(pattern: str) -> None:
    og = Outguard(guard([pattern], action="log"))
    dfa = compile_patterns([pattern])
    rnd = random.Random(pattern)
    verdicts = set()
    for _ in range(120):
        args = _arguments(rnd).encode()
        want = dfa.search(decoded(args.decode()))
        verdicts.add(want)
        # a whole reply's arguments
        assert og.reply_hit_arguments(args) == want, (pattern, args)
        # a stream's, cut in two and in three anywhere
        for k in range(len(args) + 1):
            pieces = [args[:k], args[k:]]
            if k > 2:
                j = rnd.randint(1, k - 1)
                pieces = [args[:j], args[j:k], args[k:]]
            assert og.arguments_hit(pieces) == want, (pattern, pieces)
    assert verdicts == {True, False}


def test_content_is_decoded_once() -> None:
    """Content is the client's text once the reply's JSON is read: an escape in the reply is
    walked decoded, and a `\\u0071` the client reads as six characters is walked as those."""
    og = Outguard(guard(["q"]))
    escaped = b'{"choices":[{"index":0,"message":{"role":"assistant","content":"\\u0071"}}]}'
    assert og.reply(escaped)[0] is not None  # blocked
    literal = b'{"choices":[{"index":0,"message":{"role":"assistant","content":"\\\\u0071"}}]}'
    assert og.reply(literal)[0] is None  # passes as it is
