"""Does a compiled filter pay for itself? Instructions per request of Envoy 1.40 with a Lua
filter and with a dynamic module (a shared library; benchmarks/dynamic_module/) doing the same
thing, side by side with the minimal route and the gateway's every-policy route.

    minimal        one route, router only (dataplane_targets.minimal_bootstrap)
    lua-noop       + a Lua filter whose envoy_on_request does nothing
    module-noop    + the dynamic module's `noop` filter (every hook returns Continue)
    lua-model      + the first step of the gateway's body filter, in Lua as the gateway does
                   it: wait for the body, decode it with the shipped decoder (json.lua's
                   decode_members), set the top-level `model` as the x-gw-model header and the
                   gw.model metadata, clear the route cache
    lua-match      the same step with one string.match instead of the decoder: the least Lua
                   can do for it (not structurally correct: it can match a nested "model")
    module-model   the same step in the module (a top-level scan in C)
    meta           + the module's `meta` filter: on the response, the dynamic metadata the
                   gateway's per-consumer counters are made of (consumer, route, tokens, cost),
                   as the body filter sets it for a successful reply
    meta-stats-log meta + the gateway's stats access logger of those four counters, exactly as
                   rendered (access_log.render_token_stats_logs): how the gateway counts today
    module-counters  the same metadata, and the four counters incremented by the module itself
                   (counters it defines, labels consumer/route/model, metrics namespace
                   `gatewayctl`): what the body filter, once compiled, could do instead
    meta-stats-log-fixed  meta-stats-log counting 1 instead of each metadata value (what
                   reading the values costs)
    meta-stats-log-literal-tags  meta-stats-log with constant tag values (what formatting the
                   tags costs)
    meta-all, meta-all-stats-log, module-counters-all  the same three with the `gw` namespace
                   holding the eight keys of a successful bench-full request, as on the gateway
    gateway        the rendered gateway, route bench-full (every policy), as
                   benchmarks.dataplane_instructions measures it

The three `-model` variants route on the header they set (a POST to the chat endpoint without
it is answered 404 and counted as an error), so a step that did not work shows. Each variant
runs in its own Envoy under callgrind (dataplane_instructions.count_instructions: warm-up,
then N requests from 4 keep-alive clients, user space only); `--repeats` runs every variant
again, round-robin, to show the counts are stable. The module is built from source with the
C compiler first (gcc or cc), into the work directory.

    python -m benchmarks.dataplane_module --requests 400 --repeats 2
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.dataplane_gateway import UPSTREAM_MODEL, request_body
from benchmarks.dataplane_instructions import (
    count_instructions,
    envoy_real_binary,
    instruction_parser,
    lua_range,
    lua_share,
    measure,
    parse_instruction_args,
    save_results,
    versus,
)
from benchmarks.dataplane_procs import free_port
from benchmarks.dataplane_targets import CHAT_PATH, Placement, minimal_bootstrap, start_mock
from gatewayctl.render.envoy.access_log import render_token_stats_logs
from gatewayctl.render.envoy.lua import JSON, module_source

SOURCE = Path(__file__).resolve().parent / "dynamic_module"
# The ABI header is the product module's (gatewayctl/render/envoy/module/gw_abi.h), shared.
ABI_HEADER_DIR = Path(__file__).resolve().parents[1] / "gatewayctl" / "render" / "envoy" / "module"
MODULE_NAME = "gwbench"  # the library is lib<name>.so, found through the search path
SEARCH_PATH = "ENVOY_DYNAMIC_MODULES_SEARCH_PATH"
MODEL_HEADER = "x-gw-model"
LUA_TYPE = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"
MODULE_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"
)

LUA_NOOP = "function envoy_on_request(h) end\n"

# The step as gateway.lua does it (its first lines after the endpoint check), on the shipped
# decoder.
LUA_DECODE = (
    "".join(f"local {variable} = {module_source(name)}\n" for variable, name in JSON)
    + """
function envoy_on_request(h)
  local body = h:body()
  if body == nil then return end
  local ok, req = pcall(json.decode_members, body:getBytes(0, body:length()))
  if not ok or type(req.model) ~= "string" then return end
  h:headers():replace("x-gw-model", req.model)
  h:streamInfo():dynamicMetadata():set("gw", "model", req.model)
  h:clearRouteCache()
end
"""
)

LUA_MATCH = """
local match = string.match
function envoy_on_request(h)
  local body = h:body()
  if body == nil then return end
  local model = match(body:getBytes(0, body:length()), '"model"%s*:%s*"([^"]+)"')
  if model == nil then return end
  h:headers():replace("x-gw-model", model)
  h:streamInfo():dynamicMetadata():set("gw", "model", model)
  h:clearRouteCache()
end
"""


def build_module(out_dir: Path, *, abi_version: str | None = None) -> Path:
    """Compile benchmarks/dynamic_module/gw_filter.c into out_dir/lib<MODULE_NAME>.so (as its
    Makefile does); abi_version overrides the version string the module reports."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise RuntimeError("needs a C compiler (Debian: apt-get install gcc)")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"lib{MODULE_NAME}.so"
    define = [f'-DGW_ABI_VERSION="{abi_version}"'] if abi_version is not None else []
    subprocess.run(
        [cc, "-O2", "-Wall", "-Wextra", "-Werror", "-std=c11", "-fPIC", "-shared", *define,
         "-I", str(ABI_HEADER_DIR),
         "-o", str(out), str(SOURCE / "gw_filter.c")],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return out


# The module's counters are created in a stats scope named after the filter's metrics
# namespace. Envoy 1.40 registers that namespace as a "custom" one (stripped from /stats, and
# no `envoy_` prefix at /stats/prometheus) unless this runtime flag is off; off, the module's
# `consumer.requests` in namespace `gatewayctl` is the stats access logger's
# `gatewayctl.consumer.requests`, envoy_gatewayctl_consumer_requests at /stats/prometheus.
METRICS_NAMESPACE = "gatewayctl"
KEEP_NAMESPACE_RUNTIME = {
    "layers": [{"name": "static", "static_layer": {
        "envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix": False}}]
}  # fmt: skip
UPSTREAM_MODEL_METADATA = {"filter_metadata": {"gw": {"model": "bench-model"}}}


def module_filter(filter_name: str, metrics_namespace: str | None = None) -> dict[str, Any]:
    module: dict[str, Any] = {"name": MODULE_NAME}
    if metrics_namespace is not None:
        module["metrics_namespace"] = metrics_namespace
    return {
        "name": "envoy.filters.http.dynamic_modules",
        "typed_config": {
            "@type": MODULE_TYPE,
            "dynamic_module_config": module,
            "filter_name": filter_name,
        },
    }


def _fixed_values(counter: dict[str, Any]) -> None:
    counter.pop("value_format", None)
    counter["value_fixed"] = 1


def _literal_tags(counter: dict[str, Any]) -> None:
    for tag in counter["stat"]["tags"]:
        tag["value_format"] = "x"


def with_counting(filter_name: str, *, stats_log: bool,
                  edit: Callable[[dict[str, Any]], None] | None = None
                  ) -> Callable[[dict[str, Any]], None]:
    """The module's `filter_name` filter before the router, the upstream host labelled with
    its model (the counters' `model` tag reads it, as on the gateway's backends), the runtime
    flag that keeps the module's metric names as they are; stats_log: the gateway's stats
    access logger too (`edit`: applied to each of its counters)."""

    def apply(bootstrap: dict[str, Any]) -> None:
        hcm = _hcm(bootstrap)
        hcm["http_filters"].insert(0, module_filter(filter_name, METRICS_NAMESPACE))
        if stats_log:
            hcm["access_log"] = render_token_stats_logs([], [])
            for log in hcm["access_log"]:
                for counter in log["typed_config"]["counters"]:
                    if edit is not None:
                        edit(counter)
        cluster = bootstrap["static_resources"]["clusters"][0]
        for group in cluster["load_assignment"]["endpoints"]:
            for endpoint in group["lb_endpoints"]:
                endpoint["metadata"] = UPSTREAM_MODEL_METADATA
        bootstrap["layered_runtime"] = KEEP_NAMESPACE_RUNTIME

    return apply


def lua_filter(source: str) -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.lua",
        "typed_config": {"@type": LUA_TYPE, "default_source_code": {"inline_string": source}},
    }


def _hcm(bootstrap: dict[str, Any]) -> dict[str, Any]:
    listener = bootstrap["static_resources"]["listeners"][0]
    hcm: dict[str, Any] = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm


def with_filter(flt: dict[str, Any], *, routed: bool) -> Callable[[dict[str, Any]], None]:
    """Put flt before the router; routed: the chat endpoint is served only with the model
    header set (to the model of the benchmark's request), 404 without it."""

    def apply(bootstrap: dict[str, Any]) -> None:
        hcm = _hcm(bootstrap)
        hcm["http_filters"].insert(0, flt)
        if routed:
            vhost = hcm["route_config"]["virtual_hosts"][0]
            to_mock = vhost["routes"][-1]["route"]
            header = {"name": MODEL_HEADER, "string_match": {"exact": UPSTREAM_MODEL}}
            vhost["routes"][:0] = [
                {"match": {"prefix": CHAT_PATH, "headers": [header]}, "route": to_mock},
                {"match": {"prefix": CHAT_PATH}, "direct_response": {"status": 404}},
            ]

    return apply


VARIANTS: list[tuple[str, Callable[[dict[str, Any]], None] | None]] = [
    ("minimal", None),
    ("lua-noop", with_filter(lua_filter(LUA_NOOP), routed=False)),
    ("module-noop", with_filter(module_filter("noop"), routed=False)),
    ("lua-model", with_filter(lua_filter(LUA_DECODE), routed=True)),
    ("lua-match", with_filter(lua_filter(LUA_MATCH), routed=True)),
    ("module-model", with_filter(module_filter("model"), routed=True)),
    ("meta", with_counting("meta", stats_log=False)),
    ("meta-stats-log", with_counting("meta", stats_log=True)),
    ("module-counters", with_counting("counters", stats_log=False)),
    ("meta-stats-log-fixed", with_counting("meta", stats_log=True, edit=_fixed_values)),
    ("meta-stats-log-literal-tags", with_counting("meta", stats_log=True, edit=_literal_tags)),
    ("meta-all", with_counting("meta-all", stats_log=False)),
    ("meta-all-stats-log", with_counting("meta-all", stats_log=True)),
    ("module-counters-all", with_counting("counters-all", stats_log=False)),
]


def measure_variant(
    work: Path,
    mock_port: int,
    name: str,
    transform: Callable[[dict[str, Any]], None] | None,
    requests: int,
) -> tuple[float, int]:
    """(instructions per request, non-200 responses) of one minimal-route variant."""
    d = work / name
    d.mkdir(parents=True)
    port, admin = free_port(), free_port()
    bootstrap = minimal_bootstrap(port, admin, mock_port)
    if transform is not None:
        transform(bootstrap)
    path = d / "bootstrap.json"
    path.write_text(json.dumps(bootstrap))
    body = request_body(UPSTREAM_MODEL, prompt_variables=False)
    return count_instructions(d, path, port, body, requests)


def main(argv: list[str] | None = None) -> int:
    p = instruction_parser(__doc__, "dataplane-module.json")
    p.add_argument("--repeats", type=int, default=2)
    names = [n for n, _ in VARIANTS] + ["gateway"]
    args, only = parse_instruction_args(p, argv, names)
    work = Path(tempfile.mkdtemp(prefix="gatewayctl-module-"))
    library = build_module(work / "lib")
    os.environ[SEARCH_PATH] = str(library.parent)  # inherited by each Envoy
    mock = start_mock(work, Placement(None, None))
    counts: dict[str, list[float]] = {n: [] for n in names if not only or n in only}
    errors: dict[str, int] = dict.fromkeys(counts, 0)
    shares: dict[str, list[float]] = {n: [] for n in counts}
    span = lua_range(envoy_real_binary()) if args.lua_share else (0, 0)
    transforms = dict(VARIANTS)
    try:
        for repeat in range(args.repeats):
            for name in counts:
                run = work / f"run{repeat}"
                if name == "gateway":
                    run.mkdir(exist_ok=True)
                    per_request, failed = measure(run, mock.port, name, "full", [], args.requests)
                else:
                    per_request, failed = measure_variant(
                        run, mock.port, name, transforms[name], args.requests
                    )
                counts[name].append(per_request / 1000)
                errors[name] += failed
                share = ""
                if args.lua_share:
                    vm, traces = lua_share(run / name / "callgrind.out", span)
                    shares[name].append(per_request / 1000 * (vm + traces))
                    share = f"  LuaJIT {vm + traces:.0%} ({shares[name][-1]:.1f} k)"
                print(f"  {name:<13} run {repeat + 1}: {per_request / 1000:8.1f} k instructions"
                      f"/request  errors {failed}{share}", flush=True)  # fmt: skip
    finally:
        mock.stop()
    rows: list[dict[str, Any]] = [
        {"variant": n, "k_instructions": [round(c, 1) for c in cs],
         "median": round(statistics.median(cs), 1), "errors": errors[n],
         **({"k_luajit": [round(x, 1) for x in shares[n]]} if shares[n] else {})}
        for n, cs in counts.items()
    ]  # fmt: skip
    base = next((r["median"] for r in rows if r["variant"] == "minimal"), None)
    print("\n| variant | k instructions / request (runs) | median | Δ vs minimal |")
    print("|---|---|---:|---:|")
    for row in rows:
        delta = versus(row["median"], None if row["variant"] == "minimal" else base)
        runs = ", ".join(f"{c:.1f}" for c in row["k_instructions"])
        print(f"| {row['variant']} | {runs} | {row['median']:.1f} | {delta} |")
    save_results(args.json, args.requests, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
