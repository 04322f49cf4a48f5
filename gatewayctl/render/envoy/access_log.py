"""The listener's access loggers: one JSON line per request, and per-backend token counters.

JSON line: Envoy's own fields, and under `gateway` the object of values the Lua filter recorded
(`gw` dynamic metadata). Keys come out sorted (Envoy's json_format sorts them). Envoy fields
without a value are null; `gateway` holds only the keys the Lua filter set (no tokens on a
failed request), and is null for a request the Lua filter never saw.

Token counters: the stats access logger turns the same metadata into the counters
`<stats scope>.backend.prompt_tokens` / `.completion_tokens`, tagged `backend` with the routed
(composite parent) cluster `r_<route>_<model>`; at /stats/prometheus they are
`envoy_gatewayctl_backend_prompt_tokens{backend="..."}`, the names rollout analysis queries
(`gatewayctl.rollout.measure.GatewayMetrics`). The Lua filter sets the token metadata only for
2xx responses with a `usage`, so the filter on its presence counts successful responses only.
"""

from __future__ import annotations

from typing import Any

from gatewayctl.render.envoy.names import (
    FILE_LOG_TYPE,
    INTERNAL_NS,
    METADATA_NS,
    STATS_LOG_TYPE,
    STDOUT_LOG_TYPE,
)

# The stats scope of the token counters: Prometheus names start `envoy_gatewayctl_`.
TOKEN_STATS_SCOPE = "gatewayctl"
# The access-log field holding the Lua filter's per-request values.
GATEWAY_FIELD = "gateway"
TOKEN_BACKEND_TAG = "backend"


def _md(key: str) -> str:
    return f"%DYNAMIC_METADATA({METADATA_NS}:{key})%"


LOG_FORMAT: dict[str, str] = {
    "start_time": "%START_TIME%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "status": "%RESPONSE_CODE%",
    "flags": "%RESPONSE_FLAGS%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "duration_ms": "%DURATION%",
    "upstream_ms": "%RESPONSE_DURATION%",
    "model": "%UPSTREAM_METADATA(gw:model)%",
    "backend_cluster": "%UPSTREAM_CLUSTER%",
    "upstream_host": "%UPSTREAM_HOST%",
    "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    # What the Lua filter recorded (route, requested_model, consumer, prompt, prompt_version,
    # prompt_tokens, completion_tokens, cost_usd, guardrail, local_reply), as one object: a
    # metadata value costs Envoy's JSON formatter ~14k instructions per field, so nine
    # separate fields cost four times as much as the one object (docs/performance.md).
    GATEWAY_FIELD: f"%DYNAMIC_METADATA({METADATA_NS})%",
}


def _json_log(path: str) -> dict[str, Any]:
    log_format = {"json_format": dict(LOG_FORMAT)}
    if path == "/dev/stdout":
        config: dict[str, Any] = {"@type": STDOUT_LOG_TYPE, "log_format": log_format}
        return {"name": "envoy.access_loggers.stdout", "typed_config": config}
    config = {"@type": FILE_LOG_TYPE, "path": path, "log_format": log_format}
    return {"name": "envoy.access_loggers.file", "typed_config": config}


def _token_counter(kind: str) -> dict[str, Any]:
    return {
        "stat": {
            "name": f"backend.{kind}",
            "tags": [{"name": TOKEN_BACKEND_TAG, "value_format": "%UPSTREAM_CLUSTER%"}],
        },
        "value_format": _md(kind),
    }


# Spend per consumer, the counter the budget alerts read (render/k8s/alerts.py): integer
# nano-USD (Envoy's counters are integers) that the Lua filter computes from usage and prices.
COST_STAT = "consumer.cost_nano_usd"


def _cost_counter() -> dict[str, Any]:
    return {
        "stat": {
            "name": COST_STAT,
            "tags": [
                {"name": "consumer", "value_format": _md("consumer")},
                {"name": "route", "value_format": _md("route")},
            ],
        },
        "value_format": f"%DYNAMIC_METADATA({INTERNAL_NS}:cost_nano_usd)%",
    }


def render_token_stats_log() -> dict[str, Any]:
    """Per-backend token counters (stats_scope, not the deprecated stat_prefix)."""
    present = {
        "filter": METADATA_NS,
        "path": [{"key": "prompt_tokens"}],
        "value": {"present_match": True},
    }
    return {
        "name": "envoy.access_loggers.stats",
        # A missing key matches by default (the logger then logs "computed non-number value"
        # at error level for every request without usage); false skips those requests.
        "filter": {"metadata_filter": {"matcher": present, "match_if_key_not_found": False}},
        "typed_config": {
            "@type": STATS_LOG_TYPE,
            "stats_scope": {"prefix": TOKEN_STATS_SCOPE},
            "counters": [
                _token_counter("prompt_tokens"),
                _token_counter("completion_tokens"),
                _cost_counter(),
            ],
        },
    }


def render_access_log(path: str) -> list[dict[str, Any]]:
    return [_json_log(path), render_token_stats_log()]
