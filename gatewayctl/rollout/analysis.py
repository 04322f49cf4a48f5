"""Canary analysis: the rollout's metrics for canary and stable, each pass, fail or inconclusive.

Pure: `evaluate` takes what was measured (`BackendStats` per backend, custom query values) and
the Rollout's `analysis` and returns an `AnalysisResult`; `measure.py` gets the numbers from
Prometheus. Nothing here does I/O or reads the clock.

Built-in metrics (per backend, over the analysis window):
  error-rate          failed attempts / attempts (5xx, resets and timeouts; a 429 is not an
                      error of the model)
  latency-p95         95th percentile of upstream time, from Envoy's histogram buckets
  cost-per-request    (prompt tokens x input price + completion tokens x output price) / 1e6
                      per successful request, with the Model's `pricing` from the manifests
  tokens-per-request  (prompt + completion tokens) per successful request

Thresholds: `max` is an absolute bound on the canary's value (error-rate a fraction, latency a
duration such as `4s` (a bare number is seconds), cost in USD, tokens a count); `maxIncrease`
bounds it relative to the stable's value over the same window (`20%`: at most 1.2 x stable).

Verdicts: inconclusive when the canary served fewer than `minRequests` in the window (and,
for a relative threshold, when the stable did), or when the data is missing. One exception
stops a bad canary early: when its errors alone already exceed the bound for `minRequests`
requests, error-rate fails however little traffic there was. At a step that gives the canary
100%, the stable serves nothing: relative thresholds are then not compared (they were at the
earlier steps) and count as passed.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from gatewayctl.durations import format_duration_ms
from gatewayctl.errors import GatewayctlError
from gatewayctl.manifests.kinds import Analysis, Metric
from gatewayctl.manifests.types import manifest_duration_ms

Verdict = Literal["pass", "fail", "inconclusive"]
VERDICT_ORDER: dict[Verdict, int] = {"pass": 0, "inconclusive": 1, "fail": 2}
RESULT_VERSION = "gatewayctl.dev/rollout-analysis/v1"


@dataclass(frozen=True)
class BackendStats:
    """What one backend did in the window. Token sums are None when not exported."""

    cluster: str
    attempts: float = 0.0
    errors: float = 0.0
    successes: float = 0.0
    latency_buckets: tuple[tuple[float, float], ...] = ()  # (upper bound ms, cumulative count)
    prompt_tokens: float | None = None
    completion_tokens: float | None = None

    def p95_ms(self) -> float | None:
        return histogram_quantile(0.95, self.latency_buckets)


@dataclass(frozen=True)
class Pricing:
    input_per_million: float
    output_per_million: float


@dataclass(frozen=True)
class MetricResult:
    name: str
    verdict: Verdict
    canary: float | None
    stable: float | None
    threshold: str  # "max 0.02", "max +20% of stable"
    detail: str
    unit: str = ""


@dataclass(frozen=True)
class AnalysisResult:
    rollout: str
    route: str
    at: str  # RFC 3339, when the window ended
    window_ms: int
    min_requests: int
    step: int
    canary_weight: int
    canary: BackendStats
    stable: BackendStats
    metrics: tuple[MetricResult, ...]
    prometheus: str = ""
    version: str = RESULT_VERSION

    @property
    def verdict(self) -> Verdict:
        worst: Verdict = "pass"
        for m in self.metrics:
            if VERDICT_ORDER[m.verdict] > VERDICT_ORDER[worst]:
                worst = m.verdict
        return worst

    def to_json(self) -> str:
        data = asdict(self)
        data["verdict"] = self.verdict
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> AnalysisResult:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != RESULT_VERSION:
            raise ValueError("not a rollout analysis result")
        data.pop("verdict", None)

        def stats(d: dict[str, Any]) -> BackendStats:
            d = dict(d)
            d["latency_buckets"] = tuple(tuple(b) for b in d.get("latency_buckets", ()))
            return BackendStats(**d)

        data["canary"] = stats(data["canary"])
        data["stable"] = stats(data["stable"])
        data["metrics"] = tuple(MetricResult(**m) for m in data["metrics"])
        return cls(**data)


@dataclass(frozen=True)
class Inputs:
    """Everything `evaluate` needs besides the rollout's analysis settings."""

    canary: BackendStats
    stable: BackendStats
    canary_price: Pricing
    stable_price: Pricing
    canary_weight: int
    custom: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    custom_problems: dict[str, str] = field(default_factory=dict)


# --- numbers -----------------------------------------------------------------------------------


def histogram_quantile(q: float, buckets: tuple[tuple[float, float], ...]) -> float | None:
    """Prometheus' histogram_quantile over cumulative (upper bound, count) buckets."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in ordered:
        if count >= rank:
            if math.isinf(upper):
                return lower  # in the +Inf bucket: the highest finite bound, as Prometheus does
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


def format_metric_value(value: float | None, unit: str) -> str:
    """A metric value in its unit: 1.25%, 420ms, $0.000550."""
    if value is None:
        return "n/a"
    if unit == "ratio":
        return f"{value:.2%}"
    if unit == "ms":
        return f"{value:.0f}ms" if value >= 10 else f"{value:.2f}ms"
    if unit == "usd":
        return f"${value:.6f}"
    return f"{value:.4g}"


def _rate_note(served: float, needed: int, window_ms: int, who: str) -> str:
    window = format_duration_ms(window_ms)
    missing = max(0, math.ceil(needed - served))
    text = f"{who} served {served:.0f} requests in the last {window}; {needed} are needed " \
        f"({missing} more)"
    if served > 0:
        per_min = served / (window_ms / 60_000)
        text += f"; at its current {per_min:.3g}/min that takes about " \
            f"{format_duration_ms(max(1, math.ceil(missing / per_min)) * 60_000)}"
    else:
        text += "; send it traffic (or wait for the next step's weight)"
    return text


# --- thresholds --------------------------------------------------------------------------------


UNITS = {"error-rate": "ratio", "latency-p95": "ms", "cost-per-request": "usd",
         "tokens-per-request": "tokens"}


def absolute_bound(metric: Metric) -> float | None:
    """`max` in the metric's unit (latency in ms); None for a relative threshold."""
    if metric.max is None:
        return None
    if metric.name == "latency-p95":
        if isinstance(metric.max, str):
            return float(manifest_duration_ms(metric.max))
        return float(metric.max) * 1000.0
    if isinstance(metric.max, str):
        raise GatewayctlError(
            f"metric {metric.name}: max {metric.max!r} is a duration, but {metric.name} is "
            "not a time", hint=f"write max as a number for {metric.name}")
    return float(metric.max)


def threshold_text(metric: Metric, unit: str) -> str:
    if metric.maxIncrease is not None:
        return f"max +{metric.maxIncrease:g}% of stable"
    bound = absolute_bound(metric)
    return f"max {format_metric_value(bound, unit)}"


def _compare(metric: Metric, unit: str, canary: float | None, stable: float | None,
             stable_ok: bool, stable_why: str, canary_weight: int) -> tuple[Verdict, str]:
    if canary is None:
        return "inconclusive", "no data for the canary in the window"
    if metric.maxIncrease is not None:
        if canary_weight >= 100:
            return "pass", ("not compared: the canary serves 100%, so the stable has no "
                            "traffic (it was compared at the earlier steps)")
        if not stable_ok:
            return "inconclusive", stable_why
        if stable is None:
            return "inconclusive", "no data for the stable in the window"
        bound = stable * (1 + metric.maxIncrease / 100)
        ok = canary <= bound
        change = f"{(canary / stable - 1):+.1%}" if stable > 0 else "from zero"
        return ("pass" if ok else "fail"), (
            f"canary {format_metric_value(canary, unit)} vs stable "
            f"{format_metric_value(stable, unit)} ({change}; "
            f"bound {format_metric_value(bound, unit)})")
    bound_abs = absolute_bound(metric)
    assert bound_abs is not None
    ok = canary <= bound_abs
    return ("pass" if ok else "fail"), (
        f"canary {format_metric_value(canary, unit)} {'<=' if ok else '>'} "
        f"{format_metric_value(bound_abs, unit)}")


# --- evaluation --------------------------------------------------------------------------------


def _per_request(b: BackendStats, price: Pricing | None) -> float | None:
    if b.prompt_tokens is None or b.completion_tokens is None or b.successes <= 0:
        return None
    if price is None:
        return (b.prompt_tokens + b.completion_tokens) / b.successes
    cost = (b.prompt_tokens * price.input_per_million
            + b.completion_tokens * price.output_per_million) / 1_000_000
    return cost / b.successes


def _value(name: str, b: BackendStats, price: Pricing) -> float | None:
    if name == "error-rate":
        return b.errors / b.attempts if b.attempts > 0 else None
    if name == "latency-p95":
        return b.p95_ms()
    if name == "cost-per-request":
        return _per_request(b, price)
    return _per_request(b, None)


def _error_rate_early_fail(metric: Metric, canary: BackendStats, stable: BackendStats,
                           analysis: Analysis) -> str | None:
    """A canary whose errors already exceed the bound at `minRequests` fails without waiting."""
    if metric.maxIncrease is not None:
        if stable.attempts < analysis.minRequests:
            return None
        bound = (stable.errors / stable.attempts) * (1 + metric.maxIncrease / 100)
    else:
        bound = absolute_bound(metric) or 0.0
    needed = float(analysis.minRequests)
    if canary.errors / needed > bound:
        return (f"{canary.errors:.0f} errors in only {canary.attempts:.0f} canary requests: "
                f"even if the next ones all succeed, the rate at {analysis.minRequests} "
                f"requests would be {canary.errors / needed:.2%} > {bound:.2%}")
    return None


def evaluate_metric(metric: Metric, analysis: Analysis, inputs: Inputs) -> MetricResult:
    unit = UNITS.get(metric.name, "")
    threshold = threshold_text(metric, unit)
    canary_b, stable_b = inputs.canary, inputs.stable
    need = analysis.minRequests
    if metric.query is not None:
        canary_v, stable_v = inputs.custom.get(metric.name, (None, None))
        problem = inputs.custom_problems.get(metric.name)
        if problem:
            return MetricResult(metric.name, "inconclusive", canary_v, stable_v, threshold,
                                problem, unit)
    else:
        canary_v = _value(metric.name, canary_b, inputs.canary_price)
        stable_v = _value(metric.name, stable_b, inputs.stable_price)
    if metric.name == "error-rate" and metric.query is None and canary_b.errors > 0 \
            and canary_b.attempts < need:
        early = _error_rate_early_fail(metric, canary_b, stable_b, analysis)
        if early is not None:
            return MetricResult(metric.name, "fail", canary_v, stable_v, threshold, early, unit)
    if canary_b.attempts < need:
        return MetricResult(metric.name, "inconclusive", canary_v, stable_v, threshold,
                            "too little traffic: " + _rate_note(canary_b.attempts, need,
                                                                analysis.window, "the canary"),
                            unit)
    if metric.name in ("cost-per-request", "tokens-per-request") and metric.query is None \
            and canary_b.prompt_tokens is None:
        return MetricResult(metric.name, "inconclusive", None, None, threshold,
                            "the gateway's metrics have no token counts for this backend",
                            unit)
    stable_ok = stable_b.attempts >= need
    stable_why = "too little stable traffic to compare with: " + _rate_note(
        stable_b.attempts, need, analysis.window, "the stable")
    verdict, detail = _compare(metric, unit, canary_v, stable_v, stable_ok, stable_why,
                               inputs.canary_weight)
    return MetricResult(metric.name, verdict, canary_v, stable_v, threshold, detail, unit)


def default_metrics() -> list[Metric]:
    """Used when a Rollout lists no metrics: at most 5% of the canary's requests may fail."""
    return [Metric(name="error-rate", max=0.05)]


def evaluate(analysis: Analysis, inputs: Inputs) -> tuple[MetricResult, ...]:
    metrics = analysis.metrics or default_metrics()
    return tuple(evaluate_metric(m, analysis, inputs) for m in metrics)
