"""Estimated cost per 1,000 requests of a route, from model prices and a token assumption.

The assumption (documented in docs/plan-and-apply.md) is deliberately simple and fixed, so
that two plans are comparable: every request sends PROMPT_TOKENS prompt tokens and receives
COMPLETION_TOKENS completion tokens. A route's cost blends its backends by weight; fallbacks
are left out (they serve only failed requests), and so is a prompt's system message.
"""

from __future__ import annotations

from collections.abc import Mapping

from gatewayctl.ir import ModelIR, RouteIR

PROMPT_TOKENS = 1000
COMPLETION_TOKENS = 300
REQUESTS = 1000

TOKEN_ASSUMPTION = (
    f"{PROMPT_TOKENS:,} prompt + {COMPLETION_TOKENS:,} completion tokens per request, "
    "blended by backend weight"
)


def request_cost(model: ModelIR) -> float:
    """USD for one request under the token assumption."""
    return (PROMPT_TOKENS * model.input_per_million
            + COMPLETION_TOKENS * model.output_per_million) / 1_000_000


def route_cost_per_1k(route: RouteIR, models: Mapping[str, ModelIR]) -> float | None:
    """USD per 1,000 requests; None when a backend's model is unknown."""
    total = 0.0
    for backend in route.backends:
        if backend.weight == 0:
            continue
        model = models.get(backend.model)
        if model is None:
            return None
        total += backend.weight / 100 * request_cost(model)
    return round(total * REQUESTS, 6)


def format_usd(value: float | None) -> str | None:
    if value is None:
        return None
    return f"${value:,.2f}" if value >= 0.1 or value == 0 else f"${value:.4f}"


def relative_change(before: float | None, after: float | None) -> str:
    if before is None or after is None:
        return ""
    if before == after:
        return "unchanged"
    if before == 0:
        return "new cost"
    pct = (after - before) / before * 100
    return f"{pct:+.1f}%"
