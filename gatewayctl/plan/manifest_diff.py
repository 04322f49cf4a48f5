"""The manifest layer of a plan: IR before vs IR after, in the words of the people reviewing it.

Route weights (with the rollout step behind them), backends and fallbacks added or removed,
prompt versions activated (with a template diff), effective policies loosened or tightened,
consumers added or given access, and each changed route's estimated cost per 1,000 requests.
Detail values are display strings ("90%", "$5.50", "30s"); the machine-readable state of each
object is in the change's `before` and `after`. Pure: two IRs in, a list of changes out.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from gatewayctl.ir import ConsumerIR, GatewayIR, KubernetesIR, ModelIR, ProviderIR, RouteIR
from gatewayctl.plan.cost import format_usd, relative_change, route_cost_per_1k
from gatewayctl.plan.ir_diff import (
    IRDifference,
    exists_on_both_sides,
    ir_differences,
    is_covered,
    owner,
)
from gatewayctl.plan.limits_diff import (
    diff_scope_effects,
    effective_limit,
    limits_scope_text,
    replicas_note,
    scope_note,
)
from gatewayctl.plan.model import Action, Change, Detail, sort_changes
from gatewayctl.plan.policy_diff import compare_policies, policy_view
from gatewayctl.plan.prompt_diff import diff_prompts
from gatewayctl.plan.rollout_diff import diff_rollouts
from gatewayctl.plan.units import format_ms
from gatewayctl.render.envoy.cache import cache_store_text

COST_FIELD = "cost per 1,000 requests"


def _join(items: tuple[str, ...] | list[str]) -> str | None:
    return ", ".join(items) or None


# -- routes -----------------------------------------------------------------------------------

def route_view(route: RouteIR, models: Mapping[str, ModelIR]) -> dict[str, Any]:
    ro = route.rollout
    return {
        "model": route.public_model,
        "backends": [{"model": b.model, "weight": b.weight, "role": b.role}
                     for b in route.backends],
        "fallback": list(route.fallback),
        "retry": {"attempts": route.retry_attempts,
                  "per_try_timeout_ms": route.per_try_timeout_ms},
        "timeout_ms": route.timeout_ms,
        "policies": list(route.policy.sources),
        "prompt": route.prompt.name if route.prompt else None,
        "rollout": None if ro is None else {
            "name": ro.name, "step": ro.step, "steps": len(ro.steps), "state": ro.state},
        "cost_per_1k_requests": route_cost_per_1k(route, models),
    }


def _rollout_text(route: RouteIR) -> str | None:
    ro = route.rollout
    if ro is None:
        return None
    return f"step {ro.step} of {len(ro.steps)}, {ro.state}"


def _weights_note(before: RouteIR, after: RouteIR) -> str:
    ro = after.rollout or before.rollout
    if ro is None:
        return ""
    return f"set by rollout {ro.name}, step {ro.step} of {len(ro.steps)}"


def _backend_details(before: RouteIR | None, after: RouteIR | None) -> list[Detail]:
    old = {b.model: b for b in before.backends} if before else {}
    new = {b.model: b for b in after.backends} if after else {}
    note = _weights_note(before, after) if before and after else ""
    out: list[Detail] = []
    for model in [*old, *(m for m in new if m not in old)]:
        b, a = old.get(model), new.get(model)
        if b is not None and a is not None and b.weight == a.weight:
            continue
        field = f"backend {model}"
        if b is None and a is not None:
            out.append(Detail(field, None, f"{a.weight}%", "added" if before else ""))
        elif a is None and b is not None:
            out.append(Detail(field, f"{b.weight}%", None, "removed" if after else ""))
        elif a is not None and b is not None:
            out.append(Detail(field, f"{b.weight}%", f"{a.weight}%", note))
    return out


def _fallback_detail(before: tuple[str, ...], after: tuple[str, ...]) -> Detail | None:
    if before == after:
        return None
    added = [m for m in after if m not in before]
    removed = [m for m in before if m not in after]
    parts = ([f"added {', '.join(added)}"] if added else []) + (
        [f"removed {', '.join(removed)}"] if removed else [])
    return Detail("fallback", _join(before), _join(after), "; ".join(parts) or "reordered")


def _route_details(before: RouteIR | None, after: RouteIR | None,
                   cost_before: float | None, cost_after: float | None) -> list[Detail]:
    out: list[Detail] = []

    def pair(field: str, get: Callable[[RouteIR], Any], note: str = "") -> None:
        b = get(before) if before else None
        a = get(after) if after else None
        if b != a:
            out.append(Detail(field, b, a, note))

    pair("public model", lambda r: r.public_model)
    rollout = (after.rollout if after else None) or (before.rollout if before else None)
    if rollout is not None:
        pair(f"rollout {rollout.name}", _rollout_text)
    out.extend(_backend_details(before, after))
    if before and after:
        fallback = _fallback_detail(before.fallback, after.fallback)
        out += [fallback] if fallback else []
    else:
        pair("fallback", lambda r: _join(r.fallback))
    pair("retry attempts", lambda r: r.retry_attempts)
    pair("per-try timeout", lambda r: format_ms(r.per_try_timeout_ms))
    pair("timeout", lambda r: format_ms(r.timeout_ms))
    pair("policies", lambda r: _join(r.policy.sources))
    if after is not None and (before is None or before.policy.api_keys != after.policy.api_keys
                              or before.policy.allow_consumers != after.policy.allow_consumers):
        pair("access", _access_text)
    pair("prompt", lambda r: r.prompt.name if r.prompt else None)
    if out or cost_before != cost_after:
        out.append(Detail(COST_FIELD, format_usd(cost_before), format_usd(cost_after),
                          relative_change(cost_before, cost_after)))
    return out


def _access_text(route: RouteIR) -> str:
    policy = route.policy
    if not policy.api_keys:
        return "anyone (no API key required)"
    if policy.allow_consumers is None:
        return "any consumer with a key"
    return _join(policy.allow_consumers) or "no consumer"


def diff_routes(before: GatewayIR | None, after: GatewayIR | None) -> list[Change]:
    old = {r.name: r for r in before.routes} if before else {}
    new = {r.name: r for r in after.routes} if after else {}
    old_models = {m.name: m for m in before.models} if before else {}
    new_models = {m.name: m for m in after.models} if after else {}
    prices_changed = old_models != new_models
    changes: list[Change] = []
    for name in sorted(set(old) | set(new)):
        b, a = old.get(name), new.get(name)
        if a == b and not prices_changed:
            continue
        cost_b = route_cost_per_1k(b, old_models) if b else None
        cost_a = route_cost_per_1k(a, new_models) if a else None
        if a == b and cost_a == cost_b:
            continue
        details = _route_details(b, a, cost_b, cost_a)
        if not details:
            continue
        action: Action = "create" if b is None else "delete" if a is None else "update"
        changes.append(Change(
            "manifest", "Route", name, action, tuple(details),
            route_view(b, old_models) if b else None, route_view(a, new_models) if a else None))
    return changes


def diff_policies(before: GatewayIR | None, after: GatewayIR | None) -> list[Change]:
    """Effective policy changes of routes present on both sides, grouped by identical change."""
    if before is None or after is None:
        return []
    old = {r.name: r for r in before.routes}
    members: dict[str, tuple[str, ...]] = {}
    for consumer in after.consumers:
        if consumer.team:
            members[consumer.team] = (*members.get(consumer.team, ()), consumer.name)
    groups: dict[tuple[str, str], tuple[Change, list[str]]] = {}
    for route in after.routes:
        prev = old.get(route.name)
        if prev is None or prev.policy == route.policy:
            continue
        shown = (partial(effective_limit, before), partial(effective_limit, after))
        details = compare_policies(prev.policy, route.policy, members, shown)
        if not details:
            continue
        b, a = policy_view(prev.policy), policy_view(route.policy)
        key = (json.dumps(b, sort_keys=True), json.dumps(a, sort_keys=True))
        if key not in groups:
            name = ", ".join(route.policy.sources) or "(no policies)"
            groups[key] = (Change("manifest", "Policy", name, "update", details, b, a), [])
        groups[key][1].append(route.name)
    return [Change(c.layer, c.kind, c.name, c.action, c.details, c.before, c.after,
                   tuple(sorted(routes))) for c, routes in groups.values()]


# -- consumers, gateway, providers, models ----------------------------------------------------

def _grants(ir: GatewayIR | None) -> dict[str, list[str]]:
    """Routes each consumer is explicitly allowed on (an allow list naming it or its team)."""
    out: dict[str, list[str]] = {}
    for route in ir.routes if ir else ():
        if route.policy.api_keys and route.policy.allow_consumers is not None:
            for consumer in route.policy.allow_consumers:
                out.setdefault(consumer, []).append(route.name)
    return out


def consumer_view(c: ConsumerIR, access: list[str]) -> dict[str, Any]:
    key = f"{c.api_key.name}/{c.api_key.key}" if c.api_key is not None else None
    view = {"team": c.team, "api_key": key,
            "budget_usd_per_month": c.budget_usd_per_month, "access": sorted(access)}
    if c.budget_enforce:  # over budget: 429 (global limits)
        view["budget_enforced"] = True
    return view


def gateway_view(ir: GatewayIR) -> dict[str, Any]:
    view: dict[str, Any] = {
        "namespace": ir.namespace, "listener_port": ir.listener_port,
        "replicas_min": ir.replicas_min, "replicas_max": ir.replicas_max,
        "target_cpu_utilization": ir.target_cpu, "image": ir.image,
        "limits_scope": limits_scope_text(ir),
        "data_plane_filters": ir.data_plane_filters,
    }
    if ir.limits.scope == "global":
        view["limits_redis"] = ir.limits.redis_address
        view["limits_redis_login"] = _redis_login(ir)
        view["limits_redis_tls"] = _redis_tls(ir)
        view["limits_failure_mode"] = ir.limits.failure_mode
    if any(r.policy.cache is not None for r in ir.routes):
        view["response_cache_store"] = cache_store_text(ir)
    view.update(kubernetes_view(ir))
    return view


# Gateway.spec.kubernetes, in the manifest's own names: IR field -> manifest field.
KUBERNETES_FIELDS = {
    "resources": "resources", "node_selector": "nodeSelector", "tolerations": "tolerations",
    "affinity": "affinity", "priority_class_name": "priorityClassName",
    "service_type": "service.type", "service_annotations": "service.annotations",
    "labels": "labels", "annotations": "annotations", "pod_monitor": "podMonitor.enabled",
    "pod_monitor_interval": "podMonitor.interval", "pod_monitor_labels": "podMonitor.labels",
    "network_policy": "networkPolicy", "cache_store_image": "cacheStoreImage",
}


def kubernetes_view(ir: GatewayIR) -> dict[str, Any]:
    """The Kubernetes deployment settings that differ from gatewayctl's defaults, keyed
    `kubernetes.<manifest field>` (JSON text for structures): a default is left out, so a plan
    that creates everything lists only what the manifests set."""
    default = KubernetesIR()
    view: dict[str, Any] = {}
    for name, shown in KUBERNETES_FIELDS.items():
        value = getattr(ir.kubernetes, name)
        if value == getattr(default, name):
            continue
        if isinstance(value, (dict, list, tuple)):
            value = json.dumps(value, sort_keys=True, separators=(", ", ": "))
        view[f"kubernetes.{shown}"] = value
    return view


def _redis_login(ir: GatewayIR) -> str:
    """How the services log in to Redis: the Secret key that holds the password, never it."""
    secret = ir.limits.redis_password
    if secret is None:
        return "none"
    user = ir.limits.redis_username or "default"
    return f"AUTH as {user}, password from Secret {secret.name}/{secret.key}"


def _redis_tls(ir: GatewayIR) -> str:
    if not ir.limits.redis_tls:
        return "off"
    ca = ir.limits.redis_ca
    return f"on, CAs from Secret {ca.name}/{ca.key}" if ca else "on, the system's CAs"


def _cache_store_note(before: Any, after: Any) -> str:
    if before is None or after is None:
        return ""
    if str(after).startswith("shared"):
        return ("the cache is now shared: a request any replica answered is a hit on all; "
                "the entries each Envoy kept are not moved over")
    if str(before).startswith("shared"):
        return "each Envoy worker now caches alone; the entries in Redis are no longer used"
    return ""


def provider_view(p: ProviderIR) -> dict[str, Any]:
    port = "" if (p.scheme, p.port) in (("https", 443), ("http", 80)) else f":{p.port}"
    return {"type": p.type, "endpoint": f"{p.scheme}://{p.host}{port}{p.base_path}",
            "timeout_ms": p.timeout_ms, "max_connections": p.max_connections,
            "credential": f"{p.credential.name}/{p.credential.key}" if p.credential else None}


def model_view(m: ModelIR) -> dict[str, Any]:
    return {"provider": m.provider, "upstream_model": m.upstream_model,
            "context_window": m.context_window,
            "input_per_million": m.input_per_million,
            "output_per_million": m.output_per_million,
            "deprecated": m.deprecated}


def _view_change(kind: str, name: str, before: dict[str, Any] | None,
                 after: dict[str, Any] | None, affects: tuple[str, ...] = (),
                 notes: Mapping[str, Callable[[Any, Any], str]] | None = None) -> Change | None:
    if before == after:
        return None
    details = []
    # after's keys in order, then those only before has (a setting back at its default)
    for key in dict.fromkeys([*(after or {}), *(before or {})]):
        b = (before.get(key) if before else None) or _none_if_empty(before, key)
        a = (after.get(key) if after else None) or _none_if_empty(after, key)
        if b != a:
            note = (notes or {}).get(key, lambda _b, _a: "")(b, a) if before and after else ""
            details.append(Detail(LABELS.get(key, key.replace("_", " ")), _shown(key, b),
                                  _shown(key, a), note))
    action: Action = "create" if before is None else "delete" if after is None else "update"
    return Change("manifest", kind, name, action, tuple(details), before, after, affects)


# How view fields are named and shown in details (the views keep raw values).
LABELS = {
    "limits_scope": "limits",
    "limits_redis": "limits: Redis",
    "limits_redis_login": "limits: Redis login",
    "limits_redis_tls": "limits: Redis TLS",
    "limits_failure_mode": "limits: when the rate limit service fails",
    "response_cache_store": "response cache store",
    "timeout_ms": "timeout",
    "input_per_million": "input price per 1M tokens",
    "output_per_million": "output price per 1M tokens",
    "budget_usd_per_month": "budget per month",
    "target_cpu_utilization": "target CPU utilization",
    "data_plane_filters": "dataPlaneFilters",
}
_FORMATS: dict[str, Callable[[Any], Any]] = {
    "timeout_ms": format_ms,
    "input_per_million": format_usd,
    "output_per_million": format_usd,
    "budget_usd_per_month": format_usd,
}


def _shown(key: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        return _join(value)
    return _FORMATS.get(key, lambda v: v)(value)


def _none_if_empty(view: dict[str, Any] | None, key: str) -> Any:
    """Keep falsy scalars (0, False); an empty list or a missing value is "none"."""
    value = view.get(key) if view else None
    return None if value is None or value == [] else value


def _access_note(before: list[str] | None, after: list[str] | None) -> str:
    given = sorted(set(after or ()) - set(before or ()))
    lost = sorted(set(before or ()) - set(after or ()))
    return "; ".join(([f"given access to {', '.join(given)}"] if given else [])
                     + ([f"access removed from {', '.join(lost)}"] if lost else []))


def _price_note(before: float, after: float) -> str:
    return "price up" if after > before else "price down"


def _diff_named(kind: str, before: Mapping[str, Any], after: Mapping[str, Any],
                view: Callable[[Any], dict[str, Any]],
                affects: Callable[[str], tuple[str, ...]] = lambda _n: (),
                notes: Mapping[str, Callable[[Any, Any], str]] | None = None) -> list[Change]:
    out = []
    for name in sorted(set(before) | set(after)):
        b, a = before.get(name), after.get(name)
        if a == b:
            continue
        change = _view_change(kind, name, view(b) if b is not None else None,
                              view(a) if a is not None else None, affects(name), notes)
        if change:
            out.append(change)
    return out


def _model_users(ir: GatewayIR | None) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for route in ir.routes if ir else ():
        for model in [b.model for b in route.backends] + list(route.fallback):
            out.setdefault(model, set()).add(route.name)
    return out


def diff_gateway_ir(before: GatewayIR | None, after: GatewayIR | None) -> tuple[Change, ...]:
    """Every manifest-level change from `before` (None: nothing live) to `after`."""
    changes: list[Change] = []
    either = after or before
    if either is not None:
        gw = _view_change("Gateway", either.name, gateway_view(before) if before else None,
                          gateway_view(after) if after else None,
                          notes={"limits_scope": scope_note,
                                 "response_cache_store": _cache_store_note,
                                 "replicas_max": lambda _b, _a: replicas_note(after)})
        changes += [gw] if gw else []
    changes += _diff_named(
        "Provider", {p.name: p for p in before.providers} if before else {},
        {p.name: p for p in after.providers} if after else {}, provider_view)
    users_b, users_a = _model_users(before), _model_users(after)
    changes += _diff_named(
        "Model", {m.name: m for m in before.models} if before else {},
        {m.name: m for m in after.models} if after else {}, model_view,
        lambda n: tuple(sorted(users_a.get(n, set()) | users_b.get(n, set()))),
        {"input_per_million": _price_note, "output_per_million": _price_note})
    changes += diff_routes(before, after)
    changes += diff_rollouts(before, after)
    changes += diff_prompts(before, after)
    changes += diff_policies(before, after)
    changes += diff_scope_effects(before, after)
    grants_b, grants_a = _grants(before), _grants(after)
    changes += _diff_named(
        "Consumer", {c.name: (c, grants_b.get(c.name, [])) for c in before.consumers}
        if before else {},
        {c.name: (c, grants_a.get(c.name, [])) for c in after.consumers} if after else {},
        lambda pair: consumer_view(*pair), notes={"access": _access_note})
    if before is not None and after is not None:
        changes = add_other_changes(changes, ir_differences(before, after), after.name)
    return sort_changes(changes)


def _explained(difference: IRDifference, changes: list[Change]) -> bool:
    """A covered difference is explained when a worded change of its object was made."""
    if not is_covered(difference):
        return False
    found = owner(difference)
    if found is None:
        return any(c.kind == "Gateway" and c.details for c in changes)
    kind, name = found
    return any(c.details and ((c.kind, c.name) == (kind, name)
                              or (kind == "Route" and name in c.affects)) for c in changes)


def add_other_changes(changes: list[Change], differences: tuple[IRDifference, ...],
                      gateway: str) -> list[Change]:
    """Every IR difference no worded change explains, as "other change: <IR path>: old ->
    new" on its object's change (made an update when there was none)."""
    out = list(changes)
    for difference in differences:
        if not exists_on_both_sides(difference) or _explained(difference, changes):
            continue
        kind, name = owner(difference) or ("Gateway", gateway)
        detail = Detail(f"other change: {difference.text}", _other(difference.before),
                        _other(difference.after))
        at = next((i for i, c in enumerate(out) if (c.kind, c.name) == (kind, name)
                   or (kind == "Gateway" and c.kind == "Gateway")), None)
        if at is None:
            out.append(Change("manifest", kind, name, "update", (detail,)))
        else:
            c = out[at]
            out[at] = dataclasses.replace(c, details=(*c.details, detail))
    return out


def _other(value: Any) -> Any:
    return "(none)" if value is None else value
