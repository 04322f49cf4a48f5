"""The gateway's own counters, named once: the Envoy stats the access logger keeps
(access_log.py) and the names Prometheus reads them by (rollout analysis, the budget alerts,
`plan --traffic`).

Envoy keeps them under the stats scope `gatewayctl` (the per-consumer ones of the routes the
compiled body filter serves are counted by the module, in its metrics namespace of that name:
module/gw_counters.h); at /stats/prometheus a stat
`gatewayctl.<group>.<kind>` becomes `envoy_gatewayctl_<group>_<kind>` with its tags as labels.

- Per backend (`backend` = the routed cluster `r_<route>_<model>`), on routes with more than
  one backend (every route under a Rollout): `prompt_tokens`, `completion_tokens` of
  successful responses; rollout analysis compares them per backend.
- Per consumer (`consumer` = the Consumer's name or `anonymous`, `route`, `model` = the model
  that answered, fallbacks included): `requests` (successful responses with a usage), their
  `prompt_tokens`, `completion_tokens`, and `cost_nano_usd` (the Lua filter's price of the
  usage, in nano-USD: Envoy's counters are integers). The budget alerts sum the cost by
  consumer; `plan --traffic` prices the requests and tokens per route and consumer. Their
  number of series is bounded by the configuration (consumers and `anonymous`, routes, models).
- Per cache route (`route`; gateways with a response cache only): `requests` by `result`
  (`hit`, `miss`, `bypass`), and `cost_saved_nano_usd`, the price of the answers hits replayed.
- Per route and verdict (`blocked`, `logged`): `output_guardrail.hits`, answers whose text
  matched the route's output deny patterns (only on gateways with such patterns).
"""

from __future__ import annotations

from gatewayctl.render.envoy.names import (
    CACHE_SAVED_NANO_KEY,
    COMPLETION_TOKENS_KEY,
    COST_KEY,
    PROMPT_TOKENS_KEY,
)

STATS_SCOPE = "gatewayctl"

BACKEND = "backend"
BACKEND_TAG = "backend"
BACKEND_KINDS = (PROMPT_TOKENS_KEY, COMPLETION_TOKENS_KEY)  # the Lua filter's metadata keys

CONSUMER = "consumer"
CONSUMER_TAGS = ("consumer", "route", "model")
CONSUMER_REQUESTS = "requests"
CONSUMER_COST = COST_KEY
CONSUMER_KINDS = (CONSUMER_REQUESTS, *BACKEND_KINDS, CONSUMER_COST)
NANO_USD = 1e9

# The response cache, per route: `requests` by `result` (hit, miss, bypass) and the
# `cost_saved_nano_usd` of the hits (the price of the answers they replayed).
CACHE = "cache"
CACHE_TAGS = ("route", "result")
CACHE_REQUESTS = "requests"
CACHE_SAVED = CACHE_SAVED_NANO_KEY
# Answers whose text matched a route's output deny patterns (outguard.py), by route and
# verdict (`blocked`, `logged`).
OUTPUT_GUARDRAIL = "output_guardrail"
OUTPUT_HITS = "hits"


def stat_name(group: str, kind: str) -> str:
    """The stat's name inside the scope, as the access logger declares it."""
    return f"{group}.{kind}"


def prometheus_name(group: str, kind: str) -> str:
    """The name Prometheus scrapes from Envoy's /stats/prometheus."""
    return f"envoy_{STATS_SCOPE}_{group}_{kind}"


BACKEND_PROMPT_TOKENS = prometheus_name(BACKEND, PROMPT_TOKENS_KEY)
BACKEND_COMPLETION_TOKENS = prometheus_name(BACKEND, COMPLETION_TOKENS_KEY)
CONSUMER_COST_METRIC = prometheus_name(CONSUMER, CONSUMER_COST)

# Envoy's own per-cluster series; a route backend's are those of its composite cluster
# `r_<route>_<model>` (names.backend_cluster_name). Rollout analysis (rollout/measure.py) and
# the canary alert (render/k8s/alerts.py) read them by these names.
CLUSTER_LABEL = "envoy_cluster_name"
CLASS_LABEL = "envoy_response_code_class"
CLUSTER_RESPONSES = "envoy_cluster_upstream_rq_xx"  # final responses, by class
CLUSTER_REQUESTS = "envoy_cluster_upstream_rq_total"  # requests the backend was sent


def error_ratio_promql(cluster: str, window: str, *, selector: str = "") -> str:
    """A backend cluster's 5xx answers over its requests in `window`, as PromQL; `selector`:
    extra label matchers (`namespace="ai-gateway"`)."""
    match = ", ".join(m for m in (selector, f'{CLUSTER_LABEL}="{cluster}"') if m)
    return (
        f'(sum(rate({CLUSTER_RESPONSES}{{{match}, {CLASS_LABEL}="5"}}[{window}])) / '
        f"sum(rate({CLUSTER_REQUESTS}{{{match}}}[{window}])))"
    )
