"""The PrometheusRule: consumer budget alerts and canary error-rate alerts.

Rendered only when the gateway asks for it: a Consumer with `budget.usdPerMonth`, or a Route
under a Rollout that is progressing or paused (a completed or aborted rollout has nothing left
to compare).

Metric names this module assumes:

- Budgets use `envoy_gatewayctl_consumer_cost_nano_usd{consumer, route, model}`, the spend
  counter Envoy itself keeps (render/envoy/metrics.py: the Lua filter's cost of each response
  with a usage, in nano-USD), scraped from the pods like every Envoy stat. Spend is taken over a
  rolling 30 days, so Prometheus must retain at least that. The budgets themselves are
  recording rules (`gatewayctl:consumer_budget_usd_per_month`), so one pair of alerts covers
  every consumer and a budget change is a data change.
- Global limits alert when the rate limit service fails: Envoy's rate limit filter counts
  `ratelimit.error` on the routed cluster (`envoy_cluster_ratelimit_error`).
- Canaries use Envoy's per-cluster stats as scraped from the pods' admin port:
  `envoy_cluster_upstream_rq_xx{envoy_response_code_class="5"}` over
  `envoy_cluster_upstream_rq_total`, on the route's per-backend clusters
  (`render.envoy.metrics.error_ratio_promql`, which rollout analysis's names share). These
  count what clients of the route saw from that backend, fallbacks included.
"""

from __future__ import annotations

from typing import Any

from gatewayctl.ir import GatewayIR, RouteIR
from gatewayctl.render.envoy import metrics
from gatewayctl.render.envoy.names import backend_cluster_name
from gatewayctl.render.k8s.meta import MONITORING, KubeObject, metadata

COST_METRIC = metrics.CONSUMER_COST_METRIC
LIMIT_ERRORS = "envoy_cluster_ratelimit_error"
BUDGET_RECORD = "gatewayctl:consumer_budget_usd_per_month"
BUDGET_WARNING_RATIO = 0.8
# A canary alerts when its 5xx ratio exceeds the stable's by this much for CANARY_FOR.
CANARY_ERROR_MARGIN = 0.01
CANARY_WINDOW = "5m"
CANARY_FOR = "10m"


def wants_alerts(ir: GatewayIR) -> bool:
    return bool(_budgeted(ir) or _active_rollouts(ir) or ir.limits.scope == "global")


def _budgeted(ir: GatewayIR) -> list[tuple[str, float]]:
    return [(c.name, c.budget_usd_per_month) for c in ir.consumers if c.budget_usd_per_month]


def _active_rollouts(ir: GatewayIR) -> list[RouteIR]:
    return [
        r
        for r in ir.routes
        if r.rollout and r.rollout.state in ("progressing", "paused") and r.rollout.step > 0
    ]


def _number(value: float) -> str:
    return f"{value:f}".rstrip("0").rstrip(".")


def _budget_alert(gw: str, name: str, level: str, ratio: str, severity: str) -> dict[str, Any]:
    return {
        "alert": name,
        "annotations": {
            "description": (
                "Consumer {{ $labels.consumer }} of gateway " + gw + " has spent "
                "{{ $value | humanizePercentage }} of its monthly budget over the last 30 days."
            ),
            "summary": f"A gateway consumer is {level} its monthly budget",
        },
        "expr": ratio,
        "for": "15m",
        "labels": {"gateway": gw, "severity": severity},
    }


def _budget_group(ir: GatewayIR) -> dict[str, Any]:
    gw = ir.name
    spend = budget_spend_expr(ir)
    ratio = f'{spend} / on (consumer) {BUDGET_RECORD}{{gateway="{gw}"}}'
    rules: list[dict[str, Any]] = [
        {
            "expr": f"vector({_number(amount)})",
            "labels": {"consumer": consumer, "gateway": gw},
            "record": BUDGET_RECORD,
        }
        for consumer, amount in _budgeted(ir)
    ]
    rules.append(
        _budget_alert(
            gw,
            "GatewayConsumerBudgetNearlySpent",
            "close to",
            f"{ratio} > {BUDGET_WARNING_RATIO} <= 1",
            "warning",
        )
    )
    rules.append(
        _budget_alert(gw, "GatewayConsumerBudgetExceeded", "over", f"{ratio} > 1", "critical")
    )
    return {"name": f"gatewayctl.{gw}.budgets", "rules": rules}


def _error_ratio(namespace: str, cluster: str) -> str:
    return metrics.error_ratio_promql(cluster, CANARY_WINDOW, selector=f'namespace="{namespace}"')


def _canary_rule(ir: GatewayIR, route: RouteIR) -> dict[str, Any]:
    rollout = route.rollout
    assert rollout is not None
    canary = _error_ratio(ir.namespace, backend_cluster_name(route.name, rollout.canary))
    stable = _error_ratio(ir.namespace, backend_cluster_name(route.name, rollout.stable))
    return {
        "alert": "GatewayCanaryErrorRateAboveStable",
        "annotations": {
            "description": (
                f"Rollout {rollout.name}: {rollout.canary} answers route {route.name} with a "
                f"5xx ratio {{{{ $value | humanizePercentage }}}} above {rollout.stable}'s. "
                f"Consider `gatewayctl rollout abort {rollout.name}`."
            ),
            "summary": "A canary model fails more often than the stable one",
        },
        # A stable backend without traffic counts as error-free.
        "expr": f"{canary} - ({stable} or vector(0)) > {CANARY_ERROR_MARGIN}",
        "for": CANARY_FOR,
        "labels": {
            "canary": rollout.canary,
            "gateway": ir.name,
            "rollout": rollout.name,
            "route": route.name,
            "severity": "warning",
            "stable": rollout.stable,
        },
    }


def budget_spend_expr(ir: GatewayIR) -> str:
    """Each consumer's spend over 30 days in USD (the budget alerts' numerator)."""
    return f'(sum by (consumer) (increase({COST_METRIC}{{namespace="{ir.namespace}"}}[30d])) / 1e9)'


def _limits_group(ir: GatewayIR) -> dict[str, Any]:
    errors = f'sum(rate({LIMIT_ERRORS}{{namespace="{ir.namespace}"}}[5m]))'
    mode = (
        "admitted without a check (failureMode open)"
        if ir.limits.failure_mode == "open"
        else "refused with 503 (failureMode closed)"
    )
    return {
        "name": f"gatewayctl.{ir.name}.limits",
        "rules": [
            {
                "alert": "GatewayRateLimitServiceFailing",
                "annotations": {
                    "description": (
                        f"Gateway {ir.name}'s Envoys cannot ask the rate limit service (or its "
                        f"Redis): {{{{ $value | humanize }}}} requests/s with limits are {mode}."
                    ),
                    "summary": "Global limits are not being checked",
                },
                "expr": f"{errors} > 0",
                "for": "5m",
                "labels": {"gateway": ir.name, "severity": "critical"},
            }
        ],
    }


def render_prometheus_groups(ir: GatewayIR) -> list[dict[str, Any]]:
    """The rule groups; shared with the Helm values so the chart alerts the same way."""
    groups: list[dict[str, Any]] = []
    if _budgeted(ir):
        groups.append(_budget_group(ir))
    if ir.limits.scope == "global":
        groups.append(_limits_group(ir))
    rollouts = _active_rollouts(ir)
    if rollouts:
        groups.append(
            {
                "name": f"gatewayctl.{ir.name}.rollouts",
                "rules": [_canary_rule(ir, r) for r in rollouts],
            }
        )
    return groups


def render_prometheus_rule(ir: GatewayIR) -> KubeObject | None:
    groups = render_prometheus_groups(ir)
    if not groups:
        return None
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": metadata(ir, ir.name, MONITORING),
        "spec": {"groups": groups},
    }
