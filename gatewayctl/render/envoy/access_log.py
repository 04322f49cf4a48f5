"""The listener's access loggers: one JSON line per request, and the gateway's counters.

JSON line: Envoy's own fields, and under `gateway` the object of values the Lua filter recorded
(`gw` dynamic metadata). Keys come out sorted (Envoy's json_format sorts them). Envoy fields
without a value are null; `gateway` holds only the keys the Lua filter set (no tokens on a
failed request), and is null for a request the Lua filter never saw.

On gateways the compiled filters serve (`dataPlaneFilters: module`, resolved), the JSON line is
written by the module's access logger (module/gw_log.c, logger `json`) instead of Envoy's
json_format: the same keys and values, read through the access-logger callbacks, at a fraction
of the instructions (docs/performance.md); it flushes at `access_log_flush_ms`, the interval
Envoy's file logger gets from --file-flush-interval-msec. It cannot list a namespace, so it is
told the `gw` keys the line shows and their types (GATEWAY_KEYS).

Counters (names and labels in metrics.py, the one place that defines them): stats access
loggers turn the same metadata into per-consumer counters of the successful responses, their
tokens and their cost, by consumer, route and answering model (the budget alerts and `plan
--traffic`), and, on routes that split traffic between backends (every route under a Rollout
does), per-backend token counters (`backend` = the routed cluster `r_<route>_<model>`; rollout
analysis). On a route with one backend those would only repeat the consumer counters' sums
by route, at ~15k instructions per counter and request (docs/performance.md). The Lua filter
sets the token metadata only for 2xx responses with a `usage`, so the filter on its presence
counts successful responses only. On the routes the compiled body filter serves
(`dataPlaneFilters: module`), the module increments the per-consumer counters itself, with the
same names, labels and values, and does not set the cost key the per-consumer logger's filter
looks for, so each request is counted once (the per-backend counters stay the logger's).
"""

from __future__ import annotations

from typing import Any

from gatewayctl.render.envoy import metrics
from gatewayctl.render.envoy.dynamic_module import MODULE_NAME, STRING_VALUE_TYPE, module_config
from gatewayctl.render.envoy.names import (
    CACHE_KEY,
    CACHE_SAVED_KEY,
    CACHE_SAVED_NANO_KEY,
    COMPLETION_TOKENS_KEY,
    CONSUMER_KEY,
    FILE_LOG_TYPE,
    INTERNAL_NS,
    METADATA_NS,
    MODEL_RESPONSE_HEADER,
    MODULE_LIMITED_KEY,
    OUTPUT_GUARDRAIL_KEY,
    PROMPT_TOKENS_KEY,
    ROUTE_KEY,
    STATS_LOG_TYPE,
    STDOUT_LOG_TYPE,
)
from gatewayctl.render.envoy.options import ENVOY_FILE_FLUSH_MS

# The access-log field holding the Lua filter's per-request values.
GATEWAY_FIELD = "gateway"


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


# The `gw` keys a filter may set, by type: what the `gateway` object can show. The compiled
# logger reads exactly these (a key missing here would be missing from its lines;
# tests/render/test_access_log_module.py checks every key the Lua and the module set is here).
GATEWAY_KEYS: dict[str, str] = {
    CACHE_KEY: "string",  # cache.lua, cache_request.lua
    "cached_tokens": "number",
    COMPLETION_TOKENS_KEY: "number",
    CONSUMER_KEY: "string",
    CACHE_SAVED_KEY: "number",
    "cost_usd": "number",
    "guardrail": "string",
    "local_reply": "bool",
    OUTPUT_GUARDRAIL_KEY: "string",  # outguard.lua
    "prompt": "string",
    PROMPT_TOKENS_KEY: "number",
    "prompt_version": "number",
    "requested_model": "string",
    ROUTE_KEY: "string",
    "upstream_status": "number",
}
# Set only on gateways with a response cache (cache.lua, the body filter's priced hit).
CACHE_ONLY_KEYS = (CACHE_KEY, CACHE_SAVED_KEY)
# The `gw` keys the compiled logger is the only reader of on the compiled body filter's routes,
# which it takes from the module's stream (module/gw_body.h): the module leaves them out of
# Envoy's metadata there. Nothing else in the listener reads them on those routes: the
# per-consumer counters' logger skips them (no cost key), and the cache's and output
# guardrails' counters and the global limits are on routes the module does not serve. The
# per-backend counters read BACKEND_COUNTER_KEYS on the routes that split traffic. (The module
# sets `local_reply` only on its replies, which it does not serve: Envoy's metadata has it.)
_NOT_SET_BY_THE_MODULE = (*CACHE_ONLY_KEYS, OUTPUT_GUARDRAIL_KEY, "local_reply")
LOGGER_ONLY_KEYS = tuple(sorted(k for k in GATEWAY_KEYS if k not in _NOT_SET_BY_THE_MODULE))
BACKEND_COUNTER_KEYS = (ROUTE_KEY, *metrics.BACKEND_KINDS)
MODULE_LOG_TYPE = (
    "type.googleapis.com/envoy.extensions.access_loggers.dynamic_modules.v3.DynamicModuleAccessLog"
)
MODULE_LOGGER = "json"  # the module's logger_name (gw_log.c)


def _module_log(path: str, flush_ms: int, cache: bool, module_limits: bool) -> dict[str, Any]:
    """The JSON line by the module's logger: the same path, file or /dev/stdout. Each key it
    reads costs a metadata lookup (~1.2k instructions) set or not, so a gateway without a
    cache does not have it look for the cache's keys. With `module_limits`, a 429 with
    gw.internal's MODULE_LIMITED_KEY set has `flags` "RL" (what the test's reference Envoy logger
    writes for the module's refusals)."""
    keys = {k: v for k, v in sorted(GATEWAY_KEYS.items()) if cache or k not in CACHE_ONLY_KEYS}
    data: dict[str, Any] = {"path": path, "flush_ms": flush_ms, "namespace": METADATA_NS,
                            "model_header": MODEL_RESPONSE_HEADER, "keys": keys}
    if module_limits:
        data["limited"] = {"namespace": INTERNAL_NS, "key": MODULE_LIMITED_KEY}
    return {
        "name": "envoy.access_loggers.dynamic_modules",
        "typed_config": {
            "@type": MODULE_LOG_TYPE,
            "dynamic_module_config": {"name": MODULE_NAME},
            "logger_name": MODULE_LOGGER,
            "logger_config": {"@type": STRING_VALUE_TYPE, "value": module_config(data)},
        },
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
            "name": metrics.stat_name(metrics.BACKEND, kind),
            "tags": [{"name": metrics.BACKEND_TAG, "value_format": "%UPSTREAM_CLUSTER%"}],
        },
        "value_format": _md(kind),
    }


def _consumer_counter(kind: str) -> dict[str, Any]:
    tags = {"consumer": _md(CONSUMER_KEY), "route": _md(ROUTE_KEY),
            "model": f"%UPSTREAM_METADATA({METADATA_NS}:model)%"}
    counter: dict[str, Any] = {
        "stat": {
            "name": metrics.stat_name(metrics.CONSUMER, kind),
            "tags": [{"name": n, "value_format": tags[n]} for n in metrics.CONSUMER_TAGS],
        },
    }
    if kind == metrics.CONSUMER_REQUESTS:
        counter["value_fixed"] = 1
    elif kind == metrics.CONSUMER_COST:
        # integer nano-USD that the Lua filter computes from usage and prices
        counter["value_format"] = f"%DYNAMIC_METADATA({INTERNAL_NS}:{metrics.CONSUMER_COST})%"
    else:
        counter["value_format"] = _md(kind)
    return counter


def _route_in(routes: list[str], invert: bool = False) -> dict[str, Any]:
    """An access-log filter: the request's route (the Lua filter's route key) is one of
    `routes` (with `invert`: is not)."""
    names = [{"string_match": {"exact": name}} for name in routes]
    value = names[0] if len(names) == 1 else {"or_match": {"value_matchers": names}}
    matcher: dict[str, Any] = {"filter": METADATA_NS, "path": [{"key": ROUTE_KEY}], "value": value}
    if invert:
        matcher["invert"] = True
    return {"metadata_filter": {"matcher": matcher, "match_if_key_not_found": False}}


def render_token_stats_logs(split_routes: list[str], other_routes: list[str]
                            ) -> list[dict[str, Any]]:
    """The per-consumer counters, and the per-backend ones of the routes in `split_routes`
    (`other_routes`: the rest; the filter names the shorter list). Stats_scope, not the
    deprecated stat_prefix. A request without token metadata is skipped (a missing key would
    match by default, and the logger would then log "computed non-number value" at error
    level for every request without usage)."""
    scope = {"prefix": metrics.STATS_SCOPE}
    tokens = _present(METADATA_NS, PROMPT_TOKENS_KEY)
    logs = [
        {
            "name": "envoy.access_loggers.stats",
            # the cost key, set by the Lua body filter only: the compiled body filter counts
            # the requests of its routes itself (module/gw_counters.h) and sets no cost key
            "filter": _present(INTERNAL_NS, metrics.CONSUMER_COST),
            "typed_config": {
                "@type": STATS_LOG_TYPE,
                "stats_scope": scope,
                "counters": [_consumer_counter(kind) for kind in metrics.CONSUMER_KINDS],
            },
        }
    ]
    if split_routes:
        if not other_routes:
            only_split = tokens
        else:
            route = (
                _route_in(split_routes)
                if len(split_routes) <= len(other_routes)
                else _route_in(other_routes, invert=True)
            )
            only_split = {"and_filter": {"filters": [tokens, route]}}
        logs.append(
            {
                "name": "envoy.access_loggers.stats",
                "filter": only_split,
                "typed_config": {
                    "@type": STATS_LOG_TYPE,
                    "stats_scope": scope,
                    "counters": [_token_counter(kind) for kind in metrics.BACKEND_KINDS],
                },
            }
        )
    return logs


def _present(namespace: str, key: str) -> dict[str, Any]:
    """An access-log filter: the metadata key is set (a missing one does not match)."""
    matcher = {"filter": namespace, "path": [{"key": key}], "value": {"present_match": True}}
    return {"metadata_filter": {"matcher": matcher, "match_if_key_not_found": False}}


def when_metadata_present(key: str) -> dict[str, Any]:
    """An access-log filter: only requests whose `gw` metadata has `key`."""
    return _present(METADATA_NS, key)


def _cache_counter(kind: str, value: dict[str, Any], tags: tuple[str, ...]) -> dict[str, Any]:
    formats = {"route": _md(ROUTE_KEY), "result": _md(CACHE_KEY)}
    return {
        "stat": {
            "name": metrics.stat_name(metrics.CACHE, kind),
            "tags": [{"name": n, "value_format": formats[n]} for n in tags],
        },
        **value,
    }


def render_cache_stats_logs() -> list[dict[str, Any]]:
    """The response cache's counters (gateways with a cache): requests of cache routes by result,
    from the `cache` key the cache filter sets; the cost hits saved, from the key the body
    filter sets on a priced hit."""
    requests = _cache_counter(metrics.CACHE_REQUESTS, {"value_fixed": 1}, metrics.CACHE_TAGS)
    saved = _cache_counter(
        metrics.CACHE_SAVED,
        {"value_format": f"%DYNAMIC_METADATA({INTERNAL_NS}:{CACHE_SAVED_NANO_KEY})%"},
        ("route",),
    )
    scope = {"prefix": metrics.STATS_SCOPE}
    return [
        {
            "name": "envoy.access_loggers.stats",
            "filter": _present(METADATA_NS, key),
            "typed_config": {"@type": STATS_LOG_TYPE, "stats_scope": scope, "counters": [counter]},
        }
        for key, counter in ((CACHE_KEY, requests), (CACHE_SAVED_KEY, saved))
    ]


def render_access_log(
    path: str,
    cache: bool = False,
    split_routes: list[str] | None = None,
    other_routes: list[str] | None = None,
    module_limits: bool = False,
    compiled: bool = False,
    flush_ms: int = ENVOY_FILE_FLUSH_MS,
) -> list[dict[str, Any]]:
    """`split_routes`: the routes with more than one backend (their per-backend counters);
    `other_routes`: the others; `module_limits`: the module's `limits` filter is in the chain
    (only with `compiled`: the module's logger then writes its 429s' "RL", a flag a module
    cannot set); `compiled`: the JSON line by the module's logger (gateways the compiled
    filters serve), flushed every `flush_ms`."""
    cache_logs = render_cache_stats_logs() if cache else []
    tokens = render_token_stats_logs(split_routes or [], other_routes or [])
    lines = [_module_log(path, flush_ms, cache, module_limits) if compiled else _json_log(path)]
    return [*lines, *tokens, *cache_logs]
