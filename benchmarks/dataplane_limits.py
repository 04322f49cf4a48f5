"""What global limits cost: the gateway with global limits, side by side in one run with
today's gateway (replica scope) and the minimal Envoy route.

    minimal          wrk -> Envoy, one route, router only -> mock
    …:1limit         the same two gateways on route bench-ratelimit: one request limit by
                     route; in global scope the consumer's enforced budget (it covers every
                     route) adds its check to the call before and a charge after, as on
                     bench-full: two calls per request either way
    gateway          wrk -> the rendered gateway, route bench-full (every policy; its request
                     and token limits by consumer counted in Envoy, replica scope) -> mock
    gateway-global   the same root with `limits: {scope: global}` and the consumer's budget
                     enforced: per request one call to the rate limit service before it goes
                     on (every descriptor: requests, tokens and budget) and one Envoy makes
                     when the stream is done (the tokens and cost the response used), the
                     service counting in Redis
    gateway-nullservice  the same global gateway whose service answers OK at once, without
                     decoding or Redis (benchmarks/null_ratelimit.py, on the stand-in's HTTP/2
                     server): the floor under the stand-in; bench-full only

The rate limit service is the local stand-in (`gatewayctl ratelimit-service`, Python, uvloop)
and Debian's redis-server; Kubernetes runs the official Go service, so the service's own
figures are an upper bound of what production adds. Envoy's CPU per request
(`envoy_us_per_request`) is measured apart from the service's and Redis's
(`service_us_per_request`, `redis_us_per_request`), so what the gateway itself adds does not
depend on the stand-in. Pinning as in dataplane.py: each Envoy on CPU 0, wrk and the mock on
CPU 1; the service and Redis run on CPU 1 too (in production they
are other pods). Runs go round-robin (repeat, concurrency, target); cells are medians.

    python -m benchmarks.dataplane_limits --duration 8 --repeats 3 --concurrency 1,16
    python -m benchmarks.dataplane_limits --instructions 400 --json limits-instructions.json
    python -m benchmarks.dataplane_limits --service-instructions 200 --json limits-service.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.dataplane_gateway import (
    PROVIDER,
    request_body,
    route_model,
    write_root,
    write_secrets,
)
from benchmarks.dataplane_load import Measurement, measure, write_script
from benchmarks.dataplane_procs import (
    Service,
    check_completion,
    cpu_seconds,
    free_port,
    spawn,
    wait_quiet,
)
from benchmarks.dataplane_targets import (
    AUTH,
    CHAT_PATH,
    Placement,
    start_envoy,
    start_minimal,
    start_mock,
)
from gatewayctl.ir import GatewayIR, LimitsIR
from gatewayctl.pipeline import compile_root
from gatewayctl.render.envoy import loopback_options, render_envoy
from gatewayctl.render.envoy.bundle import dump_compact
from gatewayctl.render.ratelimit_config import dump_ratelimit_config, render_ratelimit_config

TARGETS = ("minimal", "gateway", "gateway-global", "gateway:1limit", "gateway-global:1limit")
# the timed run adds the floor under the stand-in: the global gateway (bench-full) whose service
# answers OK at once, without decoding or Redis (benchmarks/null_ratelimit.py)
NULL_TARGET = "gateway-nullservice"
TIMED_TARGETS = (*TARGETS, NULL_TARGET)
# target -> (service, route): ":1limit" is route bench-ratelimit (one request limit by route;
# with the consumer's enforced budget, a check before and a charge after, as bench-full)


def timed_parser(description: str | None, duration: float, warmup: float,
                 json_name: str) -> argparse.ArgumentParser:
    """The options of a timed run (start_timed_run), here and in benchmarks.dataplane_cache."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=duration)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--concurrency", default="1,16")
    p.add_argument("--warmup", type=float, default=warmup)
    p.add_argument("--quiet-threshold", type=float, default=0.15)
    p.add_argument("--quiet-wait", type=float, default=5.0)
    p.add_argument("--json", type=Path, default=Path(json_name))
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = timed_parser(__doc__, 8.0, 3.0, "dataplane-limits.json")
    p.add_argument("--instructions", type=int, default=0, metavar="N",
                   help="instead: Envoy's instructions per request (callgrind, N requests) of "
                        "each gateway target, with the same service and Redis")
    p.add_argument("--service-instructions", type=int, default=0, metavar="N",
                   help="instead: the rate limit service's instructions per call (the service "
                        "under callgrind, N requests of each global target through Envoy)")
    return p.parse_args(argv)


def global_ir(ir: GatewayIR, redis: str, timeout_ms: int | None = None) -> GatewayIR:
    consumers = tuple(
        dataclasses.replace(c, budget_usd_per_month=1_000.0, budget_enforce=True)
        for c in ir.consumers
    )
    limits = LimitsIR(scope="global", redis_address=redis)
    if timeout_ms is not None:
        limits = dataclasses.replace(limits, timeout_ms=timeout_ms)
    return dataclasses.replace(ir, limits=limits, consumers=consumers)


def write_gateway_variant(
    work: Path, name: str, mock_port: int, ratelimit: str | None, timeout_ms: int | None = None
) -> tuple[Path, int, int]:
    """The dataplane benchmark's gateway (access log on), in replica scope or, given the rate
    limit service's address, in global scope (its configuration written beside, for the
    service): (bootstrap, listener port, admin port)."""
    dirs = work / name
    port, admin = free_port(), free_port()
    root = write_root(dirs / "root", port)
    write_secrets(dirs / "secrets")
    ir = compile_root(root).ir
    if ratelimit is not None:
        ir = global_ir(ir, "127.0.0.1:6379", timeout_ms)
    options = loopback_options(
        admin_port=admin,
        listener_port=port,
        secrets_dir=str(dirs / "secrets"),
        config_dir=str(dirs / "config"),
        access_log_path=str(dirs / "access.log"),
        provider_overrides={PROVIDER: f"http://127.0.0.1:{mock_port}"},
        ratelimit_address=ratelimit,
    )
    bundle = render_envoy(ir, options)
    (dirs / "config").mkdir(parents=True, exist_ok=True)
    for file, text in bundle.files().items():
        if file.endswith(".json"):
            (dirs / "config" / file).write_text(text)
    config = render_ratelimit_config(ir)
    if config is not None:
        (work / "ratelimit.yaml").write_text(dump_ratelimit_config(config))
    bootstrap = dirs / "bootstrap.json"
    bootstrap.write_text(dump_compact(bundle.bootstrap))
    return bootstrap, port, admin


def start_gateway_variant(
    work: Path, name: str, mock: Service, placement: Placement, ratelimit: str | None
) -> Service:
    bootstrap, port, admin = write_gateway_variant(work, name, mock.port, ratelimit)
    return start_envoy(name, work / name, bootstrap, port, admin, placement, 1)


def start_limit_service(work: Path, placement: Placement, wrap: tuple[str, ...] = (),
                        start_s: float = 2.0) -> tuple[Service, Service]:
    """redis-server and the local rate limit service (its config written by the gateway); the
    service's command prefixed by `wrap` (valgrind) and given `start_s` to listen."""
    redis_port, rls_port = free_port(), free_port()
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        raise SystemExit("redis-server is not installed (apt-get install -y redis-server)")
    redis = spawn("redis", [redis_bin, "--bind", "127.0.0.1", "--port", str(redis_port),
                            "--save", "", "--appendonly", "no", "--dir", str(work)],
                  work / "redis.log", redis_port, placement.client)
    (work / "ratelimit.yaml").write_text("domain: bench\ndescriptors: []\n")
    rls = spawn("ratelimit", [*wrap, sys.executable, "-m", "gatewayctl", "ratelimit-service",
                              "--config", str(work / "ratelimit.yaml"),
                              "--redis", f"127.0.0.1:{redis_port}", "--port", str(rls_port)],
                work / "ratelimit.log", rls_port, placement.client)
    time.sleep(start_s)  # both listen well within this; the gateway's checks below prove it
    return redis, rls


def median_cell(
    runs: list[Measurement], helpers_cpu: dict[int, tuple[float, float]]
) -> dict[str, Any]:
    def med(values: list[float]) -> float:
        return round(statistics.median(values), 4)

    cell = {
        "runs": len(runs),
        "rps": med([m.rps for m in runs]),
        "p50_ms": med([m.p50_ms for m in runs]),
        "p99_ms": med([m.p99_ms for m in runs]),
        "envoy_us_per_request": med([m.proxy_us_per_request for m in runs]),
        "errors": sum(m.non2xx + m.socket_errors for m in runs),
    }
    if helpers_cpu:
        for i, name in enumerate(("service", "redis")):
            cell[f"{name}_us_per_request"] = med(
                [helpers_cpu[id(m)][i] / m.requests * 1e6 for m in runs if m.requests])
    return cell


@dataclasses.dataclass
class TimedRun:
    """What main() of a timed benchmark beside Redis and the rate limit service sets up, here
    and in benchmarks.dataplane_cache: the machine's placement, a work folder, the mock, Redis
    and the service started (`services`, in start order: more are added by the caller), the
    wrk scripts per target and where the measurements go. stop() stops every service, the last
    started first, and notes the load average at the end."""

    args: argparse.Namespace
    placement: Placement
    work: Path
    concs: list[int]
    info: dict[str, Any]
    services: dict[str, Service]
    scripts: dict[str, tuple[str, Path]] = dataclasses.field(default_factory=dict)
    results: dict[str, list[Measurement]] = dataclasses.field(default_factory=dict)
    # id(measurement) -> CPU seconds of (the helper service, Redis) during it
    helpers_cpu: dict[int, tuple[float, float]] = dataclasses.field(default_factory=dict)

    @property
    def mock(self) -> Service:
        return self.services["mock"]

    @property
    def redis(self) -> Service:
        return self.services["redis"]

    def add_script(self, target: str, service: str, body: bytes, extra_lua: str = "") -> None:
        """The target's wrk script (its request body, `extra_lua` appended), checked once
        through the gateway before any load."""
        path = write_script(self.work / f"{target.replace(':', '-')}.lua", body, AUTH)
        if extra_lua:
            path.write_text(path.read_text() + extra_lua)
        self.scripts[target] = (f"http://127.0.0.1:{self.services[service].port}{CHAT_PATH}",
                                path)
        check_completion(self.services[service].port, CHAT_PATH, body, AUTH)

    def warm_up(self, targets: tuple[str, ...]) -> None:
        for target in targets:
            url, script = self.scripts[target]
            measure(target, url, script, max(self.concs), self.args.warmup, 0,
                    self.placement.client, self.services[target.partition(":")[0]].pids,
                    self.mock.pids)

    def record(self, target: str, conc: int, repeat: int, helper: Service | None,
               width: int) -> Measurement:
        """One timed run of `target` after the machine is quiet; with `helper`, its CPU and
        Redis's during the run are kept beside the measurement."""
        wait_quiet(self.args.quiet_threshold, self.args.quiet_wait)
        url, script = self.scripts[target]
        before = (cpu_seconds(helper.pids), cpu_seconds(self.redis.pids)) if helper else None
        m = measure(target, url, script, conc, self.args.duration, repeat,
                    self.placement.client, self.services[target.partition(":")[0]].pids,
                    self.mock.pids)
        if helper is not None and before is not None:
            self.helpers_cpu[id(m)] = (cpu_seconds(helper.pids) - before[0],
                                       cpu_seconds(self.redis.pids) - before[1])
        self.results.setdefault(f"{target}@{conc}", []).append(m)
        print(f"  {target:<{width}} c={conc:<3} r={repeat} {m.rps:>8,.0f} req/s "
              f"p50 {m.p50_ms:.3f} ms p99 {m.p99_ms:.3f} ms errors "
              f"{m.non2xx}+{m.socket_errors} envoy {m.proxy_us_per_request:.0f} "
              "µs/req", flush=True)
        return m

    def stop(self) -> None:
        for svc in reversed(list(self.services.values())):
            svc.stop()
        self.info["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]


def start_timed_run(args: argparse.Namespace, prefix: str) -> TimedRun:
    """The placement, a new work folder named by `prefix`, the run's facts (`info`) and the
    mock, redis-server and the rate limit service started (all stopped again if one fails)."""
    placement = Placement.for_machine(True)
    concs = [int(c) for c in args.concurrency.split(",")]
    run = TimedRun(
        args, placement, Path(tempfile.mkdtemp(prefix=prefix)), concs,
        {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "placement": placement.describe(),
            "duration_s": args.duration, "repeats": args.repeats, "concurrency": concs,
            "commit": _commit(),
            "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
        },
        {},
    )
    try:
        run.services["mock"] = start_mock(run.work, placement)
        run.services["redis"], run.services["ratelimit"] = start_limit_service(run.work,
                                                                                placement)
    except BaseException:
        run.stop()
        raise
    return run


def instructions(args: argparse.Namespace) -> int:
    """Envoy's own instructions per request of each gateway target: load-independent, and
    apart from the service's and Redis's work (which run outside valgrind)."""
    from benchmarks.dataplane_instructions import count_instructions

    work = Path(tempfile.mkdtemp(prefix="gatewayctl-limits-instructions-"))
    none = Placement(None, None)
    services: list[Service] = []
    rows: dict[str, Any] = {}
    try:
        mock = start_mock(work, none)
        services.append(mock)
        redis, rls = start_limit_service(work, none)
        services += [redis, rls]
        for target in TARGETS[1:]:
            service, _, variant = target.partition(":")
            name = target.replace(":", "-")
            ratelimit = f"127.0.0.1:{rls.port}" if service == "gateway-global" else None
            bootstrap, port, _ = write_gateway_variant(work, name, mock.port, ratelimit)
            body = request_body(route_model("ratelimit" if variant else "full"),
                                prompt_variables=True)
            per_request, errors = count_instructions(work / name, bootstrap, port, body,
                                                     args.instructions)
            rows[target] = {"k_instructions": round(per_request / 1000, 1), "errors": errors}
            print(f"  {target:<22} {per_request / 1000:8.1f} k instructions/request  "
                  f"errors {errors}", flush=True)
    finally:
        for svc in reversed(services):
            svc.stop()
    for suffix in ("", ":1limit"):
        base, glob = rows[f"gateway{suffix}"], rows[f"gateway-global{suffix}"]
        rows[f"added{suffix}"] = round(glob["k_instructions"] - base["k_instructions"], 1)
    out = {"requests": args.instructions, "commit": _commit(), "rows": rows}
    args.json.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    return 0 if all(r["errors"] == 0 for r in rows.values() if isinstance(r, dict)) else 1


def service_instructions(args: argparse.Namespace) -> int:
    """The stand-in's own instructions per call to it (Python, the HTTP/2 and gRPC framing,
    the handler, its Redis client; Redis itself outside valgrind): load-independent, so the
    service's cost can be compared across commits on a busy machine. Envoy runs outside
    valgrind with a long service timeout (the service runs ~50x slower under callgrind)."""
    from benchmarks.dataplane_instructions import _load, _total_instructions

    work = Path(tempfile.mkdtemp(prefix="gatewayctl-limits-service-"))
    none = Placement(None, None)
    services: list[Service] = []
    rows: dict[str, Any] = {}
    out = work / "callgrind.out"
    valgrind = ("valgrind", "--tool=callgrind", "--instr-atstart=no",
                f"--callgrind-out-file={out}")
    try:
        mock = start_mock(work, none)
        services.append(mock)
        # Python's start under valgrind takes long
        redis, rls = start_limit_service(work, none, valgrind, start_s=20.0)
        services += [redis, rls]
        bootstrap, port, admin = write_gateway_variant(work, "gateway-global", mock.port,
                                                       f"127.0.0.1:{rls.port}", timeout_ms=5000)
        envoy = start_envoy("gateway-global", work / "gateway-global", bootstrap, port, admin,
                            none, 1)
        services.append(envoy)
        for target in ("gateway-global", "gateway-global:1limit"):
            route = "ratelimit" if target.endswith(":1limit") else "full"
            body = request_body(route_model(route), prompt_variables=True)
            _load(port, body, 40)  # warm-up: connections, the configuration read
            calls0 = _calls(admin)
            for f in out.parent.glob(out.name + "*"):
                f.unlink()
            subprocess.run(["callgrind_control", "-i", "on", str(rls.proc.pid)], check=True,
                           capture_output=True)
            errors = _load(port, body, args.service_instructions)
            time.sleep(1.0)  # the charges sent when the streams end
            subprocess.run(["callgrind_control", "-i", "off", str(rls.proc.pid)], check=True,
                           capture_output=True)
            subprocess.run(["callgrind_control", "-d", str(rls.proc.pid)], check=True,
                           capture_output=True)
            time.sleep(1.0)
            calls = _calls(admin) - calls0
            total = _total_instructions(out)
            failed = limit_outcomes(admin)["error"]
            rows[target] = {"calls_per_request": round(calls / args.service_instructions, 2),
                            "k_instructions_per_call": round(total / max(calls, 1) / 1000, 1),
                            "errors": errors, "failed_calls": failed}
            print(f"  {target:<22} {rows[target]}", flush=True)
    finally:
        for svc in reversed(services):
            svc.stop()
    result = {"requests": args.service_instructions, "commit": _commit(), "rows": rows}
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0 if all(r["errors"] == 0 and r["failed_calls"] == 0 for r in rows.values()) else 1


def _calls(admin: int) -> int:
    """Calls Envoy made to the rate limit service so far (its gRPC cluster's requests)."""
    from benchmarks.dataplane_procs import http_call

    status, _, body = http_call(
        admin, "GET", "/stats?filter=gatewayctl_ratelimit.upstream_rq_total$", None, {})
    text = body.decode()
    return int(text.rsplit(":", 1)[1]) if status == 200 and ":" in text else 0


def limit_outcomes(admin: int) -> dict[str, int]:
    """What Envoy's rate limit filter made of the service's answers so far, summed over the
    routes: ok, over_limit, error (a failed call: the gateway then fails open, so a broken
    service would look fast), failure_mode_allowed."""
    from benchmarks.dataplane_procs import http_call

    status, _, body = http_call(
        admin, "GET", "/stats?filter=ratelimit\\.(ok|over_limit|error|failure_mode_allowed)$",
        None, {})
    out = {"ok": 0, "over_limit": 0, "error": 0, "failure_mode_allowed": 0}
    for line in body.decode().splitlines() if status == 200 else []:
        name, _, value = line.rpartition(": ")
        kind = name.rsplit(".", 1)[-1]
        if kind in out and value.isdigit():
            out[kind] += int(value)
    return out


def _commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.instructions:
        return instructions(args)
    if args.service_instructions:
        return service_instructions(args)
    run = start_timed_run(args, "gatewayctl-limits-bench-")
    services, mock, rls, placement, work = (run.services, run.mock, run.services["ratelimit"],
                                            run.placement, run.work)
    try:
        services["minimal"] = start_minimal(work, mock, placement, 1)
        services["gateway"] = start_gateway_variant(work, "gateway", mock, placement, None)
        services["gateway-global"] = start_gateway_variant(
            work, "gateway-global", mock, placement, f"127.0.0.1:{rls.port}")
        null_port = free_port()
        services["null"] = null = spawn(
            "null", [sys.executable, "-m", "benchmarks.null_ratelimit", "--port", str(null_port)],
            work / "null.log", null_port, placement.client)
        time.sleep(1.0)  # it listens well within this; check_completion below proves it
        services[NULL_TARGET] = start_gateway_variant(
            work, NULL_TARGET, mock, placement, f"127.0.0.1:{null_port}")
        for svc in services.values():
            svc.refresh_pids()
        for target in TIMED_TARGETS:
            service, _, variant = target.partition(":")
            route = "full" if not variant else "ratelimit"
            run.add_script(target, service, request_body(
                "gpt-4o" if target == "minimal" else route_model(route),
                prompt_variables=target != "minimal"))
        run.warm_up(TIMED_TARGETS)
        for repeat in range(1, args.repeats + 1):
            for conc in run.concs:
                for target in TIMED_TARGETS:
                    helper = null if target == NULL_TARGET else rls
                    measured = target.startswith("gateway-global") or target == NULL_TARGET
                    run.record(target, conc, repeat, helper if measured else None, 22)
        run.info["limit_outcomes"] = limit_outcomes(services["gateway-global"].admin_port)
        run.info["limit_outcomes_nullservice"] = limit_outcomes(
            services[NULL_TARGET].admin_port)
    finally:
        run.stop()
    info, concs, results, helpers_cpu = run.info, run.concs, run.results, run.helpers_cpu
    cells = {key: median_cell(runs, helpers_cpu if key.startswith(("gateway-global", NULL_TARGET))
                              else {})
             for key, runs in results.items()}
    added = {}
    for conc in concs:
        mn = cells[f"minimal@{conc}"]
        for suffix in ("", ":1limit"):
            g, gg = cells[f"gateway{suffix}@{conc}"], cells[f"gateway-global{suffix}@{conc}"]
            added[f"{conc}{suffix}"] = {
                "global_vs_gateway_p50_ms": round(gg["p50_ms"] - g["p50_ms"], 4),
                "global_vs_gateway_p99_ms": round(gg["p99_ms"] - g["p99_ms"], 4),
                "gateway_vs_minimal_p50_ms": round(g["p50_ms"] - mn["p50_ms"], 4),
                "global_vs_minimal_p50_ms": round(gg["p50_ms"] - mn["p50_ms"], 4),
                "envoy_us_per_request_added": round(
                    gg["envoy_us_per_request"] - g["envoy_us_per_request"], 1),
                "envoy_cpu_ratio_global_vs_gateway": round(
                    gg["envoy_us_per_request"] / g["envoy_us_per_request"], 3),
            }
    for conc in concs:
        # what of global limits' added p50 the floor takes (Envoy's two calls and a service
        # that answers at once) and what the stand-in's matching, Redis and counting add
        g, gg, gn = (cells[f"{t}@{conc}"] for t in ("gateway", "gateway-global", NULL_TARGET))
        added[f"{conc}:floor"] = {
            "nullservice_vs_gateway_p50_ms": round(gn["p50_ms"] - g["p50_ms"], 4),
            "global_vs_nullservice_p50_ms": round(gg["p50_ms"] - gn["p50_ms"], 4),
            "envoy_us_per_request_added_nullservice": round(
                gn["envoy_us_per_request"] - g["envoy_us_per_request"], 1),
        }
    out = {"info": info, "cells": cells, "added": added,
           "runs": {k: [m.as_dict() for m in v] for k, v in results.items()}}
    args.json.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({"cells": cells, "added": added}, indent=1))
    print(f"rate limit filter outcomes (gateway-global): {info['limit_outcomes']}; "
          f"({NULL_TARGET}): {info['limit_outcomes_nullservice']}")
    print(f"results: {args.json}")
    # a few calls past the 100 ms timeout on a loaded machine do not change the figures; a
    # service that fails its calls does (the gateway fails open: fast, and counting nothing)
    outcomes = info["limit_outcomes"]
    failed = outcomes["error"] > 0.01 * max(1, outcomes["ok"] + outcomes["over_limit"])
    return 0 if all(c["errors"] == 0 for c in cells.values()) and not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
