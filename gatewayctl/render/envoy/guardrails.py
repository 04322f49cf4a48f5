"""Guardrails: deny patterns matched by Envoy's RE2 through RBAC, and the body-size budget.

The Lua filter publishes the request's message text as dynamic metadata `gw.guard: text`; a
per-route RBAC policy per pattern matches it with a `safe_regex` principal (RE2, full match,
so each pattern is wrapped to search anywhere). action block -> enforced DENY rules (403,
JSON body from local_reply); action log -> the same policies as shadow rules, which only set
`envoy.filters.http.rbac: shadow_engine_result` (copied to the access log by Lua).
maxRequestBytes is checked by Lua after route selection; the listener's buffer limit is
raised so that bodies up to the largest limit are buffered at all.
"""

from __future__ import annotations

from typing import Any

from gatewayctl.ir import GatewayIR, RouteIR
from gatewayctl.render.envoy.names import GUARD_TEXT_NS, RBAC_FILTER, RBAC_PER_ROUTE_TYPE, RBAC_TYPE

DEFAULT_BUFFER_BYTES = 1024 * 1024
# Room for what the Lua filter adds to a body (a rendered system prompt) after buffering.
BUFFER_HEADROOM_BYTES = 256 * 1024


def search_regex(pattern: str) -> str:
    """RE2 that fully matches any text containing a match of pattern (flags stay scoped)."""
    return f"(?s:.*)(?:{pattern})(?s:.*)"


def buffer_limit_bytes(ir: GatewayIR) -> int:
    largest = max((r.policy.max_request_bytes or 0 for r in ir.routes), default=0)
    return max(DEFAULT_BUFFER_BYTES, largest) + BUFFER_HEADROOM_BYTES


def render_rbac_filter() -> dict[str, Any]:
    """The HCM entry: no rules (allow everything) unless a route brings its own."""
    return {"name": RBAC_FILTER, "typed_config": {"@type": RBAC_TYPE}}


def render_route_rbac(route: RouteIR) -> dict[str, Any]:
    patterns = route.policy.deny_patterns
    if not patterns:
        return {}
    policies = {
        f"deny-{i}": {
            "permissions": [{"any": True}],
            "principals": [
                {
                    "sourced_metadata": {
                        "metadata_matcher": {
                            "filter": GUARD_TEXT_NS,
                            "path": [{"key": "text"}],
                            "value": {"string_match": {"safe_regex": {"regex": search_regex(p)}}},
                        },
                        "metadata_source": "DYNAMIC",
                    }
                }
            ],
        }
        for i, p in enumerate(patterns)
    }
    rules = {"action": "DENY", "policies": policies}
    key = "rules" if route.policy.guard_action == "block" else "shadow_rules"
    rbac: dict[str, Any] = {key: rules}
    return {RBAC_FILTER: {"@type": RBAC_PER_ROUTE_TYPE, "rbac": rbac}}
