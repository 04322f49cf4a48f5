"""Field types shared by the manifest kinds: names, durations, percentages, secret references."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from gatewayctl.durations import DURATION_PATTERN, parse_duration_ms

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
PERCENT_PATTERN = r"^[0-9]+(\.[0-9]+)?%$"



INVALID = "gatewayctl_invalid"


def invalid(summary: str, hint: str) -> PydanticCustomError:
    """A validator's error with its own hint: the diagnostic shows both as written (the
    summary quotes no input value; give no braces, pydantic formats the text)."""
    return PydanticCustomError(INVALID, summary, {"hint": hint})


class Strict(BaseModel):
    """Base of every manifest model: unknown fields are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


def manifest_duration_ms(value: Any) -> int:
    """A manifest's duration field in whole milliseconds ("30s" -> 30000), in the one
    grammar of `gatewayctl.durations`. YAML numbers are refused: a unit is always required."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError("a duration is a string with a unit, like 500ms, 30s, 10m or 1h")
    return int(round(parse_duration_ms(value)))


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
    BeforeValidator(manifest_duration_ms),
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
