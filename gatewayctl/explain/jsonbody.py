"""Request bodies read exactly as the gateway's Lua reads them (render/envoy/lua/json.lua).

The gateway decodes a body with its own strict decoder, so explain must accept and refuse the
same bodies and see the same strings: RFC 8259 grammar, no NaN or Infinity, no control byte in
a string, nesting at most 64 containers deep (the top-level object included), a repeated key
keeps its last value, `\\u` escapes become UTF-8 with a lone surrogate becoming U+FFFD, and a
byte that is not valid UTF-8 is kept as it is (here: the surrogateescape code point, so that
`encode_utf8` gives the body's own bytes back). Numbers are floats, as in Lua.

`lua_encode` writes a value as the Lua encoder does (sorted keys, `%.14g` numbers), which is
how the gateway renders a non-string prompt variable.

Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from typing import Any

MAX_DEPTH = 64
_WS = re.compile(rb"[ \t\r\n]*")
_PLAIN_STRING = re.compile(rb'[^"\\\x00-\x1f]*')
_NUMBER = re.compile(rb"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_ESCAPES = {ord('"'): '"', ord("\\"): "\\", ord("/"): "/", ord("b"): "\b", ord("f"): "\f",
            ord("n"): "\n", ord("r"): "\r", ord("t"): "\t"}
_HEX4 = re.compile(rb"[0-9A-Fa-f]{4}")
_LOW_SURROGATE = re.compile(rb"\\u[dD][c-fC-F][0-9A-Fa-f]{2}")


class BodyError(ValueError):
    """The body is not what the gateway accepts; `code` is the gateway's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def encode_utf8(text: str) -> bytes:
    """The bytes a decoded string stands for (raw invalid bytes included)."""
    return text.encode("utf-8", "surrogateescape")


class _Decoder:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def fail(self, pos: int, message: str) -> BodyError:
        return BodyError("invalid_json", f"invalid JSON at byte {pos + 1}: {message}")

    def ws(self, pos: int) -> int:
        match = _WS.match(self.data, pos)
        return match.end() if match else pos

    def string(self, pos: int) -> tuple[str, int]:
        data = self.data
        parts: list[str] = []
        i = pos + 1
        while True:
            plain = _PLAIN_STRING.match(data, i)
            if plain is not None and plain.end() > i:
                parts.append(_text(data[i:plain.end()]))
                i = plain.end()
            if i >= len(data):
                raise self.fail(i, "unterminated string")
            c = data[i]
            if c == 0x22:
                return "".join(parts), i + 1
            if c < 0x20:
                raise self.fail(i, "control character in string")
            esc = data[i + 1] if i + 1 < len(data) else None
            if esc == ord("u"):
                if not _HEX4.fullmatch(data, i + 2, i + 6):
                    raise self.fail(i, "bad \\u escape")
                cp = int(data[i + 2:i + 6], 16)
                used = 6
                if 0xD800 <= cp <= 0xDBFF:
                    if _LOW_SURROGATE.fullmatch(data, i + 6, i + 12):
                        low = int(data[i + 8:i + 12], 16)
                        cp = 0x10000 + (cp - 0xD800) * 0x400 + (low - 0xDC00)
                        used = 12
                    else:
                        cp = 0xFFFD
                elif 0xDC00 <= cp <= 0xDFFF:
                    cp = 0xFFFD
                parts.append(chr(cp))
                i += used
            else:
                rep = _ESCAPES.get(esc) if esc is not None else None
                if rep is None:
                    raise self.fail(i, "bad escape")
                parts.append(rep)
                i += 2

    def number(self, pos: int) -> tuple[float, int]:
        match = _NUMBER.match(self.data, pos)
        if match is None:
            raise self.fail(pos, "unexpected character")
        return float(match.group(0)), match.end()

    def value(self, pos: int, depth: int) -> tuple[Any, int]:
        data = self.data
        if pos >= len(data):
            raise self.fail(pos, "unexpected end of input")
        c = data[pos]
        if c in (0x7B, 0x5B):
            if depth >= MAX_DEPTH:
                raise self.fail(pos, "nested too deeply")
            return (self.obj if c == 0x7B else self.array)(pos, depth + 1)
        if c == 0x22:
            return self.string(pos)
        if data.startswith(b"true", pos):
            return True, pos + 4
        if data.startswith(b"false", pos):
            return False, pos + 5
        if data.startswith(b"null", pos):
            return None, pos + 4
        return self.number(pos)

    def array(self, pos: int, depth: int) -> tuple[list[Any], int]:
        out: list[Any] = []
        pos = self.ws(pos + 1)
        if self.data[pos:pos + 1] == b"]":
            return out, pos + 1
        while True:
            item, pos = self.value(pos, depth)
            out.append(item)
            pos = self.ws(pos)
            c = self.data[pos:pos + 1]
            if c == b"]":
                return out, pos + 1
            if c != b",":
                raise self.fail(pos, "expected ',' or ']'")
            pos = self.ws(pos + 1)

    def obj(self, pos: int, depth: int) -> tuple[dict[str, Any], int]:
        out: dict[str, Any] = {}
        pos = self.ws(pos + 1)
        if self.data[pos:pos + 1] == b"}":
            return out, pos + 1
        while True:
            if self.data[pos:pos + 1] != b'"':
                raise self.fail(pos, "expected a string key")
            key, pos = self.string(pos)
            pos = self.ws(pos)
            if self.data[pos:pos + 1] != b":":
                raise self.fail(pos, "expected ':'")
            item, pos = self.value(self.ws(pos + 1), depth)
            out.pop(key, None)  # a repeated key: the last value, in the last place
            out[key] = item
            pos = self.ws(pos)
            c = self.data[pos:pos + 1]
            if c == b"}":
                return out, pos + 1
            if c != b",":
                raise self.fail(pos, "expected ',' or '}'")
            pos = self.ws(pos + 1)


def decode_body(data: bytes) -> dict[str, Any]:
    """The request object, or BodyError with the gateway's code (invalid_body, invalid_json)."""
    if not data:
        raise BodyError("invalid_body", "the request body is empty")
    decoder = _Decoder(data)
    pos = decoder.ws(0)
    if data[pos:pos + 1] != b"{":
        raise BodyError("invalid_json", "the request body is not a JSON object")
    # The top-level object is depth 1 for its members, as decode_members has it.
    value, pos = decoder.obj(pos, 1)
    pos = decoder.ws(pos)
    if pos < len(data):
        raise decoder.fail(pos, "trailing characters")
    return value


# -- the Lua encoder ---------------------------------------------------------------------------

_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n",
                  "\r": "\\r", "\t": "\\t"}


def lua_encode_string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _lua_number(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError("cannot encode a non-finite number")
    if value == math.floor(value) and -1e15 < value < 1e15:
        return str(int(value))
    text = f"{value:.14g}"
    if float(text) != value:
        text = f"{value:.17g}"
    return text


def lua_encode(value: Any) -> str:
    """JSON text of a decoded value as gateway.lua's json.encode writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _lua_number(float(value))
    if isinstance(value, str):
        return lua_encode_string(value)
    if isinstance(value, list):
        return "[" + ",".join(lua_encode(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=encode_utf8)
        return "{" + ",".join(f"{lua_encode_string(k)}:{lua_encode(value[k])}" for k in keys) + "}"
    raise TypeError(f"cannot encode {type(value).__name__}")
