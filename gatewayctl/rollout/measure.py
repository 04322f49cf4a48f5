"""Reading one window of the gateway's own metrics from Prometheus, per rollout backend.

Which series: the stats Envoy exports at `/stats/prometheus` for a route backend's composite
cluster `r_<route>_<model>` (docs/data-plane.md, "Metrics for canary analysis"):
`envoy_cluster_upstream_rq_xx` (final responses by class) and
`envoy_cluster_retry_upstream_rq_xx` (failed attempts that were retried) for attempts and 5xx
errors, `envoy_cluster_upstream_rq_time_bucket` for latency, and per-backend token counters for
cost and tokens per request. All names live in `GatewayMetrics`.

How counting works, and why not PromQL's `increase()`: Envoy creates a stat such as
`upstream_rq_xx{class="5"}` only when it is first charged, so its first scraped sample is
already above zero, and `increase()` drops everything before it: a new canary's first errors
would go uncounted. So the raw samples of the window are fetched (`metric[window]`) and summed
here: each series' increase is the sum of its steps (a drop is a counter reset, counted from
zero), plus its first value when the series appeared after the always-present
`envoy_cluster_upstream_rq_completed` of the same Envoy and cluster (it was zero before).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from gatewayctl.durations import format_duration_ms
from gatewayctl.errors import GatewayctlError
from gatewayctl.render.envoy import metrics
from gatewayctl.rollout.analysis import BackendStats
from gatewayctl.rollout.prometheus import PrometheusClient, Series

_SELECTOR_RE = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"[^"\\]*"\s*,?\s*)*$')
_CLUSTER_RE = re.compile(r"^[a-z0-9_-]+$")


@dataclass(frozen=True)
class GatewayMetrics:
    """The names of the gateway's series in Prometheus."""

    cluster_label: str = metrics.CLUSTER_LABEL
    reference: str = "envoy_cluster_upstream_rq_completed"  # created with the cluster
    responses: str = metrics.CLUSTER_RESPONSES  # final responses
    retried: str = "envoy_cluster_retry_upstream_rq_xx"  # attempts that failed and were retried
    class_label: str = metrics.CLASS_LABEL
    latency_buckets: str = "envoy_cluster_upstream_rq_time_bucket"
    prompt_tokens: str = metrics.BACKEND_PROMPT_TOKENS
    completion_tokens: str = metrics.BACKEND_COMPLETION_TOKENS
    token_cluster_label: str = metrics.BACKEND_TAG


# Labels that tell one series of a metric from another of the same Envoy and cluster.
_VARIANT_LABELS = frozenset({"__name__", "envoy_response_code_class", "envoy_response_code",
                             "le"})


def check_selector(selector: str) -> str:
    """Extra label matchers, e.g. `namespace="ai-gateway",job="envoy"`; '' for none."""
    if selector and not _SELECTOR_RE.match(selector):
        raise GatewayctlError(f"{selector!r} is not a list of Prometheus label matchers",
                              hint='write them like namespace="ai-gateway",job="envoy"')
    return selector.strip().rstrip(",")


def _key(series: Series, drop: Iterable[str] = ()) -> tuple[tuple[str, str], ...]:
    skip = _VARIANT_LABELS | set(drop)
    return tuple((k, v) for k, v in series.labels if k not in skip)


def series_increase(series: Series, reference_start: float | None) -> float:
    """How much a counter grew over its samples (resets counted from zero).

    `reference_start`: when an always-present series of the same source first appears in the
    window; a series that appeared later was created (at zero) inside the window.
    """
    samples = sorted((t, v) for t, v in series.samples if v == v)  # drop NaN
    if not samples:
        return 0.0
    total = 0.0
    for (_, prev), (_, cur) in zip(samples, samples[1:], strict=False):
        total += cur - prev if cur >= prev else cur
    if reference_start is not None and samples[0][0] > reference_start:
        total += samples[0][1]
    return total


def increases(series: list[Series], reference: list[Series],
              drop: Iterable[str] = ()) -> list[tuple[Series, float]]:
    starts: dict[tuple[tuple[str, str], ...], float] = {}
    for ref in reference:
        if ref.samples:
            first = min(t for t, _ in ref.samples)
            key = _key(ref, drop)
            starts[key] = min(first, starts.get(key, first))
    return [(s, series_increase(s, starts.get(_key(s, drop)))) for s in series]


def backend_stats(cluster: str, names: GatewayMetrics, responses: list[Series],
                  retried: list[Series], buckets: list[Series], reference: list[Series],
                  tokens: dict[str, list[Series]] | None) -> BackendStats:
    """Sum one cluster's series (over every Envoy instance) into its window figures.

    Attempts are the final responses plus the attempts that failed and were retried, so an
    error that a retry or a fallback hid from the client still counts against the backend.
    """
    mine = [s for s in reference if s.label(names.cluster_label) == cluster]
    attempts = errors = successes = 0.0
    for group, final in ((responses, True), (retried, False)):
        owned = [s for s in group if s.label(names.cluster_label) == cluster]
        for s, inc in increases(owned, mine):
            attempts += inc
            cls = s.label(names.class_label)
            if cls == "5":
                errors += inc
            elif cls == "2" and final:
                successes += inc
    per_le: dict[float, float] = defaultdict(float)
    for s, inc in increases([s for s in buckets if s.label(names.cluster_label) == cluster],
                            mine):
        per_le[float(s.label("le"))] += inc
    prompt = completion = None
    if tokens is not None:
        prompt, completion = 0.0, 0.0
        # The token counters are tagged `backend=<cluster>`: the same Envoy's cluster series,
        # relabelled, tells whether a token series appeared inside the window.
        token_ref = [Series(tuple(sorted((names.token_cluster_label if k == names.cluster_label
                                          else k, v) for k, v in r.labels)), r.samples)
                     for r in mine]
        for which, items in tokens.items():
            owned = [s for s in items if s.label(names.token_cluster_label) == cluster]
            total = sum(inc for _, inc in increases(owned, token_ref))
            if which == "prompt":
                prompt = total
            else:
                completion = total
    return BackendStats(cluster, attempts, errors, successes,
                        tuple(sorted(per_le.items())), prompt, completion)


def _matcher(label: str, clusters: list[str], selector: str) -> str:
    for c in clusters:
        if not _CLUSTER_RE.match(c):
            raise GatewayctlError(f"unexpected cluster name {c!r}")
    parts = [f'{label}=~"{"|".join(clusters)}"'] + ([selector] if selector else [])
    return "{" + ",".join(parts) + "}"


def fetch_backend_stats(client: PrometheusClient, clusters: list[str], window_ms: int,
                        at: float, *, selector: str = "",
                        names: GatewayMetrics = GatewayMetrics()) -> dict[str, BackendStats]:
    """The window's figures for each cluster (every Envoy instance Prometheus scrapes)."""
    window = format_duration_ms(window_ms)
    match = _matcher(names.cluster_label, clusters, selector)
    reference = client.series(f"{names.reference}{match}[{window}]", at)
    responses = client.series(f"{names.responses}{match}[{window}]", at)
    retried = client.series(f"{names.retried}{match}[{window}]", at)
    buckets = client.series(f"{names.latency_buckets}{match}[{window}]", at)
    token_match = _matcher(names.token_cluster_label, clusters, selector)
    prompt = client.series(f"{names.prompt_tokens}{token_match}[{window}]", at)
    completion = client.series(f"{names.completion_tokens}{token_match}[{window}]", at)
    # No token series at all (an older gateway, or one that exports none): not zero, unknown.
    tokens = ({"prompt": prompt, "completion": completion}
              if client.series(f"count({names.prompt_tokens})", at) else None)
    return {c: backend_stats(c, names, responses, retried, buckets, reference, tokens)
            for c in clusters}


def render_custom_query(query: str, *, cluster: str, model: str, route: str,
                        window_ms: int) -> str:
    """Fill a custom metric's placeholders: {{ backend }}, {{ model }}, {{ route }},
    {{ window }}."""
    values = {"backend": cluster, "model": model, "route": route,
              "window": format_duration_ms(window_ms)}

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise GatewayctlError(f"unknown placeholder {{{{ {name} }}}} in a custom query",
                                  hint="use {{ backend }}, {{ model }}, {{ route }} or "
                                  "{{ window }}")
        return values[name]

    return re.sub(r"\{\{\s*([A-Za-z_]+)\s*\}\}", fill, query)


def fetch_custom(client: PrometheusClient, query: str, at: float) -> tuple[float | None, str]:
    """A custom query's single value, or None and why there is none."""
    found = client.series(query, at)
    if not found:
        return None, "the query returned no data"
    if len(found) > 1:
        return None, f"the query returned {len(found)} series; aggregate it to one (sum, max)"
    value = found[0].samples[-1][1] if found[0].samples else float("nan")
    if value != value:
        return None, "the query returned NaN"
    return value, ""
