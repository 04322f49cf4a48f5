"""The response cache per Envoy (replica scope) and shared by every replica (global scope),
side by side in one run.

    local:none    route bench-none on the gateway with the route bench-cache (replica scope)
    local:hit     bench-cache, the same request every time: answered from the worker's store
    local:miss    bench-cache, a new question every request: looked up, sent upstream, stored
    shared:none, shared:hit, shared:miss   the same on the same root in `limits.scope: global`:
                  the lookup (an httpCall Envoy waits for) and the store (an asynchronous
                  httpCall after the answer) go to the cache store service (`gatewayctl
                  cache-store`, Python, asyncio) and Redis (Debian's redis-server)

Envoy's CPU per request is measured apart from the store service's and Redis's
(`service_us_per_request`, `redis_us_per_request`), so what Envoy itself adds does not depend
on the Python service. Pinning as in dataplane.py: each Envoy on CPU 0, wrk and the mock on
CPU 1, the store service, the rate limit service (which no route calls here) and Redis on
CPU 1 too (in production they are other pods). Runs go round-robin (repeat, concurrency,
target); cells are medians. `--instructions N`: Envoy's own instructions per request of each
target (callgrind, load-independent; the services run outside valgrind).

    python -m benchmarks.dataplane_cache --duration 5 --repeats 3 --concurrency 1,16
    python -m benchmarks.dataplane_cache --instructions 400 --json cache-instructions.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.dataplane_gateway import CACHE_ROUTE, render_gateway, request_body, route_model
from benchmarks.dataplane_limits import (
    _commit,
    median_cell,
    start_limit_service,
    start_timed_run,
    timed_parser,
)
from benchmarks.dataplane_procs import (
    Service,
    free_port,
    spawn,
)
from benchmarks.dataplane_targets import Placement, start_envoy, start_mock

GATEWAYS = ("local", "shared")
VARIANTS = ("none", "hit", "miss")
TARGETS = tuple(f"{g}:{v}" for g in GATEWAYS for v in VARIANTS)

# wrk: every request of a `miss` target asks a question no earlier request asked (a number per
# wrk thread, drawn at its start, and a counter), so each is looked up, missed and stored.
_VARY = """
local n, prefix = 0, "0"
init = function(args)
  math.randomseed(os.time() + (tonumber(string.sub(tostring({}), 10), 16) or 0))
  prefix = tostring(math.random(1, 1000000000))
end
request = function()
  n = n + 1
  local body = string.gsub(wrk.body, "one word%.", "one word " .. prefix .. " " .. n .. ".", 1)
  return wrk.format(nil, nil, nil, body)
end
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = timed_parser(__doc__, 5.0, 2.0, "dataplane-cache.json")
    p.add_argument("--instructions", type=int, default=0, metavar="N",
                   help="instead: Envoy's instructions per request (callgrind, N requests) of "
                        "each target, the services running outside valgrind")
    return p.parse_args(argv)


def start_store_service(work: Path, redis: Service, placement: Placement) -> Service:
    port = free_port()
    svc = spawn("cachestore", [sys.executable, "-m", "gatewayctl", "cache-store", "--gateway",
                               "bench", "--redis", f"127.0.0.1:{redis.port}", "--port",
                               str(port)], work / "cachestore.log", port, placement.client)
    time.sleep(1.5)  # it listens well within this; the gateway's checks below prove it
    return svc


def write_gateways(work: Path, mock: Service, rls: Service,
                   store: Service) -> dict[str, tuple[Path, int, int]]:
    """name -> (bootstrap, listener port, admin port) of the two gateways."""
    out = {}
    for name in GATEWAYS:
        port, admin = free_port(), free_port()
        shared = (f"127.0.0.1:{rls.port}", f"127.0.0.1:{store.port}") if name == "shared" \
            else None
        bootstrap = render_gateway(work / name, f"http://127.0.0.1:{mock.port}", port, admin,
                                   work / name / "access.log", cache=True, shared=shared)
        out[name] = (bootstrap, port, admin)
    return out


def body_of(variant: str) -> bytes:
    route = "none" if variant == "none" else CACHE_ROUTE
    return request_body(route_model(route), prompt_variables=True)


def instructions(args: argparse.Namespace) -> int:
    from benchmarks.dataplane_instructions import count_instructions

    work = Path(tempfile.mkdtemp(prefix="gatewayctl-cache-instructions-"))
    none = Placement(None, None)
    services: list[Service] = []
    rows: dict[str, Any] = {}
    info = {"loadavg_start": Path("/proc/loadavg").read_text().split()[:3]}
    try:
        mock = start_mock(work, none)
        redis, rls = start_limit_service(work, none)
        store = start_store_service(work, redis, none)
        services += [mock, redis, rls, store]
        gateways = write_gateways(work, mock, rls, store)
        for target in TARGETS:
            gateway, _, variant = target.partition(":")
            bootstrap, port, _ = gateways[gateway]
            d = work / target.replace(":", "-")
            d.mkdir()
            per_request, errors = count_instructions(
                d, bootstrap, port, body_of(variant), args.instructions,
                vary=variant == "miss")
            rows[target] = {"k_instructions": round(per_request / 1000, 1), "errors": errors}
            print(f"  {target:<14} {per_request / 1000:8.1f} k instructions/request  "
                  f"errors {errors}", flush=True)
    finally:
        for svc in reversed(services):
            svc.stop()
    info["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    for variant in VARIANTS:
        shared, local = rows[f"shared:{variant}"], rows[f"local:{variant}"]
        rows[f"shared-vs-local:{variant}"] = round(
            shared["k_instructions"] - local["k_instructions"], 1)
    out = {"requests": args.instructions, "commit": _commit(), "info": info, "rows": rows}
    args.json.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    return 0 if all(r["errors"] == 0 for r in rows.values() if isinstance(r, dict)) else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.instructions:
        return instructions(args)
    run = start_timed_run(args, "gatewayctl-cache-bench-")
    services = run.services
    try:
        store = services["cachestore"] = start_store_service(run.work, run.redis, run.placement)
        gateways = write_gateways(run.work, run.mock, services["ratelimit"], store)
        for name, (bootstrap, port, admin) in gateways.items():
            services[name] = start_envoy(name, run.work / name, bootstrap, port, admin,
                                         run.placement, 1)
        for svc in services.values():
            svc.refresh_pids()
        for target in TARGETS:
            gateway, _, variant = target.partition(":")
            run.add_script(target, gateway, body_of(variant), _VARY if variant == "miss" else "")
        run.warm_up(TARGETS)
        for repeat in range(1, args.repeats + 1):
            for conc in run.concs:
                for target in TARGETS:
                    run.record(target, conc, repeat,
                               store if target.startswith("shared") else None, 12)
    finally:
        run.stop()
    info, concs, results, helpers_cpu = run.info, run.concs, run.results, run.helpers_cpu
    cells = {key: median_cell(runs, helpers_cpu if key.startswith("shared") else {})
             for key, runs in results.items()}
    added = {}
    for conc in concs:
        for variant in VARIANTS:
            local, shared = cells[f"local:{variant}@{conc}"], cells[f"shared:{variant}@{conc}"]
            added[f"{variant}@{conc}"] = {
                "shared_vs_local_p50_ms": round(shared["p50_ms"] - local["p50_ms"], 4),
                "envoy_us_per_request_added": round(
                    shared["envoy_us_per_request"] - local["envoy_us_per_request"], 1),
                "store_service_us_per_request": shared.get("service_us_per_request"),
                "redis_us_per_request": shared.get("redis_us_per_request"),
            }
    out = {"info": info, "cells": cells, "added": added,
           "runs": {k: [m.as_dict() for m in v] for k, v in results.items()}}
    args.json.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({"info": info, "cells": cells, "added": added}, indent=1))
    print(f"results: {args.json}")
    return 0 if all(c["errors"] == 0 for c in cells.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
