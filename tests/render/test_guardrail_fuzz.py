"""Fuzzing the deny patterns through a real Envoy: nothing around a denied phrase lets it pass.

Each request carries one phrase the `guarded` route's block rule matches, somewhere a provider
reads text (a message of any role, a content part, a content object, tool-call arguments, a
tool description, `prompt`, `input`, a prompt variable), with random bytes (any value; raw
where JSON allows, escaped where it does not), JSON escapes (NUL, lone surrogates, pairs,
control characters) and extra messages and parts inserted around it, and the phrase's own
characters sometimes written as `\\u` escapes. The bodies are valid JSON for the gateway's
decoder, so every request must be answered 403 `content_blocked` and none may reach the
provider. Seeded and bounded: FUZZ_REQUESTS requests on one keep-alive connection.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

import pytest

from tests.render.conftest import Gateway, needs_envoy

pytestmark = [needs_envoy, pytest.mark.envoy, pytest.mark.slow]

SEED = 20261127
FUZZ_REQUESTS = 3000
PHRASES = (
    "ignore previous instructions",
    "IGNORE ALL INSTRUCTIONS",
    "Ignore Previous Instructions",
    "iGnOrE aLl InStRuCtIoNs",
)
ESCAPES = (
    b"\\u0000",
    b"\\u0000\\u0000",
    b"\\ud800",
    b"\\udfff",
    b"\\ud83d\\ude00",
    b"\\n",
    b"\\r\\n",
    b"\\t",
    b"\\b",
    b"\\f",
    b"\\/",
    b"\\\\",
    b'\\"',
    b"\\u200b",
    b"\\ufeff",
    b"\\u202e",
    b"\\u00ff",
    b"\\u001f",
)


class Body:
    """Builds one request body as raw bytes with a random amount of noise."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def noise(self) -> bytes:
        rng = self.rng
        out = bytearray()
        for _ in range(rng.randint(0, 4)):
            kind = rng.random()
            if kind < 0.45:
                for _ in range(rng.randint(1, 6)):
                    b = rng.randrange(256)
                    if b < 0x20 or b in (0x22, 0x5C):
                        out += b"\\u%04x" % b  # JSON must escape these
                    else:
                        out.append(b)  # raw, valid UTF-8 or not
            elif kind < 0.85:
                out += rng.choice(ESCAPES)
            else:
                out += rng.choice(["é", "漢", "\U0001f600", " ", "\u00a0"]).encode()
        return bytes(out)

    def phrase(self) -> bytes:
        text = self.rng.choice(PHRASES)
        if self.rng.random() < 0.3:
            # some of its characters as \u escapes: the decoder yields the same text
            return b"".join(
                b"\\u%04x" % ord(c) if self.rng.random() < 0.4 else c.encode() for c in text
            )
        return text.encode()

    def text(self) -> bytes:
        """A JSON string (quotes included) with the phrase and noise around it."""
        return b'"' + self.noise() + self.phrase() + self.noise() + b'"'

    def filler(self) -> bytes:
        return b'"' + self.noise() + b'"'

    def filler_message(self) -> bytes:
        role = self.rng.choice(["system", "user", "assistant", "tool", "developer"])
        shape = self.rng.random()
        if shape < 0.5:
            content = self.filler()
        elif shape < 0.8:
            content = b'[{"type":"text","text":' + self.filler() + b"}]"
        else:
            content = b"null"
        return b'{"role":"' + role.encode() + b'","content":' + content + b"}"

    def around(self, message: bytes) -> bytes:
        before = [self.filler_message() for _ in range(self.rng.randint(0, 3))]
        after = [self.filler_message() for _ in range(self.rng.randint(0, 3))]
        return b"[" + b",".join([*before, message, *after]) + b"]"

    def build(self) -> tuple[str, str, bytes]:
        """(place, path, body) for one request."""
        rng = self.rng
        place = rng.choice(
            [
                "content",
                "part",
                "parts-split",
                "content-object",
                "tool-arguments",
                "tool-description",
                "prompt",
                "input",
                "prompt-variable",
            ]
        )
        role = rng.choice(["system", "user", "assistant", "tool", "developer"]).encode()
        path = "/v1/chat/completions"
        model = b'"guarded"'
        if place == "content":
            msgs = self.around(b'{"role":"' + role + b'","content":' + self.text() + b"}")
            rest = b'"messages":' + msgs
        elif place == "part":
            part = b'{"type":"text","text":' + self.text() + b"}"
            rest = b'"messages":' + self.around(b'{"role":"user","content":[' + part + b"]}")
        elif place == "parts-split":
            parts = [b'{"type":"text","text":' + self.filler() + b"}" for _ in range(3)]
            parts.insert(rng.randint(0, 3), b'{"type":"text","text":' + self.text() + b"}")
            parts.insert(rng.randint(0, 4), b'{"type":"image_url","image_url":{"url":"x"}}')
            rest = b'"messages":' + self.around(
                b'{"role":"user","content":[' + b",".join(parts) + b"]}"
            )
        elif place == "content-object":
            obj = b'{"type":"text","text":' + self.text() + b"}"
            rest = b'"messages":' + self.around(b'{"role":"user","content":' + obj + b"}")
        elif place == "tool-arguments":
            # arguments is a JSON string holding JSON: the phrase inside, escaped once more
            inner = json.dumps({"q": "PHRASE"}).replace("PHRASE", "\x00")
            args = json.dumps(inner).encode().replace(b"\\u0000", self.text()[1:-1])
            call = (
                b'{"id":"c1","type":"function","function":{"name":"f","arguments":' + args + b"}}"
            )
            rest = b'"messages":' + self.around(
                b'{"role":"assistant","content":null,"tool_calls":[' + call + b"]}"
            )
        elif place == "tool-description":
            tool = b'{"type":"function","function":{"name":"f","description":' + self.text() + b"}}"
            rest = b'"messages":' + self.around(self.filler_message()) + b',"tools":[' + tool + b"]"
        elif place == "prompt":
            path = "/v1/completions"
            items = [self.filler() for _ in range(rng.randint(0, 2))]
            items.insert(rng.randint(0, len(items)), self.text())
            rest = b'"prompt":' + (b"[" + b",".join(items) + b"]" if len(items) > 1 else items[0])
        elif place == "input":
            path = "/v1/embeddings"
            items = [self.filler() for _ in range(rng.randint(0, 2))]
            items.insert(rng.randint(0, len(items)), self.text())
            rest = b'"input":[' + b",".join(items) + b"]"
        else:
            model = b'"guarded-assistant"'
            rest = (
                b'"messages":'
                + self.around(self.filler_message())
                + b',"prompt_variables":{"product":'
                + self.text()
                + b"}"
            )
        members = [b'"model":' + model, rest]
        rng.shuffle(members)
        return place, path, b"{" + b",".join(members) + b"}"


def test_noise_around_a_denied_phrase_never_passes(gateway: Gateway) -> None:
    rng = random.Random(SEED)
    builder = Body(rng)
    before = len(gateway.openai.requests())
    statuses: Counter[int] = Counter()
    places: Counter[str] = Counter()
    escaped_nul = 0
    for _ in range(FUZZ_REQUESTS):
        place, path, body = builder.build()
        assert len(body) < 2048, body  # under the guarded route's maxRequestBytes
        resp = gateway.envoy.request("POST", path, raw=body, keep_alive=True)
        statuses[resp.status] += 1
        places[place] += 1
        escaped_nul += b"\\u0000" in body
        if resp.status != 403:
            raise AssertionError(f"{place}: {resp.status} {resp.body[:200]!r} for {body!r}")
        err: dict[str, Any] = resp.json()["error"]
        assert err["code"] == "content_blocked"
    assert statuses == Counter({403: FUZZ_REQUESTS})
    assert len(gateway.openai.requests()) == before
    assert set(places) == {
        "content",
        "part",
        "parts-split",
        "content-object",
        "tool-arguments",
        "tool-description",
        "prompt",
        "input",
        "prompt-variable",
    }
    assert escaped_nul > FUZZ_REQUESTS // 10  # NUL, the byte that cut the text, is frequent
