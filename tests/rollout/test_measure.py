"""Counting a window of Envoy's counters from raw Prometheus samples."""

from __future__ import annotations

import pytest

from gatewayctl.errors import GatewayctlError
from gatewayctl.rollout.measure import (
    GatewayMetrics,
    backend_stats,
    check_selector,
    render_custom_query,
    series_increase,
)
from gatewayctl.rollout.prometheus import PrometheusClient, PrometheusError, Series
from tests.rollout.fake_prometheus import FakePrometheus

C = "r_chat_gpt-4o-2024-11-20"


def series(samples: list[tuple[float, float]], **labels: str) -> Series:
    return Series(tuple(sorted({"envoy_cluster_name": C, "instance": "a", **labels}.items())),
                  tuple(samples))


def test_increase_sums_steps_and_counts_a_reset_from_zero() -> None:
    assert series_increase(series([(1, 10), (2, 15), (3, 15), (4, 20)]), None) == 10
    assert series_increase(series([(1, 10), (2, 15), (3, 3), (4, 5)]), None) == 10
    assert series_increase(series([]), None) == 0


def test_a_series_born_in_the_window_counts_its_first_value() -> None:
    # Envoy creates upstream_rq_xx{class="5"} at the first 5xx: its first sample is not zero
    late = series([(5, 7), (6, 9)])
    assert series_increase(late, reference_start=1) == 9
    assert series_increase(late, reference_start=5) == 2  # there from the start: not counted
    assert series_increase(late, reference_start=None) == 2


def test_backend_stats_adds_retried_attempts_and_every_instance() -> None:
    names = GatewayMetrics()
    reference = [series([(1, 0), (2, 10), (3, 30)]),
                 series([(1, 0), (3, 10)], instance="b")]
    responses = [series([(1, 0), (2, 8), (3, 24)], envoy_response_code_class="2"),
                 series([(2, 2), (3, 4)], envoy_response_code_class="5"),  # born at t=2
                 series([(1, 5), (3, 15)], envoy_response_code_class="2", instance="b"),
                 series([(1, 1), (3, 9)], envoy_response_code_class="2",
                        envoy_cluster_name="other")]
    retried = [series([(3, 3)], envoy_response_code_class="5")]
    buckets = [series([(1, 0), (3, 20)], le="100"), series([(1, 0), (3, 30)], le="+Inf")]
    stats = backend_stats(C, names, responses, retried, buckets, reference, None)
    assert (stats.attempts, stats.errors, stats.successes) == (24 + 4 + 10 + 3, 4 + 3, 34)
    assert stats.latency_buckets == ((100.0, 20.0), (float("inf"), 30.0))
    assert stats.prompt_tokens is None


def test_token_counters_are_tagged_with_the_backend() -> None:
    names = GatewayMetrics()
    reference = [series([(1, 0), (3, 30)])]
    prompt = [Series((("backend", C), ("instance", "a")), ((2, 100.0), (3, 300.0)))]
    completion = [Series((("backend", C), ("instance", "a")), ((1, 0.0), (3, 90.0))),
                  Series((("backend", "other"), ("instance", "a")), ((1, 0.0), (3, 5.0)))]
    stats = backend_stats(C, names, [], [], [], reference,
                          {"prompt": prompt, "completion": completion})
    assert (stats.prompt_tokens, stats.completion_tokens) == (300, 90)


def test_selectors_and_custom_queries() -> None:
    assert check_selector('namespace="ai", job!="x",') == 'namespace="ai", job!="x"'
    with pytest.raises(GatewayctlError, match="is not a list of Prometheus label matchers"):
        check_selector("namespace=ai}")
    assert render_custom_query('sum(x{c="{{ backend }}",m="{{model}}"}[{{ window }}])',
                               cluster=C, model="m.1", route="chat", window_ms=120_000) == \
        f'sum(x{{c="{C}",m="m.1"}}[2m])'
    with pytest.raises(GatewayctlError, match=r"unknown placeholder \{\{ nope \}\}"):
        render_custom_query("{{ nope }}", cluster=C, model="m", route="r", window_ms=1000)


def test_prometheus_errors_keep_its_message() -> None:
    with FakePrometheus() as fake:
        client = PrometheusClient(fake.url)
        with pytest.raises(PrometheusError) as caught:
            client.query("bad(", 0)
        assert caught.value.message == (
            f"Prometheus at {fake.url} answered 400: 1:4: parse error: unexpected end of input")
        url = fake.url
    with pytest.raises(PrometheusError, match=f"cannot reach Prometheus at {url}"):
        PrometheusClient(url, timeout=2).query("up", 0)
    with pytest.raises(GatewayctlError, match="is not a Prometheus URL"):
        PrometheusClient("prometheus:9090")
