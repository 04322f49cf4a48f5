"""Guardrails: deny patterns matched by Envoy's RE2 through RBAC, and the body-size budget.

Routes with the same deny patterns and action share a guard set `g<k>`. The Lua filter
publishes the request's message text and its route's set as dynamic metadata
`gw.internal: {text, set}`; the listener's one RBAC filter has a policy per (set, pattern) whose
principal requires `set` to match and `text` to match the pattern (`safe_regex`, RE2, full
match, so each pattern is wrapped to search anywhere). Sets with action block -> enforced DENY
rules (403, JSON body from local_reply); action log -> shadow rules, which only set
`envoy.filters.http.rbac: shadow_engine_result` (copied to the access log by Lua). Configured
once at the listener rather than per route, the policies grow with the distinct guard sets,
not with the number of routes. A gateway without deny patterns has no RBAC filter, and a route
without them switches the filter off (an RBACPerRoute without `rbac`), so it evaluates no
policy for that route's requests.
Body limits (maxRequestBytes) are body.py's.
"""

from __future__ import annotations

from typing import Any

from gatewayctl.ir import GatewayIR, RouteIR
from gatewayctl.manifests.deny_patterns import search_regex
from gatewayctl.render.envoy.names import (
    GUARD_SET_KEY,
    GUARD_TEXT_KEY,
    INTERNAL_NS,
    RBAC_FILTER,
    RBAC_PER_ROUTE_TYPE,
    RBAC_TYPE,
)

GuardKey = tuple[tuple[str, ...], str]  # (deny patterns, action)


def _guard_key(route: RouteIR) -> GuardKey | None:
    patterns = route.policy.deny_patterns
    return (tuple(patterns), route.policy.guard_action) if patterns else None


def guard_sets(ir: GatewayIR) -> dict[GuardKey, str]:
    """Distinct (patterns, action) of the routes -> set id, numbered in sorted order."""
    keys = sorted({k for r in ir.routes if (k := _guard_key(r)) is not None})
    return {k: f"g{i}" for i, k in enumerate(keys)}


def route_guard_set(route: RouteIR, sets: dict[GuardKey, str]) -> str | None:
    key = _guard_key(route)
    return None if key is None else sets[key]


def _metadata_id(key: str, match: dict[str, Any]) -> dict[str, Any]:
    return {
        "sourced_metadata": {
            "metadata_matcher": {
                "filter": INTERNAL_NS,
                "path": [{"key": key}],
                "value": {"string_match": match},
            },
            "metadata_source": "DYNAMIC",
        }
    }


def rbac_route_config(route: RouteIR, filtered: bool) -> dict[str, Any]:
    """typed_per_filter_config of a route: the RBAC filter off when the route has no deny
    patterns (filtered: whether the listener has the filter at all)."""
    if not filtered or _guard_key(route) is not None:
        return {}
    return {RBAC_FILTER: {"@type": RBAC_PER_ROUTE_TYPE}}


def render_rbac_filter(ir: GatewayIR) -> dict[str, Any] | None:
    """The HCM entry: every guard set's deny patterns; None without any."""
    if not guard_sets(ir):
        return None
    enforced: dict[str, Any] = {}
    shadow: dict[str, Any] = {}
    for (patterns, action), set_id in guard_sets(ir).items():
        target = enforced if action == "block" else shadow
        for i, pattern in enumerate(patterns):
            target[f"{set_id}-deny-{i}"] = {
                "permissions": [{"any": True}],
                "principals": [
                    {
                        "and_ids": {
                            "ids": [
                                _metadata_id(GUARD_SET_KEY, {"exact": set_id}),
                                _metadata_id(
                                    GUARD_TEXT_KEY, {"safe_regex": {"regex": search_regex(pattern)}}
                                ),
                            ]
                        }
                    }
                ],
            }
    config: dict[str, Any] = {"@type": RBAC_TYPE}
    if enforced:
        config["rules"] = {"action": "DENY", "policies": enforced}
    if shadow:
        config["shadow_rules"] = {"action": "DENY", "policies": shadow}
    return {"name": RBAC_FILTER, "typed_config": config}
