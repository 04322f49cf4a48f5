"""Field types shared by the manifest kinds: names, durations, percentages, secret references."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# A Gateway's name is its Kubernetes Service's name (an RFC 1035 label: it starts with a
# letter), and the prefix of its other objects' names (`<name>-config-clusters` is the longest,
# 79 characters at most, within the 253 a ConfigMap name may have) and a label value (63).
GATEWAY_NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
# A Kubernetes Secret key (IsConfigMapKey): letters, digits, '-', '_' and '.', but not '.' or
# '..' and not starting with '..' (the kubelet's `..data` swap uses those names).
SECRET_KEY_PATTERN = r"^(?:[-_a-zA-Z0-9]|\.[-_a-zA-Z0-9])[-._a-zA-Z0-9]*$"
MODEL_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
PUBLIC_MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"
DURATION_PATTERN = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h)$"
PERCENT_PATTERN = r"^[0-9]+(\.[0-9]+)?%$"

_DURATION_RE = re.compile(DURATION_PATTERN)
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


INVALID = "gatewayctl_invalid"


def invalid(summary: str, hint: str) -> PydanticCustomError:
    """A validator's error with its own hint: the diagnostic shows both as written (the
    summary quotes no input value; give no braces, pydantic formats the text)."""
    return PydanticCustomError(INVALID, summary, {"hint": hint})


class Strict(BaseModel):
    """Base of every manifest model: unknown fields are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


def parse_duration_ms(value: Any) -> int:
    """ "30s" -> 30000. Plain numbers are refused: a unit is always required."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError("a duration is a string with a unit, like 500ms, 30s, 10m or 1h")
    match = _DURATION_RE.match(value.strip())
    if not match:
        raise ValueError(f'"{value}" is not a duration; use a number and ms, s, m or h (e.g. 30s)')
    unit = match.group(2)
    number = float(value.strip()[: -len(unit)])
    return int(round(number * _UNIT_MS[unit]))


def format_duration_ms(ms: int) -> str:
    for unit in ("h", "m", "s"):
        size = _UNIT_MS[unit]
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def parse_percent(value: Any) -> float:
    """ "20%" -> 20.0."""
    if isinstance(value, str) and re.match(PERCENT_PATTERN, value.strip()):
        return float(value.strip()[:-1])
    raise ValueError(f'"{value}" is not a percentage; write it like 20%')


Name = Annotated[
    str,
    Field(pattern=NAME_PATTERN, min_length=1, max_length=63),
]
ModelName = Annotated[
    str,
    Field(pattern=MODEL_NAME_PATTERN, min_length=1, max_length=253),
]
PublicModelName = Annotated[str, Field(pattern=PUBLIC_MODEL_PATTERN, min_length=1, max_length=128)]

DurationMs = Annotated[
    int,
    BeforeValidator(parse_duration_ms),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": ["30s", "10m"]}),
]
Percent = Annotated[
    float,
    BeforeValidator(parse_percent),
    WithJsonSchema({"type": "string", "pattern": PERCENT_PATTERN, "examples": ["20%"]}),
]


class SecretRef(Strict):
    """A key in a Kubernetes Secret (or a file in the local secrets directory)."""

    name: Name
    key: Annotated[str, Field(pattern=SECRET_KEY_PATTERN, min_length=1, max_length=253)]
