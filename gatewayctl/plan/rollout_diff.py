"""Rollout changes: steps with their pauses, analysis thresholds, canary header, step and state.

A rollout reaches the IR through the route it steers; its weights show on the Route change,
and everything else about it here. Pure functions over the IR.
"""

from __future__ import annotations

from typing import Any

from gatewayctl.ir import GatewayIR, RolloutIR, ThresholdIR
from gatewayctl.plan.model import Action, Change, Detail
from gatewayctl.plan.units import format_ms


def rollouts_of(ir: GatewayIR | None) -> dict[str, tuple[RolloutIR, str]]:
    """Each rollout with the route it steers."""
    return {r.rollout.name: (r.rollout, r.name) for r in (ir.routes if ir else ())
            if r.rollout is not None}


def format_threshold(t: ThresholdIR) -> str:
    if t.max_increase_pct is not None:
        bound = f"at most +{t.max_increase_pct:g}% over the stable backend"
    elif t.max_ms is not None:
        bound = f"at most {format_ms(t.max_ms)}"
    elif t.max is not None:
        bound = f"at most {t.max:g}"
    else:
        bound = "reported only"
    return f"{t.metric} {bound}" + (" (custom query)" if t.query else "")


def format_step(weight: int, pause_ms: int | None) -> str:
    if pause_ms is None:
        return f"{weight}%"
    return f"{weight}% for {format_ms(pause_ms)}"


def _pauses(ro: RolloutIR) -> list[int | None]:
    return [*ro.pauses_ms[:len(ro.steps)], *([None] * (len(ro.steps) - len(ro.pauses_ms)))]


def rollout_view(ro: RolloutIR, route: str) -> dict[str, Any]:
    pauses = _pauses(ro)
    return {
        "route": route, "stable": ro.stable, "canary": ro.canary,
        "step": ro.step, "state": ro.state,
        "steps": [{"weight": w, "pause_ms": p} for w, p in zip(ro.steps, pauses, strict=True)],
        "canary_header": ro.canary_header,
        "thresholds": [{"metric": t.metric, "max": t.max, "max_ms": t.max_ms,
                        "max_increase_pct": t.max_increase_pct, "query": t.query}
                       for t in ro.thresholds],
        "analysis_window_ms": ro.analysis_window_ms,
        "analysis_min_requests": ro.analysis_min_requests,
    }


def _fields(ro: RolloutIR, route: str) -> dict[str, Any]:
    """Each reviewer-facing field as it is shown."""
    pauses = _pauses(ro)
    return {
        "route": route,
        "stable": ro.stable,
        "canary": ro.canary,
        "steps": ", ".join(format_step(w, p) for w, p in zip(ro.steps, pauses, strict=True)),
        "step": f"{ro.step} of {len(ro.steps)}" if ro.step else "not started",
        "state": ro.state,
        "canary header": f"{ro.canary_header} (`{ro.canary_header}: always` reaches the canary)",
        "thresholds": "; ".join(format_threshold(t) for t in ro.thresholds) or "none",
        "analysis window": format_ms(ro.analysis_window_ms),
        "analysis minimum requests": ro.analysis_min_requests,
    }


_ON_THE_ROUTE = frozenset({"route", "stable", "canary", "step", "state"})
_NOTES = {
    "canary header": "requests with the old header no longer reach the canary",
    "thresholds": "what `rollout analyze` fails or passes the canary on",
}


def diff_rollouts(before: GatewayIR | None, after: GatewayIR | None) -> list[Change]:
    old, new = rollouts_of(before), rollouts_of(after)
    changes: list[Change] = []
    for name in sorted(set(old) | set(new)):
        b, a = old.get(name), new.get(name)
        if b == a:
            continue
        fb = _fields(*b) if b else {}
        fa = _fields(*a) if a else {}
        # An update's step, state and backends show on the Route change it steers.
        shown = [f for f in (fa or fb) if not (b and a and f in _ON_THE_ROUTE)]
        details = tuple(
            Detail(field, fb.get(field), fa.get(field),
                   _NOTES.get(field, "") if b and a else "")
            for field in shown if fb.get(field) != fa.get(field))
        if not details:
            continue  # nothing worded differs: the IR backstop shows what did
        action: Action = "create" if b is None else "delete" if a is None else "update"
        routes = tuple(sorted({x[1] for x in (b, a) if x is not None}))
        changes.append(Change("manifest", "Rollout", name, action, details,
                              rollout_view(*b) if b else None, rollout_view(*a) if a else None,
                              routes))
    return changes
