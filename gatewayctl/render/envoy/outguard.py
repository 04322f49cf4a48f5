"""Output guardrails' data for the body filter (lua/outguard.lua) and their counter.

Routes with the same output patterns, action and redactions share one entry `o<k>` of
DATA.outguards: the patterns' automaton (manifests/output_dfa.py), `block`, and the redaction
kinds. A gateway without output guardrails renders none of it: no data, no module, no counter.
"""

from __future__ import annotations

from typing import Any

from gatewayctl.ir import GatewayIR, RouteIR
from gatewayctl.manifests.output_dfa import compile_patterns
from gatewayctl.render.envoy import metrics
from gatewayctl.render.envoy.access_log import when_metadata_present
from gatewayctl.render.envoy.names import (
    METADATA_NS,
    OUTPUT_GUARDRAIL_KEY,
    ROUTE_KEY,
    STATS_LOG_TYPE,
)

OutguardKey = tuple[tuple[str, ...], str, tuple[str, ...]]


def _key(route: RouteIR) -> OutguardKey | None:
    policy = route.policy
    if not policy.output_deny_patterns and not policy.output_redact:
        return None
    return (policy.output_deny_patterns, policy.output_action, policy.output_redact)


def outguard_ids(ir: GatewayIR) -> dict[OutguardKey, str]:
    keys = sorted({k for r in ir.routes if (k := _key(r)) is not None})
    return {k: f"o{i}" for i, k in enumerate(keys)}


def has_outguard(ir: GatewayIR) -> bool:
    return any(_key(r) is not None for r in ir.routes)


def route_outguard(route: RouteIR, ids: dict[OutguardKey, str]) -> str | None:
    key = _key(route)
    return None if key is None else ids[key]


def outguard_data(ir: GatewayIR) -> dict[str, Any]:
    """DATA.outguards, or nothing on a gateway without output guardrails."""
    ids = outguard_ids(ir)
    if not ids:
        return {}
    out: dict[str, Any] = {}
    for (patterns, action, redact), gid in ids.items():
        entry: dict[str, Any] = {"block": action == "block" and bool(patterns)}
        if patterns:
            entry["dfa"] = compile_patterns(patterns).to_data()
        if redact:
            entry["redact"] = {kind: True for kind in redact}
        out[gid] = entry
    return {"outguards": out}


def render_outguard_stats_log(ir: GatewayIR) -> dict[str, Any] | None:
    """`gatewayctl.output_guardrail.hits{route, verdict}`: answers blocked or logged by output
    patterns (only on gateways with output deny patterns)."""
    if not any(r.policy.output_deny_patterns for r in ir.routes):
        return None
    md = f"%DYNAMIC_METADATA({METADATA_NS}:{{}})%"
    return {
        "name": "envoy.access_loggers.stats",
        "filter": when_metadata_present(OUTPUT_GUARDRAIL_KEY),
        "typed_config": {
            "@type": STATS_LOG_TYPE,
            "stats_scope": {"prefix": metrics.STATS_SCOPE},
            "counters": [{
                "stat": {
                    "name": metrics.stat_name(metrics.OUTPUT_GUARDRAIL, metrics.OUTPUT_HITS),
                    "tags": [{"name": "route", "value_format": md.format(ROUTE_KEY)},
                             {"name": "verdict", "value_format": md.format(OUTPUT_GUARDRAIL_KEY)}],
                },
                "value_fixed": 1,
            }],
        },
    }
