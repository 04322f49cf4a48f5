"""Generated Lua: the data tables and the filter sources assembled from the shipped files.

Manifest data (names, prompt texts, file paths) reaches Lua only through `to_lua`, which
writes every string as a double-quoted literal with each byte outside printable ASCII, and
every quote and backslash, as a decimal escape. Nothing from a manifest can end a literal or
add code, whatever it contains (quotes, `]]`, newlines, NUL, non-ASCII).
"""

from __future__ import annotations

import math
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


@cache
def shipped_source(name: str) -> str:
    """A Lua file shipped in gatewayctl/render/envoy/lua/, without comment lines and indent.

    Comments and indentation only cost config bytes; the shipped files keep no string
    literal across lines, so dropping them is safe.
    """
    text = (resources.files(__package__) / "lua" / name).read_text(encoding="utf-8")
    lines = (line.strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line and not line.startswith("--")) + "\n"


def _module(variable: str, name: str) -> str:
    """A shipped file that returns a value, bound to a local of the filter's chunk."""
    return f"local {variable} = (function()\n" + shipped_source(name) + "\nend)()\n"


# The OpenAI request reader, the reply builder, the stream readers and one module per native
# API (translate.py): bound, in this order, into the filters that translate or check requests.
NATIVE_MODULES = (
    ("chat", "openai_chat.lua"),
    ("reply", "openai_reply.lua"),
    ("sse", "sse.lua"),
    ("eventstream", "eventstream.lua"),
    ("anthropic", "anthropic.lua"),
    ("bedrock", "bedrock.lua"),
    ("gemini", "gemini.lua"),
)


def _native_modules() -> str:
    return "".join(_module(variable, name) for variable, name in NATIVE_MODULES)


def gateway_source(data: Mapping[str, Any], native: bool = False) -> str:
    """The downstream filter: JSON library, data table, secret reader, (with native providers:
    the translation modules, to check requests), then gateway.lua."""
    return (
        _module("json", "json.lua")
        + "local DATA = "
        + to_lua(data)
        + "\n"
        + _module("read_secret", "secrets.lua")
        + _module("decide_access", "access.lua")
        + _module("charge_limits", "ratelimit.lua")
        + (_native_modules() if native else "")
        + shipped_source("gateway.lua")
    )


def auth_source(data: Mapping[str, Any]) -> str:
    """The auth filter (headers only): data table, the JWT principal reader on a gateway with
    JWT policies, then auth.lua."""
    jwt = _module("jwt_principal", "jwt.lua") if data.get("jwt") is not None else ""
    return "local DATA = " + to_lua(data) + "\n" + jwt + shipped_source("auth.lua")


def upstream_source(data: Mapping[str, Any]) -> str:
    """The shared upstream filter (router-level): data table, secret reader, the attempt's
    target, upstream.lua."""
    return (
        "local DATA = "
        + to_lua(data)
        + "\n"
        + _module("read_secret", "secrets.lua")
        + _module("target", "target.lua")
        + shipped_source("upstream.lua")
    )


def translate_source(data: Mapping[str, Any]) -> str:
    """The translating upstream filter (routes with a native provider): JSON library, data
    table, secret reader, the attempt's target, the translation modules, translate.lua."""
    return (
        _module("json", "json.lua")
        + "local DATA = "
        + to_lua(data)
        + "\n"
        + _module("read_secret", "secrets.lua")
        + _module("target", "target.lua")
        + _native_modules()
        + shipped_source("translate.lua")
    )


def lua_filter(name: str, source: str) -> dict[str, Any]:
    from gatewayctl.render.envoy.names import LUA_TYPE

    return {
        "name": name,
        "typed_config": {"@type": LUA_TYPE, "default_source_code": {"inline_string": source}},
    }
