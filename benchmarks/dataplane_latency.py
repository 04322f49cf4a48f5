"""p50 at one connection of the compiled gateway's every-policy route with parts of its
configuration removed, side by side with the minimal route: what each part costs in latency.

At one connection each request starts with cold caches, so latency follows the size of the
whole path rather than any single part (docs/performance.md, "Latest"): this benchmark
measures both, one part removed at a time and all of them together. Every variant is its
own Envoy (the rendered gateway with `dataPlaneFilters: module`, route bench-full, the route
table inline so one edit reaches it); all run at once, pinned like benchmarks.dataplane (the
proxies on CPU 0, wrk and the mock on CPU 1), and are measured round-robin, `--repeats`
times, so the machine's drift spreads over all of them alike. The removed parts change the
gateway's answers only where a policy would have acted (no request here trips one).

    minimal         one route, router only (dataplane_targets.minimal_bootstrap)
    gateway         the compiled gateway, route bench-full, as benchmarked
    -access-log     without the access log (the JSON line and the stats loggers)
    -rbac           without the RBAC filter (deny patterns)
    -limits         without the local limiters (the module's `limits` filter and Envoy's two
                    local_ratelimit filters, off on this route, kept for bench-anthropic)
    -health-check   without the health_check filter
    -lua            without the Lua body filter (switched off on this route, still in the chain)
    -early-mutation without the early header mutation (client copies of internal headers)
    literal-model   x-gateway-model written as a literal instead of formatted from metadata
    member-cluster  the route straight to the model's member cluster (the composite parent left
                    out; bench-full, one attempt, has no retry policy to drop)
    -all            every part above removed at once
    envoy-json-log  the JSON line by Envoy's json_format logger instead of the module's
                    (the line the Lua gateways write; the same bytes but for the timings)

    python -m benchmarks.dataplane_latency --duration 3 --repeats 7
    python -m benchmarks.dataplane_latency --only=-access-log,-all   (`=`: the names start with -)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from benchmarks.dataplane_gateway import UPSTREAM_MODEL, render_gateway, request_body, route_model
from benchmarks.dataplane_instructions import (
    _hcm,
    envoy_json_log,
    no_log,
    without_filter,
    without_filter_named,
    without_limiters,
)
from benchmarks.dataplane_load import run_wrk, write_script
from benchmarks.dataplane_procs import Service, free_port
from benchmarks.dataplane_targets import (
    AUTH,
    CHAT_PATH,
    Placement,
    start_envoy,
    start_minimal,
    start_mock,
)
from gatewayctl.render.envoy.listener import with_inline_routes
from gatewayctl.render.envoy.names import LUA_FILTER, MODEL_RESPONSE_HEADER, model_cluster_name
from gatewayctl.render.envoy.routes import route_entries

Transform = Callable[[dict[str, Any]], None]
ROUTE = "bench-full"
MODEL = "bench-model"  # the one model behind bench-full (dataplane_gateway.write_root)


def _route(lds: dict[str, Any]) -> dict[str, Any]:
    vhost = _hcm(lds)["route_config"]["virtual_hosts"][0]
    route = next(r for r in route_entries(vhost) if r["name"] == ROUTE)
    return cast(dict[str, Any], route)  # the entry itself: the transforms edit it in place


def no_early_mutation(lds: dict[str, Any]) -> None:
    _hcm(lds).pop("early_header_mutation_extensions")


def literal_model(lds: dict[str, Any]) -> None:
    for header in _route(lds)["response_headers_to_add"]:
        if header["header"]["key"] == MODEL_RESPONSE_HEADER:
            header["header"]["value"] = MODEL


def member_cluster(lds: dict[str, Any]) -> None:
    action = _route(lds)["route"]
    action["cluster"] = model_cluster_name(MODEL)
    action.pop("retry_policy", None)  # a route with retries or fallbacks has one


PARTS: dict[str, list[Transform]] = {
    "-access-log": [no_log],
    "-rbac": [without_filter("rbac")],
    "-limits": [without_limiters],
    "-health-check": [without_filter("health_check")],
    "-lua": [without_filter_named(LUA_FILTER)],
    "-early-mutation": [no_early_mutation],
    "literal-model": [literal_model],
    "member-cluster": [member_cluster],
}
VARIANTS: dict[str, list[Transform]] = {
    "gateway": [], **PARTS, "-all": [t for ts in PARTS.values() for t in ts],
    "envoy-json-log": [envoy_json_log]}


def variant_lds(config_dir: Path, transforms: list[Transform]) -> dict[str, Any]:
    """The rendered listener with the route table inline and `transforms` applied."""
    lds: dict[str, Any] = json.loads((config_dir / "lds.json").read_text())
    table = json.loads((config_dir / "rds.json").read_text())["resources"][0]
    table = {k: v for k, v in table.items() if k != "@type"}
    lds["resources"] = [with_inline_routes(r, table) for r in lds["resources"]]
    for transform in transforms:
        transform(lds)
    return lds


def start_variant(work: Path, name: str, mock: Service, placement: Placement) -> Service:
    d = work / name.strip("-+")
    d.mkdir(parents=True)
    port, admin = free_port(), free_port()
    bootstrap = render_gateway(d, f"http://127.0.0.1:{mock.port}", port, admin,
                               d / "access.log", filters="module")
    lds = variant_lds(d / "config", VARIANTS[name])
    (d / "config" / "lds.json").write_text(json.dumps(lds))
    return start_envoy(name.strip("-+"), d, bootstrap, port, admin, placement, 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=3, help="seconds per run")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--only", help="variants, comma-separated (minimal always runs)")
    p.add_argument("--json", type=Path, help="results file")
    args = p.parse_args(argv)
    names = list(VARIANTS) if args.only is None else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"--only: unknown variant {', '.join(unknown)}; known variants: "
                f"{', '.join(VARIANTS)}")
    from gatewayctl.local.module import build_module
    from gatewayctl.render.envoy.dynamic_module import SEARCH_PATH_ENV

    work = Path(tempfile.mkdtemp(prefix="gatewayctl-latency-"))
    placement = Placement.for_machine(True)
    mock = start_mock(work, placement)
    os.environ[SEARCH_PATH_ENV] = str(build_module(work / "modules").parent)
    services: dict[str, Service] = {}
    try:
        services["minimal"] = start_minimal(work, mock, placement, 1)
        for name in names:
            services[name] = start_variant(work, name, mock, placement)
        scripts = {
            "minimal": write_script(work / "minimal.lua",
                                    request_body(UPSTREAM_MODEL, prompt_variables=False),
                                    {"content-type": "application/json"}),
            "gateway": write_script(work / "gateway.lua",
                                    request_body(route_model("full"), prompt_variables=True),
                                    AUTH),
        }
        p50: dict[str, list[float]] = {name: [] for name in services}
        for rep in range(args.repeats + 1):  # the first round warms up and is not kept
            for name, svc in services.items():
                script = scripts["minimal" if name == "minimal" else "gateway"]
                run = run_wrk(f"http://127.0.0.1:{svc.port}{CHAT_PATH}", script, 1,
                              args.duration if rep else 1, placement.client)
                if run.get("status", 0) or run.get("timeout", 0):
                    raise RuntimeError(f"{name}: {run['status']:.0f} non-2xx answers, "
                                       f"{run['timeout']:.0f} timeouts; see {work}")
                if rep:
                    p50[name].append(run["p50"])
    finally:
        for svc in [*services.values(), mock]:
            svc.stop()
    medians = {name: statistics.median(values) for name, values in p50.items()}
    base = medians.get("gateway")
    print(f"p50 at 1 connection, µs (median of {args.repeats}; work dir {work})")
    for name, value in medians.items():
        against = "" if base is None else f"  {value - base:+5.0f} against gateway"
        print(f"  {name:16} {value:6.0f}{against}   {[round(v) for v in p50[name]]}")
    if args.json:
        args.json.write_text(json.dumps({"p50_us": p50, "median_us": medians}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
