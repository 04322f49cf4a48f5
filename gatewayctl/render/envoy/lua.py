"""Generated Lua: the data tables and the filter sources assembled from the shipped files.

Manifest data (names, prompt texts, file paths) reaches Lua only through `to_lua`, which
writes every string as a double-quoted literal with each byte outside printable ASCII, and
every quote and backslash, as a decimal escape. Nothing from a manifest can end a literal or
add code, whatever it contains (quotes, `]]`, newlines, NUL, non-ASCII).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

_PLAIN = frozenset(range(0x20, 0x7F)) - {ord('"'), ord("\\")}


def lua_string(text: str) -> str:
    out = ['"']
    for b in text.encode("utf-8"):
        out.append(chr(b) if b in _PLAIN else f"\\{b:03d}")
    out.append('"')
    return "".join(out)


def to_lua(value: Any) -> str:
    """A Lua expression for value: dicts (sorted keys), lists, strings, numbers, booleans."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write {value!r} to Lua")
        return repr(value)
    if isinstance(value, str):
        return lua_string(value)
    if isinstance(value, Mapping):
        items = [
            f"[{lua_string(str(k))}]={to_lua(v)}"
            for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))
            if v is not None
        ]
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "{" + ",".join(to_lua(v) for v in value) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to Lua")


def _long_bracket(text: str, at: int) -> int | None:
    """The level of a long bracket `[==[` opening at `at`, or None."""
    i = at + 1
    while i < len(text) and text[i] == "=":
        i += 1
    return i - at - 1 if i < len(text) and text[i] == "[" else None


def _long_end(text: str, at: int, level: int, what: str) -> int:
    """The index after the `]==]` of `level` closing what opened before `at`."""
    close = "]" + "=" * level + "]"
    end = text.find(close, at)
    if end < 0:
        raise ValueError(f"unfinished long {what}")
    return end + len(close)


def _quoted_end(text: str, at: int) -> int:
    """The index after the quoted string opening at `at` (a backslash escapes any byte)."""
    quote, i = text[at], at + 1
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
        elif c == quote:
            return i + 1
        elif c == "\n":
            break
        else:
            i += 1
    raise ValueError("unfinished string")


def strip_lua(text: str) -> str:
    """Lua source without its comments, indentation and blank lines; every string literal
    (quoted, or a long bracket `[[...]]` over several lines) kept byte for byte.

    A small scanner of Lua's lexical rules finds the literals and comments first, so `--`
    inside a string is not a comment and a multi-line literal keeps its lines and spaces.
    """
    code: list[str] = []
    literals: list[str] = []
    i = start = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "-" and text.startswith("--", i):
            code.append(text[start:i])
            level = _long_bracket(text, i + 2) if text.startswith("[", i + 2) else None
            if level is not None:
                i = _long_end(text, i + 4 + level, level, "comment")
                code.append(" ")
            else:
                eol = text.find("\n", i)
                i = n if eol < 0 else eol
            start = i
        elif c in "\"'" or (c == "[" and _long_bracket(text, i) is not None):
            if c == "[":
                level = _long_bracket(text, i) or 0
                end = _long_end(text, i + 2 + level, level, "string")
            else:
                end = _quoted_end(text, i)
            # a literal stands in the code as a marker no Lua source contains (NUL)
            code.append(text[start:i] + f"\0{len(literals)}\0")
            literals.append(text[i:end])
            i = start = end
        else:
            i += 1
    code.append(text[start:])
    lines = (line.strip() for line in "".join(code).splitlines())
    kept = "\n".join(line for line in lines if line) + "\n"
    return _MARKER.sub(lambda m: literals[int(m.group(1))], kept)


_MARKER = re.compile("\0([0-9]+)\0")


@cache
def shipped_source(name: str) -> str:
    """A Lua file shipped in gatewayctl/render/envoy/lua/, as the filters carry it
    (strip_lua: comments and indentation only cost config bytes)."""
    text = (resources.files(__package__) / "lua" / name).read_text(encoding="utf-8")
    if "\0" in text:
        raise ValueError(f"{name} contains NUL")
    return strip_lua(text)


def module_source(name: str) -> str:
    """The expression that evaluates a shipped module file (it ends in `return <value>`)."""
    return "(function()\n" + shipped_source(name) + "end)()"


def _module(variable: str, name: str) -> str:
    """A shipped module, bound to a local of the filter's chunk."""
    return f"local {variable} = " + module_source(name) + "\n"


def names_source() -> str:
    """`local NAMES = {...}`: every header, metadata namespace and key the Lua uses, from
    names.py (LUA_NAMES). Each filter starts with it."""
    from gatewayctl.render.envoy.names import LUA_NAMES

    return "local NAMES = " + to_lua(LUA_NAMES) + "\n"


Modules = tuple[tuple[str, str], ...]

# The OpenAI request reader, the reply builder, the stream readers and one module per native
# API (translate.py): bound, in this order, into the filters that translate or check requests.
NATIVE_MODULES: Modules = (
    ("chat", "openai_chat.lua"),
    ("reply", "openai_reply.lua"),
    ("sse", "sse.lua"),
    ("eventstream", "eventstream.lua"),
    ("anthropic", "anthropic.lua"),
    ("bedrock", "bedrock.lua"),
    ("gemini", "gemini.lua"),
)

# The body filter's own modules (gateway.lua's parts), bound after the secret files.
GATEWAY_MODULES: Modules = (
    ("decide_access", "access.lua"),
    ("over_limit", "ratelimit.lua"),
    ("texts", "text.lua"),
    ("redact", "redact.lua"),
    ("prompts", "prompts.lua"),
    ("usage", "usage.lua"),
    ("tokens", "tokens.lua"),
)
JSON_STRING: Modules = (("jsonstring", "jsonstring.lua"),)
JSON: Modules = (*JSON_STRING, ("json", "json.lua"))
SECRETS: Modules = (("secrets", "secrets.lua"),)
TARGET: Modules = (("target", "target.lua"),)


def native_params_source() -> str:
    """`local NATIVE_PARAMS = {...}`: what each native API refuses of the sampling parameters
    (native_params.py, the table explain reads too), bound before the translation modules."""
    from gatewayctl.render.envoy.native_params import lua_data

    return "local NATIVE_PARAMS = " + to_lua(lua_data()) + "\n"


def assemble(data: Mapping[str, Any], modules: Modules, file: str, *,
             json: Modules = ()) -> str:
    """One filter's source: the names, the JSON modules it needs (`json`), the data table,
    (with the translation modules: NATIVE_PARAMS), the modules in order, then the filter's own
    file."""
    native = any(variable == "chat" for variable, _ in modules)
    return (
        names_source()
        + "".join(_module(variable, name) for variable, name in json)
        + "local DATA = "
        + to_lua(data)
        + "\n"
        + (native_params_source() if native else "")
        + "".join(_module(variable, name) for variable, name in modules)
        + shipped_source(file)
    )


# The response cache's key builder (cache.py), bound into the body filter of gateways with a cache.
CACHE_REQUEST: Modules = (("cache_request", "cache_request.lua"),)
# The output guardrails (after redact and usage, which it uses; the automaton walks and the
# stream events' skim first): only in gateways with a route that has outputGuardrails.
OUTGUARD: Modules = (("outguard_walk", "outguard_walk.lua"),
                     ("outguard_event", "outguard_event.lua"), ("outguard", "outguard.lua"))


def gateway_source(data: Mapping[str, Any], native: bool = False, cache: bool = False,
                   outguard: bool = False) -> str:
    """The downstream filter: its modules (with native providers also the translation
    modules, to check requests; with a response cache its key builder; with output
    guardrails outguard.lua), then gateway.lua."""
    modules = (SECRETS + GATEWAY_MODULES + (NATIVE_MODULES if native else ())
               + (CACHE_REQUEST if cache else ()) + (OUTGUARD if outguard else ()))
    return assemble(data, modules, "gateway.lua", json=JSON)


def auth_source(data: Mapping[str, Any]) -> str:
    """The auth filter (headers only, no JSON): the secret files (consumer keys), the JWT
    principal reader on a gateway with JWT policies, then auth.lua."""
    jwt: Modules = (("jwt_principal", "jwt.lua"),) if data.get("jwt") is not None else ()
    return assemble(data, SECRETS + jwt, "auth.lua")


def upstream_source(data: Mapping[str, Any]) -> str:
    """The shared upstream filter (router-level): the JSON string encoder and scanner (the
    model splice needs no more of JSON), the secret files, the attempt's target, upstream.lua."""
    return assemble(data, SECRETS + TARGET, "upstream.lua", json=JSON_STRING)


def translate_source(data: Mapping[str, Any]) -> str:
    """The translating upstream filter (routes with a native provider): the secret files, the
    attempt's target, the translation modules, translate.lua."""
    return assemble(data, SECRETS + TARGET + NATIVE_MODULES, "translate.lua", json=JSON)


def lua_filter(name: str, source: str) -> dict[str, Any]:
    from gatewayctl.render.envoy.names import LUA_TYPE

    return {
        "name": name,
        "typed_config": {"@type": LUA_TYPE, "default_source_code": {"inline_string": source}},
    }
