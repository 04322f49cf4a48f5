"""The compiled body filter's value library (module/gw_value.h) against the Lua it replaces.

The library's sources (dynamic_module.VALUE_SOURCES) and a thin shim
(tests/render/module/value_shim.c) are built into a shared library with the product's flags and
called through ctypes; the shipped Lua modules run in LuaJIT (lupa), bound as the filters bind
them. Seeded random and hand-picked inputs must give the same answers, byte for byte: what
json.lua accepts and refuses (and the first reason it gives), the decoded values and member
spans, json.encode's output, text.lua's guard text, carried text and shown text, redact.lua's
redaction, and usage.lua's usage of replies and of event streams cut at every byte.
"""

from __future__ import annotations

import ctypes
import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gatewayctl.render.envoy.dynamic_module import CFLAGS, VALUE_SOURCES, source_files
from gatewayctl.render.envoy.lua import module_source, to_lua
from gatewayctl.render.envoy.names import LUA_NAMES

luajit = pytest.importorskip("lupa.luajit21", reason="lupa with LuaJIT 2.1 (Envoy's Lua)")
pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler"
)

SHIM = Path(__file__).resolve().parent / "module" / "value_shim.c"
KINDS = {"email": 1, "ssn": 2, "credit-card": 4, "phone": 8}


def build_value_library(folder: Path, extra: tuple[Path, ...] = (), flags: tuple[str, ...] = (),
                        replaced: dict[str, bytes] | None = None) -> Path:
    """The value library's sources (some replaced) and `extra` files as one shared library,
    with the product's flags."""
    src = folder / "src"
    src.mkdir(parents=True, exist_ok=True)
    for name, content in {**source_files(), **(replaced or {})}.items():
        (src / name).write_bytes(content)
    out = folder / "libgwvalue.so"
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc is not None
    subprocess.run(
        [cc, *CFLAGS, *flags, "-I", str(src), "-o", str(out), *map(str, extra),
         *(str(src / name) for name in VALUE_SOURCES), "-lm"],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return out


class Value(ctypes.Structure):
    pass


class Member(ctypes.Structure):
    _fields_ = [("key", ctypes.c_void_p), ("key_length", ctypes.c_size_t),
                ("value", ctypes.POINTER(Value))]  # fmt: skip


Value._fields_ = [
    ("type", ctypes.c_int), ("number", ctypes.c_double), ("string", ctypes.c_void_p),
    ("length", ctypes.c_size_t), ("items", ctypes.POINTER(ctypes.POINTER(Value))),
    ("item_count", ctypes.c_size_t), ("members", ctypes.POINTER(Member)),
    ("member_count", ctypes.c_size_t),
]  # fmt: skip


class Span(ctypes.Structure):
    _fields_ = [("key", ctypes.c_void_p), ("key_length", ctypes.c_size_t),
                ("first", ctypes.c_size_t), ("last", ctypes.c_size_t)]  # fmt: skip


class Out(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_void_p), ("length", ctypes.c_size_t),
                ("capacity", ctypes.c_size_t), ("limit", ctypes.c_size_t),
                ("failed", ctypes.c_bool)]  # fmt: skip


VP = ctypes.POINTER(Value)
SIZE = ctypes.c_size_t


class Library:
    """The built library through ctypes."""

    def __init__(self, path: Path) -> None:
        lib = ctypes.CDLL(str(path))
        char_p = ctypes.POINTER(ctypes.c_char)
        for name, args in {
            "gvt_decode": [ctypes.c_char_p, SIZE, ctypes.c_int, ctypes.POINTER(SIZE)],
            "gvt_on_body": [ctypes.c_char_p, SIZE, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint,
                            ctypes.POINTER(ctypes.c_int), ctypes.POINTER(SIZE)],
            "gvt_on_text": [ctypes.c_char_p, SIZE, ctypes.c_int, ctypes.c_uint,
                            ctypes.POINTER(ctypes.c_int), ctypes.POINTER(SIZE)],
        }.items():  # fmt: skip
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, char_p
        lib.gvt_free.argtypes, lib.gvt_free.restype = [char_p], None
        lib.gvt_usage_of.argtypes = [ctypes.c_char_p, SIZE, ctypes.POINTER(ctypes.c_double)]
        lib.gvt_usage_stream.argtypes = [ctypes.c_char_p, SIZE, ctypes.POINTER(SIZE), SIZE,
                                         ctypes.POINTER(ctypes.c_double)]  # fmt: skip
        lib.gv_doc_new.argtypes, lib.gv_doc_new.restype = [SIZE], ctypes.c_void_p
        lib.gv_doc_free.argtypes, lib.gv_doc_free.restype = [ctypes.c_void_p], None
        lib.gv_doc_failed.argtypes, lib.gv_doc_failed.restype = [ctypes.c_void_p], ctypes.c_bool
        lib.gv_decode_members.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, SIZE, ctypes.POINTER(ctypes.POINTER(Span)),
            ctypes.POINTER(SIZE), ctypes.POINTER(ctypes.c_bool),
            ctypes.POINTER(ctypes.c_char_p)]  # fmt: skip
        lib.gv_decode_members.restype = VP
        lib.gv_get.argtypes, lib.gv_get.restype = [VP, ctypes.c_char_p, SIZE], VP
        lib.gv_new_string.argtypes = [ctypes.c_void_p, ctypes.c_char_p, SIZE]
        lib.gv_new_string.restype = VP
        lib.gv_new_object.argtypes, lib.gv_new_object.restype = [ctypes.c_void_p], VP
        lib.gv_new_array.argtypes, lib.gv_new_array.restype = [ctypes.c_void_p], VP
        lib.gv_set.argtypes = [ctypes.c_void_p, VP, ctypes.c_char_p, SIZE, VP]
        lib.gv_set.restype = ctypes.c_bool
        lib.gv_remove.argtypes, lib.gv_remove.restype = [VP, ctypes.c_char_p, SIZE], ctypes.c_bool
        lib.gv_array_insert.argtypes = [ctypes.c_void_p, VP, SIZE, VP]
        lib.gv_array_insert.restype = ctypes.c_bool
        lib.gv_encode.argtypes = [VP, ctypes.c_char_p, ctypes.POINTER(Out)]
        lib.gv_encode.restype = ctypes.c_bool
        lib.gw_out_free.argtypes, lib.gw_out_free.restype = [ctypes.POINTER(Out)], None
        self.lib = lib

    def _take(self, p: Any, length: int) -> bytes:
        data = ctypes.string_at(p, length)
        self.lib.gvt_free(p)
        return data

    def decode(self, body: bytes, sorted_keys: bool = True) -> bytes:
        n = SIZE()
        return self._take(self.lib.gvt_decode(body, len(body), int(sorted_keys),
                                              ctypes.byref(n)), n.value)  # fmt: skip

    def on_body(self, body: bytes, mode: int, first: bytes | None = None,
                kinds: int = 0) -> tuple[int, bytes]:
        n, status = SIZE(), ctypes.c_int()
        p = self.lib.gvt_on_body(body, len(body), mode, first, kinds, ctypes.byref(status),
                                 ctypes.byref(n))  # fmt: skip
        return status.value, self._take(p, n.value)

    def on_text(self, text: bytes, mode: int, kinds: int = 0) -> tuple[int, bytes]:
        n, status = SIZE(), ctypes.c_int()
        p = self.lib.gvt_on_text(text, len(text), mode, kinds, ctypes.byref(status),
                                 ctypes.byref(n))  # fmt: skip
        return status.value, self._take(p, n.value)

    def usage_of(self, text: bytes) -> str:
        numbers = (ctypes.c_double * 4)()
        found = self.lib.gvt_usage_of(text, len(text), numbers)
        return _usage_text(found, numbers)

    def usage_stream(self, data: bytes, cuts: list[int]) -> str:
        numbers = (ctypes.c_double * 4)()
        array = (SIZE * max(1, len(cuts)))(*cuts)
        found = self.lib.gvt_usage_stream(data, len(data), array, len(cuts), numbers)
        return _usage_text(found, numbers)


def _usage_text(found: int, numbers: Any) -> str:
    if not found:
        return "none"
    cached = format(numbers[2], ".17g") if numbers[3] else "nil"
    return f"{numbers[0]:.17g} {numbers[1]:.17g} {cached}"


LUA_HELPERS = r"""
local format, sort, concat = string.format, table.sort, table.concat
local function dump(v, out)
  local t = type(v)
  if v == json.null then out[#out + 1] = "n"
  elseif t == "boolean" then out[#out + 1] = v and "t" or "f"
  elseif t == "number" then out[#out + 1] = format("d%.17g;", v)
  elseif t == "string" then out[#out + 1] = "s" .. #v .. ":" .. v
  elseif getmetatable(v) == json.array then
    out[#out + 1] = "["
    for i = 1, #v do dump(v[i], out) end
    out[#out + 1] = "]"
  else
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    sort(keys)
    out[#out + 1] = "{"
    for _, k in ipairs(keys) do
      out[#out + 1] = "s" .. #k .. ":" .. k
      dump(v[k], out)
    end
    out[#out + 1] = "}"
  end
end
local function kinds_of(bits)
  local k = {}
  if bits % 2 >= 1 then k.email = true end
  if bits % 4 >= 2 then k.ssn = true end
  if bits % 8 >= 4 then k["credit-card"] = true end
  if bits % 16 >= 8 then k.phone = true end
  return k
end
local H = {}
function H.decode(body)
  local ok, obj, members, unique = pcall(json.decode_members, body)
  if not ok then
    return "E" .. (string.match(obj, "^invalid JSON at byte %d+: (.*)$") or ("?" .. obj))
  end
  local out = { unique and "O1" or "O0" }
  for i = 1, #members, 3 do
    out[#out + 1] = "s" .. #members[i] .. ":" .. members[i] .. " "
      .. format("%d", members[i + 1] - 1) .. " " .. format("%d", members[i + 2]) .. ";"
  end
  out[#out + 1] = "|"
  dump(obj, out)
  return concat(out)
end
function H.encode(body, first)
  local ok, obj = pcall(json.decode_members, body)
  if not ok then return nil end
  local done, text = pcall(json.encode, obj, first)
  if not done then return false end
  return text
end
function H.redact_table(body, bits)
  local obj = json.decode_members(body)
  local changed = redact.table(obj, kinds_of(bits))
  local out = {}
  dump(obj, out)
  return changed, concat(out)
end
function H.guard(body)
  return texts.guard_text((json.decode_members(body)), nil)
end
function H.redact_string(s, bits)
  local r = redact.string(s, kinds_of(bits))
  return r ~= s, r
end
function H.carried(s) return texts.carried_text(s) end
function H.shown(s) return texts.shown(s) end
function H.encode_string(s) return json.encode_string(s) end
local function usage_text(p, c, cached)
  if p == nil then return "none" end
  return format("%.17g %.17g %s", p, c, cached ~= nil and format("%.17g", cached) or "nil")
end
function H.usage_of(s) return usage_text(usage.of(s)) end
function H.usage_stream(chunks)
  local i = 0
  local h = {}
  function h:bodyChunks()
    return function()
      i = i + 1
      local c = chunks[i]
      if c == nil then return nil end
      return { getBytes = function() return c end, length = function() return #c end }
    end
  end
  return usage_text(usage.scan_stream(h))
end
function H.inject(body, text)
  -- gateway.lua's prompt injection and re-encoding, for the mutation functions
  local req = json.decode_members(body)
  req.prompt_variables = nil
  if not json.is_array(req.messages) then req.messages = setmetatable({}, json.array) end
  table.insert(req.messages, 1, setmetatable({ role = "system", content = text }, json.object))
  req.model = "upstream-model"
  return json.encode(req, "model")
end
return H
"""


@pytest.fixture(scope="module")
def lua() -> Any:
    rt = luajit.LuaRuntime(encoding=None)
    source = (
        "NAMES = " + to_lua(LUA_NAMES) + "\njsonstring = " + module_source("jsonstring.lua")
        + "\njson = " + module_source("json.lua") + "\ntexts = " + module_source("text.lua")
        + "\nredact = " + module_source("redact.lua") + "\nusage = "
        + module_source("usage.lua") + "\n" + LUA_HELPERS
    )  # fmt: skip
    return rt.execute(source), rt


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Library:
    folder = tmp_path_factory.mktemp("gwvalue")
    return Library(build_value_library(folder, (SHIM,)))


# ---- inputs ----

HAND_BODIES = [
    b'{}', b' {} ', b'\t{\r\n}\n', b'{"a":1}', b'{"a":1,"a":2}', b'{"a":{"b":1,"b":2}}',
    b'{"a":[{"x":1},{"x":2,"x":3}]}', b'{"a":1} x', b'{"a":1}}', b'{"a":1,}', b'{,}', b'{"a"}',
    b'{"a":}', b'{"a" 1}', b'{a:1}', b"{'a':1}", b'[]', b'[1]', b'"x"', b'1', b'', b' ',
    b'\xef\xbb\xbf{}', b'{}\x00', b'\x00{}', b'{"a\x00b":1}', b'{"a":"\x00"}', b'{"a":"\x1f"}',
    b'{"a":"\x7f"}', b'{"a":"\t"}', b'{"a":"\\u0000"}', b'{"a":"\\u00e9\\u00E9"}',
    b'{"a":"\\ud83d\\ude00"}', b'{"a":"\\uD83D\\uDE00"}', b'{"a":"\\ud83d"}',
    b'{"a":"\\ude00"}', b'{"a":"\\ud83d\\u0041"}', b'{"a":"\\ud83d\\ud83d"}',
    b'{"a":"\\ud83dx"}', b'{"a":"\\ud83d\\"}', b'{"a":"\\u12"}', b'{"a":"\\u12g4"}',
    b'{"a":"\\x"}', b'{"a":"\\', b'{"a":"abc', b'{"a":"\\/\\b\\f\\n\\r\\t\\"\\\\"}',
    b'{"a":-0}', b'{"a":0}', b'{"a":-}', b'{"a":01}', b'{"a":-01}', b'{"a":1.}', b'{"a":.1}',
    b'{"a":1e}', b'{"a":1e+}', b'{"a":1E+2}', b'{"a":1e-2}', b'{"a":0.1}', b'{"a":1e400}',
    b'{"a":-1e400}', b'{"a":1e-400}', b'{"a":123456789012345678901234567890}',
    b'{"a":9007199254740993}', b'{"a":0.30000000000000004}', b'{"a":1.5e308}',
    b'{"a":2.2250738585072014e-308}', b'{"a":4.9e-324}', b'{"a":1' + b'0' * 400 + b'}',
    b'{"a":0.' + b'1' * 500 + b'}', b'{"a":1e999999999999}', b'{"a":+1}', b'{"a":0x10}',
    b'{"a":Infinity}', b'{"a":NaN}', b'{"a":tru}', b'{"a":true}', b'{"a":false}',
    b'{"a":null}', b'{"a":nul}', b'{"a":truex}', b'{"a":[1,2,]}', b'{"a":[,]}',
    b'{"a":[1 2]}', b'{"a":[', b'{"a":{', b'{"a":1', b'{"a"', b'{', b'{"":1}',
    b'{"model":"gpt","messages":[{"role":"user","content":"hi"}]}',
]


def nested(depth: int, opener: bytes, closer: bytes) -> bytes:
    return b'{"a":' + opener * depth + closer * depth + b"}"


# the root object is level 1: 63 more levels are allowed, not 64
for d in (62, 63, 64, 65):
    HAND_BODIES += [nested(d, b"[", b"]"), b'{"a":' + b'{"k":' * d + b"1" + b"}" * d + b"}",
                    b'{"a":' + b"[{" * (d // 2) + b"}]" * (d // 2) + b"}"]


class Gen:
    """Seeded random JSON text in json.lua's grammar and around it."""

    KEYS = ["a", "b", "model", "messages", "role", "content", "type", "text", "name", "id",
            "tool_call_id", "call_id", "prompt", "k\u00e9y", "", "x\\\"y"]  # fmt: skip
    NUMBERS = ["0", "-0", "1", "-1", "0.1", "1E+2", "1e-2", "1e400", "-1e400", "1e-400",
               "2.5", "123456789012345", "1234567890123456", "99999999999999999999",
               "-123.456e7", "6.02e23", "1.7976931348623157e308", "5e-324", "0.5e1"]  # fmt: skip

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def ws(self) -> str:
        return "".join(self.r.choice(" \t\r\n") for _ in range(self.r.choice((0, 0, 0, 1, 2))))

    def number(self) -> str:
        r = self.r
        pick = r.random()
        if pick < 0.4:
            return r.choice(self.NUMBERS)
        if pick < 0.6:
            return str(r.randint(-10**18, 10**18))
        if pick < 0.8:
            return repr(r.uniform(-1e6, 1e6))
        digits = "".join(r.choice("0123456789") for _ in range(r.randint(1, 40)))
        text = r.choice(("", "-")) + str(int(digits))
        if r.random() < 0.5:
            text += "." + "".join(r.choice("0123456789") for _ in range(r.randint(1, 30)))
        if r.random() < 0.5:
            text += r.choice("eE") + r.choice(("", "+", "-")) + str(r.randint(0, 400))
        return text

    def char(self) -> str:
        r = self.r
        pick = r.random()
        if pick < 0.55:
            return r.choice("abcdefghij klmnop XYZ 0123456789.,@-+()")
        if pick < 0.65:
            return r.choice(["\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t"])
        if pick < 0.75:
            cp = r.randint(0, 0xFFFF)
            digits = f"{cp:04x}"
            return "\\u" + (digits.upper() if r.random() < 0.3 else digits)
        if pick < 0.8:
            hi, lo = r.randint(0xD800, 0xDBFF), r.randint(0xDC00, 0xDFFF)
            return f"\\u{hi:04x}\\u{lo:04X}"
        if pick < 0.85:
            return r.choice([f"\\u{r.randint(0xD800, 0xDBFF):04x}",
                             f"\\u{r.randint(0xDC00, 0xDFFF):04x}",
                             f"\\u{r.randint(0xD800, 0xDBFF):04x}\\u0041"])  # fmt: skip
        if pick < 0.95:
            return r.choice("\u00e9\u4e2d\U0001f600\u2028\x7f")
        return r.choice(["\\u0000", "\\u001f", "\\u007f"])

    def string(self) -> str:
        return '"' + "".join(self.char() for _ in range(self.r.randint(0, 12))) + '"'

    def key(self) -> str:
        k = self.r.choice(self.KEYS)
        return json.dumps(k) if self.r.random() < 0.8 else self.string()

    def value(self, depth: int) -> str:
        r = self.r
        pick = r.random()
        if depth > 4 or pick < 0.15:
            return r.choice(["null", "true", "false"])
        if pick < 0.35:
            return self.number()
        if pick < 0.65:
            return self.string()
        if pick < 0.8:
            items = [self.value(depth + 1) for _ in range(r.randint(0, 4))]
            return "[" + self.ws() + ("," + self.ws()).join(items) + self.ws() + "]"
        return self.object(depth + 1)

    def object(self, depth: int = 0) -> str:
        members = [self.ws() + self.key() + self.ws() + ":" + self.ws() + self.value(depth)
                   + self.ws() for _ in range(self.r.randint(0, 5))]  # fmt: skip
        return "{" + ",".join(members) + self.ws() + "}"

    def body(self) -> bytes:
        return (self.ws() + self.object() + self.ws()).encode("utf-8", "surrogatepass")

    def mutate(self, body: bytes) -> bytes:
        r = self.r
        data = bytearray(body)
        for _ in range(r.randint(1, 3)):
            what = r.random()
            at = r.randint(0, len(data))
            piece = r.choice([b'"', b"\\", b"{", b"}", b"[", b"]", b",", b":", b"\x00", b"\x1f",
                              b"e", b"-", b"0", b" ", b"\xef\xbb\xbf", b"\\u", b"\xff", b"."])
            if what < 0.35:
                data[at:at] = piece
            elif what < 0.7 and data:
                del data[min(at, len(data) - 1)]
            elif what < 0.85 and data:
                data[min(at, len(data) - 1):min(at, len(data) - 1) + 1] = piece
            else:
                del data[at:]
        return bytes(data)


def bodies(seed: int, count: int) -> list[bytes]:
    g = Gen(seed)
    out = []
    for _ in range(count):
        body = g.body()
        out.append(body)
        out.append(g.mutate(body))
    return out


# ---- decode ----


def test_decode_agrees_with_json_lua_on_hand_picked_bodies(lib: Library, lua: Any) -> None:
    h, _ = lua
    refused = 0
    for body in HAND_BODIES:
        expected = h.decode(body)
        assert lib.decode(body) == expected, body
        refused += expected.startswith(b"E")
    assert 0 < refused < len(HAND_BODIES)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_decode_agrees_with_json_lua_on_random_and_mutated_bodies(lib: Library, lua: Any,
                                                                  seed: int) -> None:
    h, _ = lua
    accepted = refused = duplicates = 0
    for body in bodies(seed, 700):
        expected = h.decode(body)
        assert lib.decode(body) == expected, body
        accepted += expected.startswith(b"O")
        refused += expected.startswith(b"E")
        duplicates += expected.startswith(b"O0")
    assert accepted > 300 and refused > 300 and duplicates > 20, (accepted, refused, duplicates)


def test_members_keep_their_first_place_and_their_last_value(lib: Library) -> None:
    body = b'{"b":1,"a":{"y":1,"x":2,"y":3},"b":[true],"c":null}'
    out = lib.decode(body, sorted_keys=False)
    assert out.endswith(b"|{s1:b[t]s1:a{s1:yd3;s1:xd2;}s1:cn}")
    assert out.startswith(b"O0s1:b 1 6;s1:a 7 30;s1:b 31 41;s1:c 42 50;|")
    assert body[7:30] == b'"a":{"y":1,"x":2,"y":3}'


def test_a_body_past_the_arena_bound_is_refused_cleanly(lib: Library) -> None:
    body = b'{"a":[' + b",".join([b"1"] * 200_000) + b"]}"
    for length, decodes in ((0, False), (len(body), True)):
        doc = lib.lib.gv_doc_new(length)
        spans, count = ctypes.POINTER(Span)(), SIZE()
        unique, error = ctypes.c_bool(), ctypes.c_char_p()
        root = lib.lib.gv_decode_members(doc, body, len(body), ctypes.byref(spans),
                                         ctypes.byref(count), ctypes.byref(unique),
                                         ctypes.byref(error))  # fmt: skip
        assert bool(root) is decodes
        assert lib.lib.gv_doc_failed(doc) is not decodes
        if not decodes:
            assert error.value == b"the body takes more memory to decode than its bound"
        else:
            assert root.contents.members[0].value.contents.item_count == 200_000
        lib.lib.gv_doc_free(doc)


# ---- encode ----


@pytest.mark.parametrize("seed", [4, 5])
def test_encode_is_json_encode_byte_for_byte(lib: Library, lua: Any, seed: int) -> None:
    h, _ = lua
    encoded = failed = 0
    for body in [*HAND_BODIES, *bodies(seed, 600)]:
        for first in (None, b"model", b"a"):
            expected = h.encode(body, first)
            status, out = lib.on_body(body, 0, first)
            if expected is None:
                assert status == -1, body
            elif expected is False:  # json.encode raised: a number it cannot write
                assert status == 0, body
                failed += 1
            else:
                assert (status, out) == (1, expected), body
                encoded += 1
    assert encoded > 500 and failed > 5


def test_encode_string_is_jsonstring_encode(lib: Library, lua: Any) -> None:
    h, _ = lua
    r = random.Random(6)
    texts = [bytes(range(256)), b"", b'"\\/', "\u00e9\U0001f600".encode()]
    texts += [bytes(r.randrange(256) for _ in range(r.randint(0, 40))) for _ in range(500)]
    for text in texts:
        assert lib.on_text(text, 3)[1] == h.encode_string(text), text


def test_mutations_encode_as_the_lua_prompt_injection_does(lib: Library, lua: Any) -> None:
    """gv_get, gv_set, gv_remove, gv_new_* and gv_array_insert, as gateway.lua injects a
    prompt (the system message first), drops prompt_variables and names the upstream model."""
    h, _ = lua
    c = lib.lib
    cases = [
        b'{"model":"m","messages":[{"role":"user","content":"hi"}],"prompt_variables":{"a":"b"}}',
        b'{"model":"m","messages":"not an array","temperature":0.5}',
        b'{"messages":[],"model":"m","model":"n"}',
        b'{"model":"m"}',
    ]
    prompt = b"You are \x00 helpful.\n\"Quoted\" \xe2\x82\xac"
    for body in cases:
        doc = c.gv_doc_new(len(body) + len(prompt))
        spans, count = ctypes.POINTER(Span)(), SIZE()
        unique, error = ctypes.c_bool(), ctypes.c_char_p()
        root = c.gv_decode_members(doc, body, len(body), ctypes.byref(spans), ctypes.byref(count),
                                   ctypes.byref(unique), ctypes.byref(error))  # fmt: skip
        assert root
        had = bool(c.gv_get(root, b"prompt_variables", 16))
        assert c.gv_remove(root, b"prompt_variables", 16) is had
        assert not c.gv_get(root, b"prompt_variables", 16)
        messages = c.gv_get(root, b"messages", 8)
        if not messages or messages.contents.type != 5:
            messages = c.gv_new_array(doc)
            assert c.gv_set(doc, root, b"messages", 8, messages)
        system = c.gv_new_object(doc)
        buffer = ctypes.create_string_buffer(prompt, len(prompt))
        content = c.gv_new_string(doc, buffer, len(prompt))
        ctypes.memset(buffer, ord("x"), len(prompt))  # the value holds its own copy
        assert c.gv_set(doc, system, b"role", 4, c.gv_new_string(doc, b"system", 6))
        assert c.gv_set(doc, system, b"content", 7, content)
        assert c.gv_array_insert(doc, messages, 0, system)
        assert not c.gv_array_insert(doc, messages, messages.contents.item_count + 1, system)
        assert c.gv_set(doc, root, b"model", 5, c.gv_new_string(doc, b"upstream-model", 14))
        out = Out()
        assert c.gv_encode(root, b"model", ctypes.byref(out))
        assert ctypes.string_at(out.ptr, out.length) == h.inject(body, prompt), body
        c.gw_out_free(ctypes.byref(out))
        c.gv_doc_free(doc)


# ---- text ----


@pytest.mark.parametrize("seed", [7, 8])
def test_guard_text_has_the_lua_pieces(lib: Library, lua: Any, seed: int) -> None:
    """Lua's pairs() order is unspecified; the library joins the same pieces in source order."""
    h, _ = lua
    compared = 0
    for body in [*HAND_BODIES, *bodies(seed, 600)]:
        status, out = lib.on_body(body, 2)
        if status == -1:
            continue
        expected = h.guard(body)
        assert sorted(out.split(b"\n")) == sorted(expected.split(b"\n")), body
        compared += expected != b""
    assert compared > 300


def test_guard_text_is_in_source_order(lib: Library) -> None:
    body = (b'{"model":"m","z":"first","messages":[{"role":"user","content":[{"type":"text",'
            b'"text":"hi"}]},{"name":"f","arguments":"{}"}],"n":2,"prompt":"p"}')  # fmt: skip
    assert lib.on_body(body, 2)[1] == (b"first\nrole\ncontent\ntype\ntext\nhi\nname\nf\n"
                                       b"arguments\n{}\np")  # fmt: skip


def random_utf8ish(r: random.Random, length: int) -> bytes:
    pieces = [b"a", b"Z", b" ", b"\x00", b"\x7f", b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80",
              b"\xc0\xaf", b"\xc2", b"\xe0\x80\x80", b"\xe0\xa0\x80", b"\xed\xa0\x80",
              b"\xed\x9f\xbf", b"\xf0\x8f\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf4\x8f\xbf\xbf",
              b"\xf5\x80\x80\x80", b"\x80", b"\xbf", b"\xff", b"\xe2\x82", b"\xf0\x9f\x98"]
    out = b""
    while len(out) < length:
        out += r.choice(pieces)
    return out


def test_carried_text_and_shown_are_text_lua(lib: Library, lua: Any) -> None:
    h, _ = lua
    r = random.Random(9)
    texts = [b"", b"plain", b"\x00", b"\xff"]
    texts += [random_utf8ish(r, r.choice((0, 5, 40, 250, 255, 256, 257, 258, 300, 600)))
              for _ in range(1500)]  # fmt: skip
    texts += [b"a" * n + b"\xe2\x82\xac" + b"b" * 10 for n in range(250, 258)]
    replaced = 0
    for text in texts:
        carried = lib.on_text(text, 1)[1]
        assert carried == h.carried(text), text
        assert lib.on_text(text, 2)[1] == h.shown(text), text
        replaced += carried != text
    assert replaced > 500


# ---- redaction ----


def luhn_digits(r: random.Random, length: int, valid: bool) -> str:
    digits = [r.randint(0, 9) for _ in range(length - 1)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    check = (10 - total % 10) % 10
    if not valid:
        check = (check + r.randint(1, 9)) % 10
    return "".join(map(str, digits)) + str(check)


def grouped(r: random.Random, digits: str) -> str:
    sep = r.choice(["", " ", "-", ".", "  ", " - "])
    size = r.choice([4, 3, 5])
    return sep.join(digits[i:i + size] for i in range(0, len(digits), size))


def pii_text(r: random.Random) -> bytes:
    parts = []
    for _ in range(r.randint(1, 8)):
        pick = r.random()
        if pick < 0.2:
            parts.append(r.choice([
                "john.doe+x@mail.example.com", "a@b.c", "x@y", "@foo.com", "a@-b.c-",
                "user@host.", "a@b..c", "first.last@sub-domain.co.uk.", "a@b.c@d.e", "%@x.y",
                "name@domain.com.", "a.b@c-d.e-f.g1", "me@@x.com", "x@y.z\u00e9",
                "contact:" + "".join(r.choice("abc.+_-%") for _ in range(5)) + "@ex.org"]))
        elif pick < 0.35:
            parts.append(r.choice(["123-45-6789", "0123-45-6789", "123-45-67890", "123-456-789",
                                   "a123-45-6789", "123-45-6789b"]))
        elif pick < 0.55:
            length = r.randint(12, 20)
            parts.append(grouped(r, luhn_digits(r, length, r.random() < 0.7)))
        elif pick < 0.75:
            parts.append(r.choice([
                "+1 (555) 123-4567", "555.123.4567", "(555)123-4567", "+44 20 7946 0958",
                "5551234567", "555-1234", "+1-800-FLOWERS", "+49\t30\n1234567",
                "1 2 3 4 5 6 7 8 9 0",
                "12345678901234567", "0" * r.randint(8, 22), "+" + str(r.randint(10**9, 10**14)),
                "x" + str(r.randint(10**9, 10**12)), str(r.randint(10**9, 10**12)) + "y",
                "1(2)3.4-5 6\x0b7\x0c8\r9 0", "++15551234567", "a+15551234567"]))
        else:
            parts.append(r.choice(["hello", "card", "\u00e9t\u00e9", "\x00", "[x]", "tel:", "ssn",
                                   "(", ")", "+", "-", ".", "@", "\t", "a1", "9z"]))
    seps = [" ", "", ", ", "\n", "-", "(", "+", "x", "."]
    return "".join(p + r.choice(seps) for p in parts).encode()


def test_redact_string_is_redact_lua(lib: Library, lua: Any) -> None:
    h, _ = lua
    r = random.Random(10)
    changed = {kind: 0 for kind in KINDS}
    for _ in range(3000):
        text = pii_text(r)
        bits = r.choice([15, 15, r.randint(1, 15)])
        lua_changed, expected = h.redact_string(text, bits)
        status, out = lib.on_text(text, 0, bits)
        assert (out, bool(status)) == (expected, lua_changed), (text, bits)
        for kind, bit in KINDS.items():
            if bits & bit and b"[REDACTED_" + kind.upper().replace("-", "_").encode() in out:
                changed[kind] += 1
    assert min(changed.values()) > 100, changed


@pytest.mark.parametrize("seed", [11, 12])
def test_redact_table_is_redact_lua(lib: Library, lua: Any, seed: int) -> None:
    h, _ = lua
    r = random.Random(seed)
    g = Gen(seed)
    changed = 0
    for _ in range(600):
        text = json.dumps(pii_text(r).decode())
        body = g.body()
        # PII under keys that are redacted and under those that are not
        body = (b'{"' + r.choice([b"messages", b"name", b"id", b"prompt", b"model", b"x"])
                + b'":[' + text.encode() + b',{"' + r.choice([b"content", b"call_id", b"role",
                                                              b"text"])  # fmt: skip
                + b'":' + text.encode() + b'}],"rest":' + body + b"}")
        bits = r.randint(1, 15)
        lua_changed, expected = h.redact_table(body, bits)
        status, out = lib.on_body(body, 1, None, bits)
        assert (out, bool(status)) == (expected, lua_changed), (body, bits)
        changed += lua_changed
    assert changed > 100


# ---- usage ----


def usage_value(r: random.Random) -> str:
    def number() -> str:
        if r.random() < 0.7:
            return r.choice(["5", "0", "12.5", "-3", "1e3", "123456789"])
        return r.choice(["null", "false", "true", '"7"', "[]", "{}", "1e400"])
    members = []
    for key in ("prompt_tokens", "input_tokens", "completion_tokens", "output_tokens",
                "total_tokens"):
        if r.random() < 0.6:
            members.append(f'"{key}": {number()}')
    if r.random() < 0.5:
        details = r.choice(['{"cached_tokens": ' + number() + "}", "null", "[]", "3",
                            '{"cached_tokens": 2, "cached_tokens": 4}'])  # fmt: skip
        members.append(f'"prompt_tokens_details": {details}')
    r.shuffle(members)
    return r.choice(["{" + ", ".join(members) + "}", "{" + ", ".join(members) + "}", "null",
                     "[1]", '"usage"', "5", "{" + ", ".join(members)])  # fmt: skip


def reply(r: random.Random) -> bytes:
    u = usage_value(r)
    fake = '"text \\"usage\\": {\\"prompt_tokens\\": 999}"'
    shapes = [
        '{"id":"x","choices":[{"message":{"content":@F@}}],"usage":@U@}',
        '{"usage" : @U@ , "choices":[]}',
        '{"usage":@U@,"usage":@V@}',
        '{"a":{"usage":@U@},"b":1}',
        '{"a":[{"usage":@U@}]}',
        '[{"usage":@U@}]',
        '{"x":"\\\\","usage":@U@}',
        '{"x":"unterminated, "usage":@U@}',
        ' \n{"usage":@U@}\n ',
        '{"usage":@U@} trailing',
        'junk{"usage":@U@}',
        '{"usage":@U@}}',
        '{"usage" @U@}',
        '{"k":"v", "usage":\t@U@\r\n}',
    ]
    text = r.choice(shapes).replace("@F@", fake).replace("@U@", u)
    text = text.replace("@V@", usage_value(r))
    if r.random() < 0.15:
        text = text[: r.randint(0, len(text))]
    return text.encode()


def test_usage_of_is_usage_lua(lib: Library, lua: Any) -> None:
    h, _ = lua
    r = random.Random(13)
    found = 0
    for _ in range(3000):
        text = reply(r)
        expected = h.usage_of(text).decode()
        assert lib.usage_of(text) == expected, text
        found += expected != "none"
    assert 300 < found < 2500, found


def stream(r: random.Random) -> bytes:
    lines = []
    for _ in range(r.randint(1, 6)):
        pick = r.random()
        if pick < 0.25:
            p, c, cached = r.randint(0, 999), r.randint(0, 999), r.randint(0, 9)
            lines.append(f'data: {{"id":"c","choices":[],"usage":{{"prompt_tokens":{p},'
                         f'"completion_tokens":{c},"prompt_tokens_details":'
                         f'{{"cached_tokens":{cached}}}}}}}')  # fmt: skip
        elif pick < 0.4:
            lines.append('data: {"choices":[{"delta":{"content":"a\\"usage\\""}}]}')
        elif pick < 0.75:
            lines.append(r.choice(["data: ", "data:", "data:  \t"])
                         + reply(r).decode() + r.choice(["", " ", "\r", " \r"]))  # fmt: skip
        else:
            lines.append(r.choice([": comment", "event: x", "data: [DONE]", "",
                                   ' data: {"usage":{"prompt_tokens":1}}']))  # fmt: skip
    text = "\n".join(lines) + r.choice(["\n\n", "\n", "", '\ndata: {"usage":{"prompt_tokens":9'])
    return text.encode()


def test_usage_of_streams_cut_at_every_byte_is_usage_lua(lib: Library, lua: Any) -> None:
    h, rt = lua
    r = random.Random(14)
    found = 0
    for _ in range(40):
        data = stream(r)
        whole = h.usage_stream(rt.table_from([data])).decode()
        assert lib.usage_stream(data, []) == whole, data
        found += whole != "none"
        for cut in range(len(data) + 1):
            assert lib.usage_stream(data, [cut]) == whole, (data, cut)
        for _ in range(20):
            cuts = sorted(r.randint(0, len(data)) for _ in range(r.randint(2, 8)))
            chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
            expected = h.usage_stream(rt.table_from(chunks)).decode()
            assert lib.usage_stream(data, cuts) == expected, (data, cuts)
    assert found > 10


def test_a_stream_line_past_one_mib_is_dropped_as_the_lua_drops_it(lib: Library,
                                                                   lua: Any) -> None:
    h, rt = lua
    event = b'data: {"usage":{"prompt_tokens":3,"completion_tokens":4}}\n'
    for size in (1 << 20, (1 << 20) + 1, (1 << 20) + 50):
        data = b"x" * size + event
        cuts = [size, size + 5]
        chunks = [data[:size], data[size:size + 5], data[size + 5:]]
        expected = h.usage_stream(rt.table_from(chunks)).decode()
        assert lib.usage_stream(data, cuts) == expected
        # one byte past the bound: the long line was dropped and the event read
        assert (expected != "none") is (size > 1 << 20)



def test_a_number_luajit_reads_as_nil(lib: Library, lua: Any) -> None:
    """tonumber gives nil for an exponent of 2^20 or more: an object's member disappears, as in
    the Lua (a repeat of it is then no repeat); in an array, where the Lua leaves a hole of
    undefined length, the library refuses the body (the one difference, gw_value.h)."""
    h, _ = lua
    for body in (b'{"a":1e1048576,"b":1}', b'{"a":1,"a":1e-1048576,"a":2}',
                 b'{"a":{"x":0e9999999,"x":1}}', b'{"a":1e1048575}'):  # fmt: skip
        assert lib.decode(body) == h.decode(body), body
    assert lib.decode(b'{"a":1e1048576}') == b"O1s1:a 1 14;|{}"
    assert h.decode(b'{"a":[1,1e1048576,2]}').startswith(b"O1")
    assert lib.decode(b'{"a":[1,1e1048576,2]}') == (
        b"Ea number in an array with an exponent of 2^20 or more")
    # the Lua's own errors come first
    assert lib.decode(b'{"a":[1e1048576 x]}') == h.decode(b'{"a":[1e1048576 x]}') == (
        b"Eexpected ',' or ']'")


def test_a_redaction_that_does_not_fit_leaves_nothing_unredacted(lib: Library) -> None:
    """A string whose redacted form passes the arena's bound is emptied, never forwarded as it
    was, and the doc says it failed (the filter then refuses the request)."""
    c = lib.lib
    c.gv_redact.argtypes, c.gv_redact.restype = [ctypes.c_void_p, VP, ctypes.c_uint], ctypes.c_bool
    text = b"a@b.c " * 70_000  # 420 kB; redacted, 1.2 MB: past the 1 MiB of gv_doc_new(0)
    body = b'{"model":"m","messages":[{"role":"user","content":"' + text + b'"},"x@y.z"]}'
    for length, fits in ((0, False), (len(body), True)):
        doc = c.gv_doc_new(length)
        spans, count = ctypes.POINTER(Span)(), SIZE()
        unique, error = ctypes.c_bool(), ctypes.c_char_p()
        root = c.gv_decode_members(doc, body, len(body), ctypes.byref(spans), ctypes.byref(count),
                                   ctypes.byref(unique), ctypes.byref(error))  # fmt: skip
        assert root and not c.gv_doc_failed(doc)
        assert c.gv_redact(doc, root, 1)
        assert c.gv_doc_failed(doc) is not fits
        messages = c.gv_get(root, b"messages", 8).contents
        content = c.gv_get(messages.items[0], b"content", 7).contents
        redacted = ctypes.string_at(content.string, content.length)
        assert redacted == (b"[REDACTED_EMAIL] " * 70_000 if fits else b"")
        short = messages.items[1].contents  # a small string still fits after
        assert ctypes.string_at(short.string, short.length) == b"[REDACTED_EMAIL]"
        c.gv_doc_free(doc)
