"""The PrometheusRule: present only when budgets or rollouts ask; what it alerts on."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from gatewayctl.ir import GatewayIR
from gatewayctl.render.k8s.alerts import render_prometheus_rule


def without_budgets(ir: GatewayIR) -> GatewayIR:
    consumers = tuple(dataclasses.replace(c, budget_usd_per_month=None) for c in ir.consumers)
    return dataclasses.replace(ir, consumers=consumers)


def with_rollout_state(
    ir: GatewayIR, state: Literal["progressing", "paused", "aborted", "completed"]
) -> GatewayIR:
    routes = tuple(
        dataclasses.replace(r, rollout=dataclasses.replace(r.rollout, state=state))
        if r.rollout
        else r
        for r in ir.routes
    )
    return dataclasses.replace(ir, routes=routes)


def rules(rule: dict[str, Any] | None) -> dict[str, list[dict[str, Any]]]:
    assert rule is not None
    return {g["name"]: g["rules"] for g in rule["spec"]["groups"]}


def test_budgets_and_rollouts_each_get_a_group(multi_team: GatewayIR) -> None:
    groups = rules(render_prometheus_rule(multi_team))
    assert sorted(groups) == ["gatewayctl.ai-gateway.budgets", "gatewayctl.ai-gateway.rollouts"]
    budgets = groups["gatewayctl.ai-gateway.budgets"]
    records = [r for r in budgets if "record" in r]
    assert [(r["labels"]["consumer"], r["expr"]) for r in records] == [
        ("helpdesk", "vector(2000)"),
        ("search-app", "vector(500)"),
    ]
    alerts = {r["alert"]: r for r in budgets if "alert" in r}
    assert alerts["GatewayConsumerBudgetExceeded"]["expr"] == (
        '(sum by (consumer) (increase(envoy_gatewayctl_consumer_cost_nano_usd'
        '{namespace="ai-gateway"}[30d])) / 1e9) / on (consumer) '
        'gatewayctl:consumer_budget_usd_per_month{gateway="ai-gateway"} > 1'
    )
    assert alerts["GatewayConsumerBudgetNearlySpent"]["expr"].endswith(" > 0.8 <= 1")
    [canary] = groups["gatewayctl.ai-gateway.rollouts"]
    assert canary["labels"]["rollout"] == "chat-gpt4o-nov"
    assert 'envoy_cluster_name="r_chat_gpt-4o-2024-11-20"' in canary["expr"]
    assert 'envoy_cluster_name="r_chat_gpt-4o-2024-08-06"' in canary["expr"]
    assert 'namespace="ai-gateway"' in canary["expr"]


def test_no_rule_without_budgets_or_active_rollouts(multi_team: GatewayIR) -> None:
    quiet = without_budgets(multi_team)
    assert sorted(rules(render_prometheus_rule(quiet))) == ["gatewayctl.ai-gateway.rollouts"]
    for state in ("completed", "aborted"):
        assert render_prometheus_rule(with_rollout_state(quiet, state)) is None
    paused = rules(render_prometheus_rule(with_rollout_state(quiet, "paused")))
    assert list(paused) == ["gatewayctl.ai-gateway.rollouts"]
    only_budgets = rules(render_prometheus_rule(with_rollout_state(multi_team, "completed")))
    assert list(only_budgets) == ["gatewayctl.ai-gateway.budgets"]


def test_fractional_budgets_are_written_exactly(multi_team: GatewayIR) -> None:
    consumers = tuple(
        dataclasses.replace(c, budget_usd_per_month=12.5) for c in multi_team.consumers
    )
    groups = rules(render_prometheus_rule(dataclasses.replace(multi_team, consumers=consumers)))
    records = [r["expr"] for r in groups["gatewayctl.ai-gateway.budgets"] if "record" in r]
    assert records == ["vector(12.5)", "vector(12.5)"]


def test_the_canary_alert_and_rollout_analysis_read_the_same_series() -> None:
    from gatewayctl.render.envoy.metrics import error_ratio_promql
    from gatewayctl.rollout.measure import GatewayMetrics

    names = GatewayMetrics()
    promql = error_ratio_promql("r_chat_b", "5m", selector='namespace="ai"')
    assert promql == (
        '(sum(rate(envoy_cluster_upstream_rq_xx{namespace="ai", envoy_cluster_name="r_chat_b", '
        'envoy_response_code_class="5"}[5m])) / sum(rate(envoy_cluster_upstream_rq_total'
        '{namespace="ai", envoy_cluster_name="r_chat_b"}[5m])))')
    for name in (names.responses, names.cluster_label, names.class_label):
        assert name in promql
