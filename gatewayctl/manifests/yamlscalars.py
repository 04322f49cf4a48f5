"""YAML 1.2 core-schema resolution of plain scalars: only true/false are booleans, so `on`,
`yes` and `no` stay strings; dates stay strings until a model field parses them."""

from __future__ import annotations

import math
import re
from typing import Any

_INT_RE = re.compile(r"^[-+]?(0|[1-9][0-9_]*)$")
_OCT_RE = re.compile(r"^0o[0-7]+$")
_HEX_RE = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT_RE = re.compile(r"^[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})
_INF = frozenset({".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"})
_NINF = frozenset({"-.inf", "-.Inf", "-.INF"})
_NAN = frozenset({".nan", ".NaN", ".NAN"})


def resolve_scalar(value: str, plain: bool) -> Any:
    if not plain:
        return value
    if value in _NULLS:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    if _INT_RE.match(value):
        return int(value.replace("_", ""))
    if _OCT_RE.match(value):
        return int(value[2:], 8)
    if _HEX_RE.match(value):
        return int(value[2:], 16)
    if _FLOAT_RE.match(value) and any(c.isdigit() for c in value):
        return float(value.replace("_", ""))
    if value in _INF:
        return math.inf
    if value in _NINF:
        return -math.inf
    if value in _NAN:
        return math.nan
    return value
