"""Judging the measured figures: pass, fail, inconclusive (with how much traffic is needed)."""

from __future__ import annotations

import math

import pytest

from gatewayctl.manifests.kinds import Analysis
from gatewayctl.rollout.analysis import (
    AnalysisResult,
    BackendStats,
    Inputs,
    Pricing,
    evaluate,
    histogram_quantile,
)

PRICE = Pricing(2.5, 10.0)
FAST = ((5.0, 0.0), (100.0, 90.0), (250.0, 100.0), (math.inf, 100.0))
SLOW = ((5.0, 0.0), (100.0, 10.0), (250.0, 50.0), (1000.0, 100.0), (math.inf, 100.0))


def analysis(*metrics: dict[str, object], min_requests: int = 100) -> Analysis:
    return Analysis.model_validate({"metrics": list(metrics), "window": "5m",
                                    "minRequests": min_requests})


def backend(name: str, attempts: float, errors: float = 0, *, buckets: tuple[
        tuple[float, float], ...] = FAST, tokens: tuple[float, float] | None = None
            ) -> BackendStats:
    ok = attempts - errors
    prompt, completion = tokens if tokens is not None else (None, None)
    return BackendStats(name, attempts, errors, ok, buckets, prompt, completion)


def judge(a: Analysis, canary: BackendStats, stable: BackendStats, weight: int = 25,
          **kw: object) -> list[tuple[str, str, str]]:
    inputs = Inputs(canary, stable, PRICE, PRICE, weight, **kw)  # type: ignore[arg-type]
    return [(m.name, m.verdict, m.detail) for m in evaluate(a, inputs)]


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    assert histogram_quantile(0.95, FAST) == pytest.approx(175.0)
    assert histogram_quantile(0.5, SLOW) == pytest.approx(250.0)
    assert histogram_quantile(0.95, ()) is None
    assert histogram_quantile(0.95, ((10.0, 0.0), (math.inf, 0.0))) is None


def test_error_rate_against_an_absolute_bound() -> None:
    a = analysis({"name": "error-rate", "max": 0.02})
    assert judge(a, backend("c", 200, 2), backend("s", 800)) == [
        ("error-rate", "pass", "canary 1.00% <= 2.00%")]
    assert judge(a, backend("c", 200, 40), backend("s", 800)) == [
        ("error-rate", "fail", "canary 20.00% > 2.00%")]


def test_too_little_traffic_is_inconclusive_and_says_how_much_is_needed() -> None:
    a = analysis({"name": "error-rate", "max": 0.02})
    [(_, verdict, detail)] = judge(a, backend("c", 30), backend("s", 800))
    assert verdict == "inconclusive"
    assert detail == ("too little traffic: the canary served 30 requests in the last 5m; 100 "
                      "are needed (70 more); at its current 6/min that takes about 12m")
    [(_, verdict, detail)] = judge(a, backend("c", 0), backend("s", 800))
    assert detail.endswith("send it traffic (or wait for the next step's weight)")


def test_a_bad_canary_fails_before_it_has_min_requests() -> None:
    a = analysis({"name": "error-rate", "max": 0.02})
    [(_, verdict, detail)] = judge(a, backend("c", 20, 3), backend("s", 800))
    assert verdict == "fail"
    assert detail == ("3 errors in only 20 canary requests: even if the next ones all "
                      "succeed, the rate at 100 requests would be 3.00% > 2.00%")
    # 2 errors in 20 could still end at 2%: wait for more
    assert judge(a, backend("c", 20, 2), backend("s", 800))[0][1] == "inconclusive"


def test_relative_latency_against_the_stable() -> None:
    a = analysis({"name": "latency-p95", "maxIncrease": "20%"})
    assert judge(a, backend("c", 200), backend("s", 800)) == [
        ("latency-p95", "pass", "canary 175ms vs stable 175ms (+0.0%; bound 210ms)")]
    assert judge(a, backend("c", 200, buckets=SLOW), backend("s", 800)) == [
        ("latency-p95", "fail", "canary 925ms vs stable 175ms (+428.6%; bound 210ms)")]
    [(_, verdict, detail)] = judge(a, backend("c", 200), backend("s", 10))
    assert verdict == "inconclusive" and detail.startswith(
        "too little stable traffic to compare with: the stable served 10 requests")


def test_absolute_latency_takes_a_duration_or_seconds() -> None:
    assert judge(analysis({"name": "latency-p95", "max": "4s"}), backend("c", 200,
                 buckets=SLOW), backend("s", 800))[0][1] == "pass"
    assert judge(analysis({"name": "latency-p95", "max": 0.5}), backend("c", 200,
                 buckets=SLOW), backend("s", 800))[0][1:] == ("fail", "canary 925ms > 500ms")


def test_at_100_percent_the_stable_is_not_compared() -> None:
    a = analysis({"name": "latency-p95", "maxIncrease": "20%"})
    [(_, verdict, detail)] = judge(a, backend("c", 500, buckets=SLOW), backend("s", 0),
                                   weight=100)
    assert verdict == "pass" and detail.startswith("not compared: the canary serves 100%")


def test_cost_and_tokens_per_request_from_token_counters_and_pricing() -> None:
    a = analysis({"name": "cost-per-request", "maxIncrease": "20%"},
                 {"name": "tokens-per-request", "max": 1000})
    canary = backend("c", 200, tokens=(200 * 500, 200 * 300))  # 500 in, 300 out per request
    stable = backend("s", 800, tokens=(800 * 500, 800 * 200))
    result = judge(a, canary, stable)
    assert result[0][:2] == ("cost-per-request", "fail")
    assert result[0][2] == "canary $0.004250 vs stable $0.003250 (+30.8%; bound $0.003900)"
    assert result[1] == ("tokens-per-request", "pass", "canary 800 <= 1000")


def test_cost_without_token_metrics_is_inconclusive() -> None:
    a = analysis({"name": "cost-per-request", "maxIncrease": "20%"})
    assert judge(a, backend("c", 200), backend("s", 800)) == [
        ("cost-per-request", "inconclusive",
         "the gateway's metrics have no token counts for this backend")]


def test_custom_query_values() -> None:
    a = analysis({"name": "queue-time", "query": "q", "max": 3})
    assert judge(a, backend("c", 200), backend("s", 800), custom={"queue-time": (2.0, 1.0)}) \
        == [("queue-time", "pass", "canary 2 <= 3")]
    assert judge(a, backend("c", 200), backend("s", 800), custom={"queue-time": (None, 1.0)},
                 custom_problems={"queue-time": "canary: the query returned no data (q)"}) \
        == [("queue-time", "inconclusive", "canary: the query returned no data (q)")]


def test_no_metrics_listed_means_error_rate_at_most_5_percent() -> None:
    assert judge(analysis(), backend("c", 200, 20), backend("s", 800)) == [
        ("error-rate", "fail", "canary 10.00% > 5.00%")]


def test_the_verdict_is_the_worst_and_survives_json() -> None:
    a = analysis({"name": "error-rate", "max": 0.02}, {"name": "latency-p95", "max": "1s"})
    inputs = Inputs(backend("c", 200, 1), backend("s", 800), PRICE, PRICE, 25)
    result = AnalysisResult("r", "chat", "2026-01-02T12:00:00Z", 300_000, 100, 1, 25,
                            inputs.canary, inputs.stable, evaluate(a, inputs))
    assert result.verdict == "pass"
    assert AnalysisResult.from_json(result.to_json()) == result
