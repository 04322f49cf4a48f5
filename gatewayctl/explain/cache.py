"""Whether the response cache would take part in one request (explain): the route's cache, the
client's opt-out headers, and the rules of lua/cache_request.lua, without running anything.

A request the gateway refuses is never looked up or stored; whether a forwarded answer is
stored depends on the answer (a whole 200, not content-filtered, within the entry bound), which
explain cannot know: it says so.
"""

from __future__ import annotations

from collections.abc import Sequence

from gatewayctl.explain.model import CacheVerdict
from gatewayctl.ir import GatewayIR, RouteIR
from gatewayctl.render.envoy.cache import cache_store_text


def cache_verdict(ir: GatewayIR, route: RouteIR, headers: Sequence[tuple[str, str]],
                  forwarded: bool) -> CacheVerdict | None:
    """None on a route without a cache."""
    cache = route.policy.cache
    if cache is None:
        return None
    shared = cache.by == "route"
    store = cache_store_text(ir)

    def verdict(cacheable: bool, lookup: bool, reason: str) -> CacheVerdict:
        return CacheVerdict(cacheable=cacheable, lookup=lookup, shared=shared,
                            ttl_s=cache.ttl_s, reason=reason, store=store)

    if not forwarded:
        return verdict(False, False, "refused before the cache: neither looked up nor stored")
    values = {k.lower(): v for k, v in headers}
    if cache.mode == "on-request" and values.get("x-gateway-cache") != "use":
        return verdict(False, False, "the route caches only requests that send "
                                     "x-gateway-cache: use (bypass)")
    control = values.get("cache-control", "").lower()
    if "no-store" in control:
        return verdict(False, False, "cache-control: no-store: neither looked up nor stored "
                                     "(bypass)")
    whose = "any consumer's" if shared else "this consumer's"
    if "no-cache" in control:
        return verdict(True, False, f"cache-control: no-cache: not looked up; a whole 200 answer "
                                    f"is stored for {cache.ttl_s}s")
    return verdict(True, True, f"looked up among {whose} answers to the same request; on a "
                               f"miss a whole 200 answer is stored for {cache.ttl_s}s")
