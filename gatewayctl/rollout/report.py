"""Rollout output: status and analysis as text, Markdown and JSON values. Pure formatting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gatewayctl.durations import format_duration_ms
from gatewayctl.manifests.kinds import RolloutSpec
from gatewayctl.rollout.analysis import AnalysisResult, MetricResult, format_metric_value
from gatewayctl.rollout.steps import PauseStatus, Position

_MARK = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE"}
_ICON = {"pass": "✅", "fail": "❌", "inconclusive": "⏳"}


@dataclass(frozen=True)
class LiveWeights:
    source: str
    weights: tuple[tuple[str, int], ...]  # (model, weight) the live gateway serves
    note: str = ""  # drift, or why nothing could be read


@dataclass(frozen=True)
class StatusView:
    name: str
    path: str
    spec: RolloutSpec
    position: Position
    pause: PauseStatus
    live: LiveWeights | None
    analysis: AnalysisResult | None


def git_weights(view: StatusView) -> dict[str, int]:
    cw = view.position.canary_weight
    return {view.spec.stable: 100 - cw, view.spec.canary: cw}


def live_matches_git(view: StatusView) -> bool | None:
    """Whether the live gateway serves the weights Git has (None: live not read or empty).

    A backend the live gateway does not list serves 0%."""
    if view.live is None or not view.live.weights:
        return None
    served = {m: w for m, w in view.live.weights if w}
    return served == {m: w for m, w in git_weights(view).items() if w}


def steps_text(spec: RolloutSpec) -> str:
    parts = []
    for i, s in enumerate(spec.steps, start=1):
        text = f"{s.weight}%" + (f"/{format_duration_ms(s.pause)}" if s.pause else "")
        parts.append(f"[{text}]" if i == spec.step else text)
    return " -> ".join(parts)


def status_json(view: StatusView) -> dict[str, Any]:
    spec = view.spec
    return {
        "rollout": view.name,
        "file": view.path,
        "route": spec.route,
        "stable": spec.stable,
        "canary": spec.canary,
        "state": spec.state,
        "step": spec.step,
        "steps": [{"weight": s.weight, "pause": format_duration_ms(s.pause) if s.pause else None}
                  for s in spec.steps],
        "git": {"weights": git_weights(view)},
        "pause": {"elapsed": view.pause.elapsed, "text": view.pause.describe()},
        "live": None if view.live is None else {
            "source": view.live.source, "weights": dict(view.live.weights),
            "note": view.live.note, "matchesGit": live_matches_git(view)},
        "lastAnalysis": None if view.analysis is None else analysis_json(view.analysis),
    }


def format_status(view: StatusView) -> str:
    spec = view.spec
    cw = view.position.canary_weight
    lines = [
        f"rollout {view.name} ({view.path}): route {spec.route}, {spec.stable} -> {spec.canary}",
        f"  state:  {view.position.describe(len(spec.steps))}",
        f"  steps:  {steps_text(spec)}",
        f"  git:    {spec.stable} {100 - cw}%, {spec.canary} {cw}%",
    ]
    if view.live is not None:
        served = ", ".join(f"{m} {w}%" for m, w in view.live.weights) or "nothing"
        lines.append(f"  live:   {served} ({view.live.source})")
        if view.live.note:
            lines.append(f"          {view.live.note}")
        if live_matches_git(view) is False:
            lines.append("  ⚠ live differs from Git: the live gateway does not serve what Git "
                         "says (a change not applied yet, a break-glass apply, or a hand edit); "
                         "`gatewayctl apply` from the default branch converges it")
    lines.append(f"  pause:  {view.pause.describe()}")
    if view.analysis is None:
        lines.append("  last analysis: none (run `gatewayctl rollout analyze`)")
    else:
        a = view.analysis
        lines.append(f"  last analysis: {_MARK[a.verdict]} at {a.at} (step {a.step}, "
                     f"canary {a.canary_weight}%)")
        lines.extend("    " + _metric_line(m) for m in a.metrics)
    lines.append(f"  canary header: {spec.canaryHeader}: always")
    return "\n".join(lines) + "\n"


def _metric_line(m: MetricResult) -> str:
    return f"{_MARK[m.verdict]:<13} {m.name:<20} {m.threshold:<24} {m.detail}"


def analysis_json(a: AnalysisResult) -> dict[str, Any]:
    def backend(b: Any) -> dict[str, Any]:
        return {"cluster": b.cluster, "attempts": b.attempts, "errors": b.errors,
                "successes": b.successes, "p95Ms": b.p95_ms(),
                "promptTokens": b.prompt_tokens, "completionTokens": b.completion_tokens}

    return {
        "rollout": a.rollout, "route": a.route, "at": a.at, "verdict": a.verdict,
        "window": format_duration_ms(a.window_ms), "minRequests": a.min_requests,
        "step": a.step, "canaryWeight": a.canary_weight,
        "canary": backend(a.canary), "stable": backend(a.stable),
        "metrics": [{"name": m.name, "verdict": m.verdict, "canary": m.canary,
                     "stable": m.stable, "threshold": m.threshold, "detail": m.detail}
                    for m in a.metrics],
    }


def format_analysis(a: AnalysisResult) -> str:
    window = format_duration_ms(a.window_ms)
    lines = [
        f"rollout {a.rollout}: analysis over the last {window} at {a.at}: {_MARK[a.verdict]}",
        f"  canary {a.canary.cluster}: {a.canary.attempts:.0f} requests, "
        f"{a.canary.errors:.0f} errors",
        f"  stable {a.stable.cluster}: {a.stable.attempts:.0f} requests, "
        f"{a.stable.errors:.0f} errors",
    ]
    lines.extend("  " + _metric_line(m) for m in a.metrics)
    return "\n".join(lines) + "\n"


def format_analysis_markdown(a: AnalysisResult) -> str:
    window = format_duration_ms(a.window_ms)
    out = [f"### {_ICON[a.verdict]} Rollout `{a.rollout}`: analysis {a.verdict}", "",
           f"Window: last {window} before {a.at}; step {a.step}, canary {a.canary_weight}%; "
           f"canary {a.canary.attempts:.0f} requests, stable {a.stable.attempts:.0f}.", "",
           "| metric | verdict | canary | stable | threshold | detail |",
           "|---|---|---|---|---|---|"]
    for m in a.metrics:
        detail = m.detail.replace("|", "\\|")
        canary = format_metric_value(m.canary, m.unit)
        stable = format_metric_value(m.stable, m.unit)
        out.append(f"| {m.name} | {_ICON[m.verdict]} {m.verdict} | {canary} | "
                   f"{stable} | {m.threshold} | {detail} |")
    return "\n".join(out) + "\n"
