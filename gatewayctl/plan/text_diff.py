"""Field diffs of long text in a plan: JSON compared as data, Lua data tables as data.

The rendered Envoy configuration is JSON text in a ConfigMap (or a listener's fields on the
local gateway), and its Lua filters carry the gateway's data as one `local DATA = {...}` line
before their code. A one-line change there used to show as the whole source twice; here JSON
is parsed and compared leaf by leaf (list items by their `name`), a Lua source is split into
its data table (parsed and compared the same way, `DATA.routes.chat: ...`) and its code (a
line diff, only when the code itself changed), and other long text gets a unified diff with
a little context. Pure functions.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from gatewayctl.plan.model import Detail

LUA_DATA = re.compile(r"^local DATA = (.*)$", re.M)
_SHORT = 120


def unified_diff(before: str, after: str, before_label: str, after_label: str,
                 context: int = 3) -> str:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True),
        fromfile=before_label, tofile=after_label, n=context)
    out = []
    for line in lines:
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


def is_long(value: Any) -> bool:
    return isinstance(value, str) and ("\n" in value or len(value) > _SHORT)


# -- Lua data tables (the `to_lua` form: {["k"]=v,...}, {v,...}, "\ddd" escapes) ------------

class _LuaReader:
    def __init__(self, text: str) -> None:
        self.text, self.at = text, 0

    def value(self) -> Any:
        t = self.text
        if t.startswith("{", self.at):
            return self._table()
        if t.startswith('"', self.at):
            return self._string()
        for word, value in (("nil", None), ("true", True), ("false", False)):
            if t.startswith(word, self.at):
                self.at += len(word)
                return value
        m = re.compile(r"-?[0-9][0-9.eE+-]*").match(t, self.at)
        if m is None:
            raise ValueError(f"unexpected Lua at {self.at}")
        self.at = m.end()
        number = m.group()
        return float(number) if any(c in number for c in ".eE") else int(number)

    def _string(self) -> str:
        out = bytearray()
        self.at += 1
        t = self.text
        while t[self.at] != '"':
            if t[self.at] == "\\":
                out.append(int(t[self.at + 1:self.at + 4]))
                self.at += 4
            else:
                out += t[self.at].encode()
                self.at += 1
        self.at += 1
        return out.decode("utf-8", errors="replace")

    def _table(self) -> Any:
        self.at += 1
        keyed: dict[str, Any] = {}
        items: list[Any] = []
        while self.text[self.at] != "}":
            if self.text.startswith("[", self.at):
                self.at += 1
                key = self._string()
                self.at += 2  # ]=
                keyed[key] = self.value()
            else:
                items.append(self.value())
            if self.text[self.at] == ",":
                self.at += 1
        self.at += 1
        return keyed if keyed or not items else items


def split_lua(source: str) -> tuple[Any, str] | None:
    """(the parsed DATA table, the code without it), or None if `source` has no such table."""
    m = LUA_DATA.search(source)
    if m is None:
        return None
    try:
        reader = _LuaReader(m.group(1))
        data = reader.value()
    except (ValueError, IndexError):
        return None
    if reader.at != len(m.group(1)):
        return None
    return data, source[:m.start()] + "local DATA = ...\n" + source[m.end() + 1:]


# -- structured comparison --------------------------------------------------------------------

def _key(items: list[Any]) -> str | None:
    if items and all(isinstance(i, dict) and isinstance(i.get("name"), str) for i in items):
        names = [i["name"] for i in items]
        if len(set(names)) == len(names):
            return "name"
    return None


def _shown(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
        return text if len(text) <= 400 else f"{text[:400]}… ({len(text):,} characters)"
    return value


# Envoy's wrappers, left out of the paths shown: `typed_config` of every extension and the
# `default_source_code.inline_string` of a Lua filter say nothing a reviewer needs.
_SILENT = frozenset({"typed_config", "default_source_code", "inline_string"})


def compare_data(before: Any, after: Any, path: str, out: list[Detail]) -> None:
    """One Detail per changed leaf; list items matched by `name` where every item has one."""
    if before == after:
        return
    if isinstance(before, dict) and isinstance(after, dict):
        for k in sorted(set(before) | set(after), key=str):
            if k in _SILENT:
                sub = path
            elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(k)):
                sub = f"{path}.{k}"
            else:
                sub = f"{path}[{json.dumps(str(k))}]"
            compare_data(before.get(k), after.get(k), sub, out)
        return
    if isinstance(before, list) and isinstance(after, list):
        if _key(before) and _key(after):
            old = {i["name"]: i for i in before}
            new = {i["name"]: i for i in after}
            for name in [*old, *(n for n in new if n not in old)]:
                compare_data(old.get(name), new.get(name), f"{path}[{name}]", out)
            return
        if len(before) == len(after):
            for i, (b, a) in enumerate(zip(before, after, strict=True)):
                compare_data(b, a, f"{path}[{i}]", out)
            return
    if isinstance(before, str) and isinstance(after, str):
        lua = split_lua(before), split_lua(after)
        if lua[0] is not None and lua[1] is not None:
            compare_data(lua[0][0], lua[1][0], f"{path} (Lua) DATA", out)
            if lua[0][1] != lua[1][1]:
                out.append(_text_detail(f"{path} (Lua code)", lua[0][1], lua[1][1]))
            return
        if is_long(before) or is_long(after):
            out.append(_text_detail(path, before, after))
            return
    out.append(Detail(path, _shown(before), _shown(after)))


def _text_detail(field: str, before: str, after: str) -> Detail:
    diff = unified_diff(before, after, f"{field} (live)", f"{field} (planned)", context=2)
    added = sum(1 for line in diff.splitlines() if line[:1] == "+" and line[:3] != "+++")
    removed = sum(1 for line in diff.splitlines() if line[:1] == "-" and line[:3] != "---")
    return Detail(field, None, None, f"text: +{added} -{removed} lines", diff)


def text_details(field: str, before: str | None, after: str | None) -> list[Detail]:
    """The changes between two long texts: as data when both are JSON, else as lines."""
    try:
        old = json.loads(before) if before is not None else None
        new = json.loads(after) if after is not None else None
    except ValueError:
        old = new = None
    out: list[Detail] = []
    if isinstance(old, (dict, list)) and isinstance(new, (dict, list)):
        compare_data(old, new, field, out)
    elif before is not None and after is not None:
        compare_data(before, after, field, out)
    else:
        out.append(_text_detail(field, before or "", after or ""))
    return out
