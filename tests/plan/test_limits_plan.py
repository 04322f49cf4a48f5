"""The plan states effective limits: per replica, "up to N x the limit at max replicas"; in
global scope, the limit for all replicas together; a scope change is a visible change."""

from __future__ import annotations

import dataclasses

from gatewayctl.ir import GatewayIR, LimitsIR
from gatewayctl.plan.manifest_diff import diff_gateway_ir
from tests.limits.gateways import limits_ir

GLOBAL = LimitsIR(scope="global", redis_address="redis.ai:6379")


def changes_of(before: GatewayIR, after: GatewayIR) -> dict[tuple[str, str], object]:
    return {(c.kind, c.name): c for c in diff_gateway_ir(before, after)}


def test_scope_change_is_visible_with_each_limits_effect() -> None:
    before = dataclasses.replace(limits_ir(requests=600, per_s=60), replicas_max=10)
    after = dataclasses.replace(before, limits=GLOBAL)
    changes = diff_gateway_ir(before, after)
    gateway = next(c for c in changes if c.kind == "Gateway")
    scope = next(d for d in gateway.details if d.field == "limits")
    assert scope.before == "replica (each Envoy counts alone: up to 10 x each limit)"
    assert scope.after == "global (counts shared by all replicas through Redis)"
    assert scope.note == "tightened: every limit now holds across replicas"
    assert any(d.field == "limits: Redis" and d.after == "redis.ai:6379" for d in gateway.details)
    [policy] = [c for c in changes if c.kind == "Policy"]
    assert policy.affects == ("limited",)
    [detail] = policy.details
    assert detail.before == ("600 requests/minute per consumer "
                             "(per replica: up to 10 x 600 at max replicas)")
    assert detail.after == "600 requests/minute per consumer (all replicas together)"
    assert detail.note.startswith("tightened: admits 1 x the limit where it admitted 10 x")
    # and back: loosened
    back = next(c for c in diff_gateway_ir(after, before) if c.kind == "Policy")
    assert back.details[0].note.startswith("loosened")


def test_more_replicas_loosen_replica_scope_limits() -> None:
    before = dataclasses.replace(limits_ir(requests=600, per_s=60), replicas_max=10)
    after = dataclasses.replace(before, replicas_max=20)
    changes = diff_gateway_ir(before, after)
    gateway = next(c for c in changes if c.kind == "Gateway")
    replicas = next(d for d in gateway.details if d.field == "replicas max")
    assert replicas.note == "replica-scope limits now admit up to 20 x each limit"
    policy = next(c for c in changes if c.kind == "Policy")
    assert policy.details[0].after.endswith("(per replica: up to 20 x 600 at max replicas)")
    # in global scope the replica count does not change what a limit admits
    g_before = dataclasses.replace(before, limits=GLOBAL)
    g_after = dataclasses.replace(after, limits=GLOBAL)
    assert not [c for c in diff_gateway_ir(g_before, g_after) if c.kind == "Policy"]


def test_enforcing_a_budget_is_a_consumer_change() -> None:
    before = limits_ir(scope=GLOBAL, budgets={"search-app": 500.0}, enforce=False)
    after = limits_ir(scope=GLOBAL, budgets={"search-app": 500.0})
    [consumer] = [c for c in diff_gateway_ir(before, after) if c.kind == "Consumer"]
    assert [(d.field, d.before, d.after) for d in consumer.details] == [
        ("budget enforced", None, True)]


def test_the_cache_store_change_is_stated_in_users_terms() -> None:
    from gatewayctl.ir import CacheIR

    base = limits_ir(requests=600, per_s=60)
    route = base.routes[0]
    cached = dataclasses.replace(base, routes=(
        dataclasses.replace(route, policy=dataclasses.replace(
            route.policy, cache=CacheIR(ttl_s=600))), *base.routes[1:]))
    shared = dataclasses.replace(cached, limits=GLOBAL)
    gateway = next(c for c in diff_gateway_ir(cached, shared) if c.kind == "Gateway")
    store = next(d for d in gateway.details if d.field == "response cache store")
    assert store.before == "per Envoy worker (each worker of each replica keeps its own entries)"
    assert store.after == ("shared by every replica: Redis redis.ai:6379 through the cache store "
                           f"service {base.name}-cache-store (a miss when it fails or takes "
                           "longer than 100 ms)")
    assert store.note.startswith("the cache is now shared")
    back = next(c for c in diff_gateway_ir(shared, cached) if c.kind == "Gateway")
    assert next(d for d in back.details if d.field == "response cache store").note == (
        "each Envoy worker now caches alone; the entries in Redis are no longer used")
    # without a cache the scope change says nothing about a cache
    plain = next(c for c in diff_gateway_ir(base, dataclasses.replace(base, limits=GLOBAL))
                 if c.kind == "Gateway")
    assert not [d for d in plain.details if d.field == "response cache store"]


def test_redis_login_and_tls_changes_name_the_secret_never_its_value() -> None:
    from gatewayctl.ir import SecretRefIR

    before = limits_ir(scope=GLOBAL, requests=600, per_s=60)
    secured = dataclasses.replace(GLOBAL, redis_username="gateway",
                                  redis_password=SecretRefIR("redis-auth", "password"),
                                  redis_tls=True, redis_ca=SecretRefIR("redis-ca", "ca.crt"))
    after = dataclasses.replace(before, limits=secured)
    [gateway] = [c for c in diff_gateway_ir(before, after)]
    assert gateway.kind == "Gateway"
    shown = {d.field: (d.before, d.after) for d in gateway.details}
    assert shown == {
        "limits: Redis login": ("none", "AUTH as gateway, password from Secret "
                                        "redis-auth/password"),
        "limits: Redis TLS": ("off", "on, CAs from Secret redis-ca/ca.crt"),
    }
    # another key of the Secret (a rotation by a new key) is a change too
    rotated = dataclasses.replace(after, limits=dataclasses.replace(
        secured, redis_password=SecretRefIR("redis-auth", "password-next"), redis_ca=None))
    [gateway] = [c for c in diff_gateway_ir(after, rotated)]
    assert {d.field: d.after for d in gateway.details} == {
        "limits: Redis login": "AUTH as gateway, password from Secret redis-auth/password-next",
        "limits: Redis TLS": "on, the system's CAs",
    }
