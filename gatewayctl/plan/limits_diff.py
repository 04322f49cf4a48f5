"""Effective limits in the plan: what a limit admits in the gateway's limits scope.

In replica scope each Envoy counts alone, so a limit of L admits up to N x L with N replicas:
the plan says "up to N x L at max replicas" (N = replicas.max). In global scope the counts
are shared through Redis and L is what the whole gateway admits. A change of scope, or of
replicas.max in replica scope, changes what every limit means without touching a Policy: it
is listed per group of routes with the same limits, each limit before and after, tightened
or loosened by what it admits.
"""

from __future__ import annotations

import json
from typing import Any

from gatewayctl.ir import GatewayIR, LimitIR, RouteIR
from gatewayctl.plan.model import Change, Detail
from gatewayctl.plan.policy_diff import LOOSENED, TIGHTENED, format_limit

UNITS = {"rate_limits": ("rate limit", "requests"), "token_limits": ("token limit", "tokens")}


def effective_limit(ir: GatewayIR, limit: LimitIR, unit: str) -> str:
    """What a limit admits across the gateway, in the plan's words."""
    text = format_limit(limit, unit)
    if ir.limits.scope == "global":
        return f"{text} (all replicas together)"
    n = ir.replicas_max
    return f"{text} (per replica: up to {n} x {limit.amount:,} at max replicas)"


def limits_scope_text(ir: GatewayIR) -> str:
    if ir.limits.scope == "global":
        return "global (counts shared by all replicas through Redis)"
    return f"replica (each Envoy counts alone: up to {ir.replicas_max} x each limit)"


def scope_note(before: Any, after: Any) -> str:
    if str(after).startswith("global"):
        return f"{TIGHTENED}: every limit now holds across replicas"
    return f"{LOOSENED}: each replica now counts alone"


def replicas_note(after: GatewayIR | None) -> str:
    if after is None or after.limits.scope != "replica" or not _limited(after.routes):
        return ""
    return f"replica-scope limits now admit up to {after.replicas_max} x each limit"


def _limited(routes: tuple[RouteIR, ...]) -> list[RouteIR]:
    return [r for r in routes if r.policy.rate_limits or r.policy.token_limits]


def _multiplier(ir: GatewayIR) -> int:
    return 1 if ir.limits.scope == "global" else ir.replicas_max


def diff_scope_effects(before: GatewayIR | None, after: GatewayIR | None) -> list[Change]:
    """Routes whose limits admit more or less because the scope or replicas.max changed (and
    not their limits: a changed limit is a Policy change of its own)."""
    if before is None or after is None:
        return []
    was, now = _multiplier(before), _multiplier(after)
    if was == now and before.limits.scope == after.limits.scope:
        return []
    old = {r.name: r for r in before.routes}
    groups: dict[str, tuple[Change, list[str]]] = {}
    for route in _limited(after.routes):
        prev = old.get(route.name)
        if prev is None or prev.policy != route.policy:
            continue
        details = []
        for field, (label, unit) in UNITS.items():
            for limit in getattr(route.policy, field):
                verdict = TIGHTENED if now < was else LOOSENED if now > was else "changed"
                details.append(Detail(
                    f"{label} (policy {limit.policy}, per {limit.by})",
                    effective_limit(before, limit, unit), effective_limit(after, limit, unit),
                    f"{verdict}: admits {now:,} x the limit where it admitted {was:,} x"))
        key = json.dumps([d.field for d in details] + [d.after for d in details])
        if key not in groups:
            name = ", ".join(route.policy.sources) or "(no policies)"
            groups[key] = (Change("manifest", "Policy", name, "update", tuple(details),
                                  {"effective_limit_multiplier": was},
                                  {"effective_limit_multiplier": now}), [])
        groups[key][1].append(route.name)
    return [Change(c.layer, c.kind, c.name, c.action, c.details, c.before, c.after,
                   tuple(sorted(routes))) for c, routes in groups.values()]
