"""The measured traffic of a window, from Prometheus, for `plan --traffic prometheus=URL`.

Reads the gateway's per-consumer counters (`envoy_gatewayctl_consumer_requests`,
`..._prompt_tokens`, `..._completion_tokens`, tagged consumer, route and the answering model;
docs/data-plane.md) over the window, summed over every Envoy Prometheus scrapes. Counting is
rollout analysis' (`gatewayctl.rollout.measure.series_increase`): the increase of each series
is the sum of its steps (resets counted from zero), plus its first value when it appeared
after its Envoy (`envoy_server_live`) did, because Envoy creates a counter at its first
charge. The window's raw samples are read (`metric[window]`), as rollout analysis does; a
week at a 30 s scrape interval is ~20,000 samples per series, one series per consumer, route
and model.
"""

from __future__ import annotations

import time
from collections import defaultdict

from gatewayctl.errors import UsageError
from gatewayctl.plan.traffic import TrafficSample, Usage
from gatewayctl.render.envoy import metrics
from gatewayctl.rollout.measure import increases
from gatewayctl.rollout.prometheus import PrometheusClient, Series

KINDS = ("requests", "prompt_tokens", "completion_tokens")
REFERENCE = "envoy_server_live"
WINDOW_UNITS = ("s", "m", "h", "d", "w")


def parse_window(text: str) -> int:
    """Whole seconds in a --window ("7d", "36h", "1d12h"): the durations grammar with s to w."""
    from gatewayctl.durations import DurationError, parse_duration_ms

    try:
        ms = parse_duration_ms(text, units=WINDOW_UNITS)
    except DurationError as err:
        raise UsageError(f"invalid --window: {err}", hint="e.g. --window 7d or 36h") from None
    seconds = int(ms // 1000)
    if seconds < 60:
        raise UsageError(f'invalid --window "{text}": at least a minute',
                         hint="Prometheus needs samples inside it; e.g. --window 7d")
    return seconds


def parse_traffic(spec: str) -> str:
    kind, sep, url = spec.partition("=")
    if kind != "prometheus" or not sep or not url:
        raise UsageError(f'invalid --traffic "{spec}"',
                         hint="use --traffic prometheus=URL, e.g. prometheus=http://prometheus:9090")
    return url


def _with_latest(series: list[Series], latest: list[Series]) -> list[Series]:
    now = {s.labels: s.samples[-1] for s in latest if s.samples}
    out = []
    for s in series:
        tail = now.pop(s.labels, None)
        samples = s.samples
        if tail is not None and (not samples or tail[0] > samples[-1][0]):
            samples = (*samples, tail)
        out.append(Series(s.labels, samples))
    out += [Series(labels, (sample,)) for labels, sample in now.items()]  # only just appeared
    return out


def fetch_traffic(url: str, window_s: int, *, at: float | None = None,
                  client: PrometheusClient | None = None) -> TrafficSample:
    client = client or PrometheusClient(url, flag="--traffic prometheus=URL")
    at = time.time() if at is None else at
    window = f"[{window_s}s]"
    reference = client.series(f"{REFERENCE}{window}", at)
    totals: dict[tuple[str, str, str], dict[str, float]] = defaultdict(
        lambda: dict.fromkeys(KINDS, 0.0))
    for kind in KINDS:
        metric = metrics.prometheus_name(metrics.CONSUMER, kind)
        series = _with_latest(client.series(f"{metric}{window}", at),
                              client.series(metric, at))
        for s, inc in increases(series, reference, drop=metrics.CONSUMER_TAGS):
            key = (s.label("consumer"), s.label("route"), s.label("model"))
            totals[key][kind] += inc
    usage = tuple(Usage(c, r, m, v["requests"], v["prompt_tokens"], v["completion_tokens"])
                  for (c, r, m), v in sorted(totals.items()) if c and r)
    return TrafficSample(f"prometheus {client.url}", float(window_s), usage)
