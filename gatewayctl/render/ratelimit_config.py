"""The rate limit service's configuration for global limits, in envoyproxy/ratelimit's format.

One YAML document (`domain`, then nested `descriptors`, each with `key`, optional `value`,
`rate_limit: {unit, requests_per_unit}` and child `descriptors`), as the official service
reads it from its runtime directory; the local stand-in (local/ratelimit/) reads the same.
It matches the descriptors Envoy sends (render/envoy/global_limits.py):

- l<i> = <route> [consumer = *]: the route's i-th request limit;
- t<i> = <route> [consumer = *]: its i-th token limit (hits are tokens);
- budget = <consumer>: an enforced budget, in units of global_limits.budget_unit_usd per
  month (the service's month: 30 days from the Unix epoch, not the calendar month).

A key without a value matches every value and counts each value apart (one count per
consumer). Pure: the same IR gives the same bytes.
"""

from __future__ import annotations

from typing import Any

import yaml

from gatewayctl.errors import GatewayctlError
from gatewayctl.ir import GatewayIR, LimitIR
from gatewayctl.render.envoy.global_limits import budget_units, enforced_budgets, is_global
from gatewayctl.render.envoy.names import BUDGET_DESCRIPTOR, CONSUMER_DESCRIPTOR

CONFIG_FILE = "config.yaml"
UNITS = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}


def _unit(limit: LimitIR) -> str:
    unit = UNITS.get(limit.period_s)
    if unit is None:  # the manifests only allow these periods
        raise GatewayctlError(f"a limit per {limit.period_s}s has no rate limit service unit")
    return unit


def _limit_descriptor(key: str, route: str, limit: LimitIR) -> dict[str, Any]:
    rate = {"unit": _unit(limit), "requests_per_unit": limit.amount}
    if limit.by == "consumer":
        per_consumer = [{"key": CONSUMER_DESCRIPTOR, "rate_limit": rate}]
        return {"key": key, "value": route, "descriptors": per_consumer}
    return {"key": key, "value": route, "rate_limit": rate}


def render_ratelimit_config(ir: GatewayIR) -> dict[str, Any] | None:
    """The service's configuration; None in replica scope."""
    if not is_global(ir):
        return None
    descriptors: list[dict[str, Any]] = []
    for route in sorted(ir.routes, key=lambda r: r.name):
        for slot, limit in enumerate(route.policy.rate_limits):
            descriptors.append(_limit_descriptor(f"l{slot}", route.name, limit))
        for slot, limit in enumerate(route.policy.token_limits):
            descriptors.append(_limit_descriptor(f"t{slot}", route.name, limit))
    for consumer, usd in sorted(enforced_budgets(ir)):
        descriptors.append(
            {
                "key": BUDGET_DESCRIPTOR,
                "value": consumer,
                "rate_limit": {"unit": "month", "requests_per_unit": budget_units(ir, usd)},
            }
        )
    return {"domain": ir.name, "descriptors": descriptors}


def dump_ratelimit_config(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False, width=100)
