"""`rollout analyze` and `rollout advance`: measure, judge, and decide the next move.

`analyze_rollout` reads one window of the gateway's metrics from Prometheus for the rollout's
stable and canary backends and evaluates the Rollout's metrics (`analysis.py`). `decide` is the
pure rule of a scheduled pipeline:

  aborted, completed          -> hold (nothing to do)
  not started (step 0)        -> start: promote to step 1 (there is no canary traffic to judge)
  any metric fails            -> abort, whether or not the pause has elapsed, and also when
                                 the rollout is paused (a pause holds promotion, not safety)
  paused                      -> hold
  any metric inconclusive     -> wait
  all pass, pause elapsed     -> promote (after the last step: complete)
  all pass, pause not elapsed -> wait
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from gatewayctl.compile import rollout_canary_weight
from gatewayctl.rollout.analysis import AnalysisResult, Inputs, Pricing, evaluate
from gatewayctl.rollout.document import RolloutDocument
from gatewayctl.rollout.measure import (
    check_selector,
    fetch_backend_stats,
    fetch_custom,
    render_custom_query,
)
from gatewayctl.rollout.prometheus import PrometheusClient
from gatewayctl.rollout.steps import PauseStatus, format_time

Decision = Literal["start", "promote", "complete", "abort", "wait", "hold"]


def backend_cluster(route: str, model: str) -> str:
    from gatewayctl.render.envoy.names import backend_cluster_name

    return backend_cluster_name(route, model)


def _pricing(source: RolloutDocument, model: str) -> Pricing:
    found = source.manifests.models.get(model)
    if found is None:
        return Pricing(0.0, 0.0)
    p = found.spec.pricing
    return Pricing(p.inputPerMillion, p.outputPerMillion)


def analyze_rollout(source: RolloutDocument, prometheus: str, now: datetime, *,
                    selector: str = "", timeout: float = 10.0) -> AnalysisResult:
    spec = source.spec
    client = PrometheusClient(prometheus, timeout=timeout)
    selector = check_selector(selector)
    at = now.timestamp()
    window = spec.analysis.window
    canary_c = backend_cluster(spec.route, spec.canary)
    stable_c = backend_cluster(spec.route, spec.stable)
    stats = fetch_backend_stats(client, [canary_c, stable_c], window, at, selector=selector)
    custom: dict[str, tuple[float | None, float | None]] = {}
    problems: dict[str, str] = {}
    for metric in spec.analysis.metrics:
        if metric.query is None:
            continue
        values: list[float | None] = []
        for cluster, model in ((canary_c, spec.canary), (stable_c, spec.stable)):
            expr = render_custom_query(metric.query, cluster=cluster, model=model,
                                       route=spec.route, window_ms=window)
            value, why = fetch_custom(client, expr, at)
            values.append(value)
            if why and model == spec.canary:
                problems[metric.name] = f"canary: {why} ({expr})"
        custom[metric.name] = (values[0], values[1])
    inputs = Inputs(stats[canary_c], stats[stable_c], _pricing(source, spec.canary),
                    _pricing(source, spec.stable), rollout_canary_weight(spec), custom, problems)
    return AnalysisResult(
        rollout=source.name, route=spec.route, at=format_time(now), window_ms=window,
        min_requests=spec.analysis.minRequests, step=spec.step,
        canary_weight=rollout_canary_weight(spec), canary=stats[canary_c],
        stable=stats[stable_c], metrics=evaluate(spec.analysis, inputs),
        prometheus=client.url)


@dataclass(frozen=True)
class Advice:
    decision: Decision
    reason: str


def needs_analysis(source: RolloutDocument) -> bool:
    return source.spec.state in ("progressing", "paused") and source.spec.step > 0


def decide(source: RolloutDocument, pause: PauseStatus,
           analysis: AnalysisResult | None) -> Advice:
    spec = source.spec
    if spec.state in ("aborted", "completed"):
        return Advice("hold", f"the rollout is {spec.state}; nothing to advance")
    if spec.step == 0:
        if spec.state == "paused":
            return Advice("hold", "the rollout is paused before its first step")
        return Advice("start", "the rollout has not started: moving to step 1")
    assert analysis is not None
    failed = [m.name for m in analysis.metrics if m.verdict == "fail"]
    if failed:
        return Advice("abort", f"analysis failed: {', '.join(failed)}")
    if spec.state == "paused":
        return Advice("hold", "the rollout is paused; `rollout resume` lets it advance again")
    unsure = [m.name for m in analysis.metrics if m.verdict == "inconclusive"]
    if unsure:
        return Advice("wait", f"analysis inconclusive: {', '.join(unsure)}")
    if not pause.elapsed:
        return Advice("wait", f"analysis passed; {pause.describe()}")
    if spec.step >= len(spec.steps):
        return Advice("complete", "analysis passed at the last step: completing the rollout")
    return Advice("promote", f"analysis passed and {pause.describe()}")
