"""The text a request shows the provider, as the gateway's body filter (gateway.lua) sees it.

`guard_text`: every string the provider will read (message text of every role and part, tool
calls and definitions, object keys below the top level, `prompt`, `input`, the injected
prompt), joined by newlines; not the top-level member names, `model`, or an enumeration word
(ENUM_WORDS) as the value of `role` or `type`. `carried_text`: that text as the RBAC filter's
RE2 receives it (NUL -> space, a byte outside valid UTF-8 -> U+FFFD). `redact`: the
redactors, in the gateway's order and with its exact patterns (Lua patterns over bytes, so
ASCII classes only: `%w`, `%d`, `%s`).
`deny_matches`: the deny patterns that match, with Envoy's wrapping and RE2.

Pure: no I/O. A change to gateway.lua's text handling must be made here too; the differential
test (tests/explain/test_differential.py) compares both on a real Envoy.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from functools import cache
from typing import Any

from gatewayctl.render.envoy.names import ENUM_WORDS as NAMES_ENUM_WORDS

NOT_TEXT = frozenset({"role", "type"})
# The API's enumeration words (names.ENUM_WORDS): under NOT_TEXT keys these are no text.
ENUM_WORDS = frozenset(NAMES_ENUM_WORDS)
NOT_REDACTED = frozenset({"model", "role", "type", "name", "id", "tool_call_id", "call_id"})
REDACT_ORDER = ("email", "ssn", "credit-card", "phone")
MARKS = {
    "email": "[REDACTED_EMAIL]",
    "ssn": "[REDACTED_SSN]",
    "credit-card": "[REDACTED_CREDIT_CARD]",
    "phone": "[REDACTED_PHONE]",
}

_RAW_BYTE = re.compile("[\udc80-\udcff]")


def _add_strings(value: Any, out: list[str]) -> None:
    if isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, (dict, list)):
                _add_strings(item, out)
        return
    for key, item in value.items():
        out.append(key)
        if isinstance(item, str):
            if not (key in NOT_TEXT and item in ENUM_WORDS):
                out.append(item)
        elif isinstance(item, (dict, list)):
            _add_strings(item, out)


def guard_text(request: dict[str, Any]) -> str:
    out: list[str] = []
    for key, value in request.items():
        if key == "model":
            continue
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, (dict, list)):
            _add_strings(value, out)
    return "\n".join(out)


def carried_text(text: str) -> str:
    """What reaches RE2 through dynamic metadata: no NUL, valid UTF-8."""
    return _RAW_BYTE.sub("\ufffd", text.replace("\0", " "))


# -- deny patterns ------------------------------------------------------------------------------

@cache
def _compiled(pattern: str) -> Any:
    import re2

    from gatewayctl.manifests.deny_patterns import search_regex

    options = re2.Options()
    options.log_errors = False
    return re2.compile(search_regex(pattern), options=options)


def deny_matches(patterns: Iterable[str], text: str) -> list[str]:
    """The patterns whose wrapped form fully matches text (RBAC's safe_regex), in order."""
    return [p for p in patterns if _compiled(p).fullmatch(text) is not None]


# -- redaction ----------------------------------------------------------------------------------

_LOCAL_PART = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.%+-_")
_DOMAIN = re.compile(r"[A-Za-z0-9-]+\.[A-Za-z0-9.-]*[A-Za-z0-9]")
_SSN = re.compile(r"(?<![0-9])[0-9]{3}-[0-9]{2}-[0-9]{4}(?![0-9])")
_DIGIT_RUN = re.compile(r"(?<![A-Za-z0-9+])\+?[0-9][0-9\-.\t\n\v\f\r ()]*[0-9](?![A-Za-z0-9])")


def _redact_email(s: str) -> str:
    at = s.find("@")
    if at < 0:
        return s
    out: list[str] = []
    start = 0
    while at >= 0:
        ls = at
        while ls > start and s[ls - 1] in _LOCAL_PART:
            ls -= 1
        if ls < at:
            domain = _DOMAIN.match(s, at + 1)
            if domain is not None:
                out += [s[start:ls], MARKS["email"]]
                start = domain.end()
        at = s.find("@", at + 1)
    if not out:
        return s
    out.append(s[start:])
    return "".join(out)


def _luhn_ok(digits: str) -> bool:
    total, alt = 0, False
    for ch in reversed(digits):
        d = ord(ch) - 48
        if alt:
            d *= 2
            if d > 9:
                d -= 9
        total += d
        alt = not alt
    return total % 10 == 0


def _redact_runs(s: str, low: int, high: int, mark: str, luhn: bool) -> str:
    if not any("0" <= ch <= "9" for ch in s):
        return s

    def replace(match: re.Match[str]) -> str:
        digits = "".join(ch for ch in match.group(0) if "0" <= ch <= "9")
        if low <= len(digits) <= high and (not luhn or _luhn_ok(digits)):
            return mark
        return match.group(0)

    return _DIGIT_RUN.sub(replace, s)


def redact_string(s: str, kinds: frozenset[str]) -> str:
    for kind in REDACT_ORDER:
        if kind not in kinds:
            continue
        if kind == "email":
            s = _redact_email(s)
        elif kind == "ssn":
            s = _SSN.sub(MARKS["ssn"], s)
        elif kind == "credit-card":
            s = _redact_runs(s, 13, 19, MARKS["credit-card"], luhn=True)
        else:
            s = _redact_runs(s, 10, 15, MARKS["phone"], luhn=False)
    return s


def _redact_value(value: Any, kinds: frozenset[str]) -> Any:
    if isinstance(value, str):
        return redact_string(value, kinds)
    if isinstance(value, list):
        return [_redact_value(v, kinds) for v in value]
    if isinstance(value, dict):
        return {k: (v if k in NOT_REDACTED and isinstance(v, str) else _redact_value(v, kinds))
                for k, v in value.items()}
    return value


def redact(request: dict[str, Any], kinds: Iterable[str]) -> dict[str, Any]:
    """A redacted copy of the request (the input is not changed)."""
    wanted = frozenset(kinds)
    if not wanted:
        return copy.deepcopy(request)
    out = _redact_value(request, wanted)
    assert isinstance(out, dict)
    return out


def count_marks(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """How many of each redaction mark the redaction added."""
    old, new = guard_text(before), guard_text(after)
    return {kind: n for kind, mark in MARKS.items() if (n := new.count(mark) - old.count(mark))}
