"""Configuration of the mock provider: fault rules, the server config, and the CLI spec parsers.

Owns the option syntax of `gatewayctl mock-provider` (see `gatewayctl.local.mock_provider`) and
the JSON form served at `/_mock/config`. Pure: nothing here does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from types import MappingProxyType
from typing import Any, Literal

from gatewayctl.durations import DurationError, parse_duration_ms

ErrorStatus = int | Literal["reset"]

DEFAULT_MODEL_KEY = "*"
DEFAULT_EMBEDDING_DIMS = 8
DEFAULT_RECORD_LIMIT = 1000
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024

_RULE_KEYS = frozenset({"error_rate", "error_status", "latency_ms"})


class FaultSpecError(ValueError):
    """A fault spec or fault document that cannot be understood; the message says what is valid."""


@dataclass(frozen=True)
class FaultRule:
    """Faults applied to the requests for one model (or to every model, as the default rule).

    `error_rate` fails exactly `error_rate` of the requests, evenly spread: the n-th request for
    a model fails when floor(n * rate) > floor((n - 1) * rate), so 0.2 fails the 5th, 10th, ...
    """

    error_rate: float = 0.0
    error_status: ErrorStatus = 503
    latency_ms: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0 or math.isnan(self.error_rate):
            raise FaultSpecError(f"error rate {self.error_rate!r} is not between 0 and 1")
        if self.error_status != "reset" and (
            isinstance(self.error_status, bool)
            or not isinstance(self.error_status, int)
            or not 400 <= self.error_status <= 599
        ):
            raise FaultSpecError(
                f"error status {self.error_status!r} is not valid: use 400-599 or 'reset'"
            )
        if not 0.0 <= self.latency_ms <= 600_000.0 or math.isnan(self.latency_ms):
            raise FaultSpecError(f"latency {self.latency_ms!r}ms is not between 0ms and 600s")

    @property
    def rate_fraction(self) -> Fraction:
        """The rate as an exact fraction, so that 0.2 * 15 is exactly 3 when counting."""
        return Fraction(self.error_rate).limit_denominator(1_000_000)

    def to_json(self) -> dict[str, Any]:
        return {
            "error_rate": self.error_rate,
            "error_status": self.error_status,
            "latency_ms": self.latency_ms,
        }


@dataclass(frozen=True)
class FaultConfig:
    """The default rule plus per-model rules; a model without its own rule gets the default."""

    default: FaultRule = field(default_factory=FaultRule)
    models: Mapping[str, FaultRule] = field(default_factory=dict)

    def __post_init__(self) -> None:
        frozen = MappingProxyType({name: self.models[name] for name in sorted(self.models)})
        object.__setattr__(self, "models", frozen)

    def rule_for(self, model: str) -> FaultRule:
        return self.models.get(model, self.default)

    def to_json(self) -> dict[str, Any]:
        return {
            "default": self.default.to_json(),
            "models": {name: rule.to_json() for name, rule in self.models.items()},
        }


@dataclass(frozen=True)
class MockProviderConfig:
    """Everything a mock provider server needs; `faults` can be replaced at runtime.

    `aws_credentials` (access key id -> secret access key) are the ones Bedrock requests may
    be signed with; without any, every Bedrock request is refused as AWS refuses an unknown key.
    """

    name: str = "mock"
    require_key: str | None = None
    faults: FaultConfig = field(default_factory=FaultConfig)
    models: tuple[str, ...] = ()
    embedding_dims: int = DEFAULT_EMBEDDING_DIMS
    record_limit: int = DEFAULT_RECORD_LIMIT
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    aws_credentials: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.embedding_dims <= 65536:
            raise ValueError(f"embedding_dims {self.embedding_dims} is not between 1 and 65536")
        if self.record_limit < 0:
            raise ValueError(f"record_limit {self.record_limit} is negative")
        if self.max_body_bytes < 1:
            raise ValueError(f"max_body_bytes {self.max_body_bytes} is not positive")


@dataclass(frozen=True)
class ErrorRateSpec:
    """One parsed `--error-rate [MODEL=]RATE[:STATUS]`; model None means every model."""

    model: str | None
    rate: float
    status: ErrorStatus = 503


@dataclass(frozen=True)
class LatencySpec:
    """One parsed `--latency [MODEL=]DURATION`; model None means every model."""

    model: str | None
    latency_ms: float


def _split_model(spec: str, option: str, example: str) -> tuple[str | None, str]:
    text = spec.strip()
    if "=" not in text:
        return None, text
    model, value = text.rsplit("=", 1)
    model = model.strip()
    if not model:
        raise FaultSpecError(f"{option} {spec!r}: the model before '=' is empty, e.g. {example!r}")
    return (None if model == DEFAULT_MODEL_KEY else model), value.strip()


def parse_rate(text: str) -> float:
    """`0.2`, `20%`, `1` or `0` -> a rate between 0 and 1."""
    raw = text.strip()
    try:
        rate = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise FaultSpecError(f"error rate {text!r} is not a number like 0.2 or 20%") from None
    if not 0.0 <= rate <= 1.0 or math.isnan(rate):
        raise FaultSpecError(f"error rate {text!r} is not between 0 and 1 (or 0% and 100%)")
    return rate


def parse_status(text: str) -> ErrorStatus:
    """`503`, `429`, ... or `reset` (close the connection without a response)."""
    raw = text.strip().lower()
    if raw == "reset":
        return "reset"
    if raw.isdigit() and 400 <= int(raw) <= 599:
        return int(raw)
    raise FaultSpecError(f"error status {text!r} is not valid: use 400-599 (e.g. 503) or reset")


def parse_latency_ms(text: str) -> float:
    """`150ms`, `1.5s` or `0` -> milliseconds (`gatewayctl.durations`, in ms and s)."""
    if text.strip() == "0":
        return 0.0
    try:
        millis = parse_duration_ms(text, units=("ms", "s"))
    except DurationError:
        raise FaultSpecError(f"duration {text!r} is not valid: use e.g. 150ms, 1.5s or 0"
                             ) from None
    if millis > 600_000.0:
        raise FaultSpecError(f"duration {text!r} is longer than 600s")
    return millis


def parse_fault_spec(spec: str) -> ErrorRateSpec:
    """Parse `[MODEL=]RATE[:STATUS]`, e.g. `gpt-4o-2024-11-20=0.2:503`, `0.5:reset`, `m=20%`."""
    example = "gpt-4o-2024-11-20=0.2:503"
    model, value = _split_model(spec, "--error-rate", example)
    rate_text, sep, status_text = value.partition(":")
    if not rate_text:
        raise FaultSpecError(f"--error-rate {spec!r}: the rate is missing, e.g. {example!r}")
    status = parse_status(status_text) if sep else 503
    return ErrorRateSpec(model=model, rate=parse_rate(rate_text), status=status)


def parse_latency_spec(spec: str) -> LatencySpec:
    """Parse `[MODEL=]DURATION`, e.g. `gpt-4o=150ms`, `1.5s`."""
    model, value = _split_model(spec, "--latency", "gpt-4o=150ms")
    return LatencySpec(model=model, latency_ms=parse_latency_ms(value))


def build_fault_config(
    error_specs: Iterable[str] = (), latency_specs: Iterable[str] = ()
) -> FaultConfig:
    """Merge repeated `--error-rate` and `--latency` options into one FaultConfig.

    A later option for the same model (or for the default) replaces the earlier one's field.
    A per-model rule starts from the default rule, so `--latency 50ms --error-rate m=0.2` gives
    model `m` both the 50ms latency and the 0.2 error rate.
    """
    errors = [parse_fault_spec(spec) for spec in error_specs]
    latencies = [parse_latency_spec(spec) for spec in latency_specs]
    default = FaultRule()
    for err in errors:
        if err.model is None:
            default = replace(default, error_rate=err.rate, error_status=err.status)
    for lat in latencies:
        if lat.model is None:
            default = replace(default, latency_ms=lat.latency_ms)
    models: dict[str, FaultRule] = {}
    for err in errors:
        if err.model is not None:
            base = models.get(err.model, default)
            models[err.model] = replace(base, error_rate=err.rate, error_status=err.status)
    for lat in latencies:
        if lat.model is not None:
            models[lat.model] = replace(models.get(lat.model, default), latency_ms=lat.latency_ms)
    return FaultConfig(default=default, models=models)


def _rule_from_json(data: object, where: str) -> FaultRule:
    if not isinstance(data, dict):
        raise FaultSpecError(f"{where}: expected an object with {sorted(_RULE_KEYS)}")
    unknown = sorted(set(data) - _RULE_KEYS)
    if unknown:
        raise FaultSpecError(f"{where}: unknown field(s) {unknown}; valid: {sorted(_RULE_KEYS)}")
    rate = data.get("error_rate", 0.0)
    status = data.get("error_status", 503)
    latency = data.get("latency_ms", 0.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        raise FaultSpecError(f"{where}.error_rate: expected a number between 0 and 1")
    if isinstance(latency, bool) or not isinstance(latency, int | float):
        raise FaultSpecError(f"{where}.latency_ms: expected a number of milliseconds")
    if isinstance(status, bool) or not isinstance(status, int | str):
        raise FaultSpecError(f"{where}.error_status: expected 400-599 or 'reset'")
    try:
        parsed = parse_status(str(status))
        return FaultRule(error_rate=float(rate), error_status=parsed, latency_ms=float(latency))
    except FaultSpecError as exc:
        raise FaultSpecError(f"{where}: {exc}") from None


def fault_config_from_json(data: object) -> FaultConfig:
    """Read the `/_mock/config` document: `{"default": RULE, "models": {NAME: RULE}}`."""
    if not isinstance(data, dict):
        raise FaultSpecError('expected an object like {"default": {...}, "models": {...}}')
    unknown = sorted(set(data) - {"default", "models"})
    if unknown:
        raise FaultSpecError(f"unknown field(s) {unknown}; valid: ['default', 'models']")
    default = _rule_from_json(data.get("default", {}), "default")
    models_data = data.get("models", {})
    if not isinstance(models_data, dict):
        raise FaultSpecError("models: expected an object mapping model name to a rule")
    models = {
        str(name): _rule_from_json(rule, f"models.{name}") for name, rule in models_data.items()
    }
    return FaultConfig(default=default, models=models)


def read_aws_credentials(text: str) -> dict[str, str]:
    """Access key id -> secret access key of every profile of an AWS shared credentials file."""
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise FaultSpecError(f"not an AWS credentials file: {exc}") from None
    out = {}
    for section in parser.sections():
        key = parser.get(section, "aws_access_key_id", fallback=None)
        secret = parser.get(section, "aws_secret_access_key", fallback=None)
        if key and secret:
            out[key.strip()] = secret.strip()
    if not out:
        raise FaultSpecError("the AWS credentials file holds no aws_access_key_id with its "
                             "aws_secret_access_key")
    return out
