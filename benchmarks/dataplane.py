"""Data-plane benchmark: the rendered gateway against direct, a minimal Envoy, and LiteLLM.

One run, one machine, one upstream (the built-in mock provider). Targets:

    direct    wrk -> mock
    gateway   wrk -> Envoy on the config gatewayctl rendered, every policy on the route
              (API key + allow list, request limit and token limit set far above the load,
              guardrails: deny pattern + email/credit-card redaction + size limit, a prompt
              with variables, JSON access log to a file) -> mock
    gateway:anthropic  the same gateway and policies, on a route whose provider is of type
              `anthropic`: each request and reply translated (OpenAI <-> Messages API) -> mock
    direct-anthropic   wrk -> the mock's Anthropic Messages API, with the request the gateway
              sends it (the Anthropic route's baseline for added latency)
    minimal   wrk -> Envoy with one route and the router filter only -> mock
    litellm   wrk -> LiteLLM proxy (PyPI, own virtualenv, 2 workers, no database,
              telemetry off) -> mock
    portkey   wrk -> Portkey's AI gateway (npm @portkey-ai/gateway, pinned, own prefix in
              the cache, one Node process, x-portkey-provider: openai and
              x-portkey-custom-host: the mock) -> mock

Each target at each concurrency, several repeats, round-robin (repeat, concurrency, target) so
drift on the machine spreads over all targets alike. Then the cost of each policy feature: one
route per feature on the same gateway, and the same config without the access log, at one
concurrency; beside them the response cache, on a gateway of its own that adds the route
bench-cache: gateway-cache:none (bench-none there), gateway-cache:cache-hit (the same request
every time, answered from the store) and gateway-cache:cache-miss (`cache-control: no-cache`:
sent upstream, its answer stored). Pinning: the proxy under test gets CPU 0 to itself; wrk and
the mock share CPU 1.
Besides requests per second and latency it records the CPU time of every process, so the
proxies' CPU per request (which the mock's speed does not cap) and the CPU that unrelated
processes took during each run are in the results.

    python -m benchmarks.dataplane --duration 10 --repeats 3 --concurrency 1,16,64
    python -m benchmarks.dataplane --quick
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import dataplane_report as report
from benchmarks.dataplane_checks import check_anthropic_route, check_gateway, count_lines
from benchmarks.dataplane_gateway import (
    CACHE_ROUTE,
    CACHE_VARIANTS,
    FEATURES,
    UPSTREAM_MODEL,
    request_body,
    route_model,
)
from benchmarks.dataplane_load import Measurement, measure, write_script, wrk_version
from benchmarks.dataplane_procs import Service, check_completion, wait_quiet
from benchmarks.dataplane_targets import (
    ANTHROPIC_HEADERS,
    ANTHROPIC_PATH,
    AUTH,
    CHAT_PATH,
    DEFAULT_CACHE,
    LITELLM_MODEL,
    PORTKEY_SPEC,
    PORTKEY_VERSION,
    Placement,
    ensure_litellm,
    ensure_portkey,
    envoy_binary,
    litellm_version,
    portkey_headers,
    start_gateway,
    start_litellm,
    start_minimal,
    start_mock,
    start_portkey,
)

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per run (default 10)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--concurrency", default="1,16,64", help="connections, comma-separated")
    p.add_argument(
        "--feature-concurrency",
        type=int,
        default=16,
        help="concurrency of the per-feature runs (default 16)",
    )
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per target")
    p.add_argument("--envoy-concurrency", type=int, default=1, help="Envoy worker threads")
    p.add_argument("--no-litellm", action="store_true", help="leave LiteLLM out")
    p.add_argument("--no-portkey", action="store_true", help="leave Portkey's gateway out")
    p.add_argument("--no-features", action="store_true", help="skip the per-feature runs")
    p.add_argument(
        "--module",
        action="store_true",
        help="also the gateway with dataPlaneFilters: module (the compiled filters, built "
        "from source with the C compiler), beside the Lua one",
    )
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    p.add_argument(
        "--quiet-threshold",
        type=float,
        default=0.15,
        help="before each run wait (up to --quiet-wait s) until the machine's busy "
        "fraction is at most this",
    )
    p.add_argument("--quiet-wait", type=float, default=10.0)
    p.add_argument(
        "--max-noise",
        type=float,
        default=0.05,
        help="a run during which unrelated processes used more than this fraction "
        "of the machine is repeated (default 0.05)",
    )
    p.add_argument("--noise-retries", type=int, default=2)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="LiteLLM virtualenv cache")
    p.add_argument("--json", type=Path, default=Path("dataplane.json"), help="results file")
    p.add_argument(
        "--quick",
        action="store_true",
        help="sanity run: 2 s runs, 1 repeat, concurrency 1,16; LiteLLM only if "
        "its virtualenv is already cached",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.repeats, args.concurrency, args.warmup = 2.0, 1, "1,16", 1.0
        if not (args.cache / "litellm-venv" / ".installed").exists():
            args.no_litellm = True
        if not (args.cache / f"portkey-{PORTKEY_VERSION}" / ".installed").exists():
            args.no_portkey = True
    return args


def cpu_idle() -> str:
    """How idle vCPUs wait: on a KVM guest with the haltpoll governor, a halt poll of 0 makes
    every wake-up of an idle CPU a full exit, which sets the floor of a proxied request's
    latency at one connection (docs/performance.md, "Latest")."""
    cpuidle = Path("/sys/devices/system/cpu/cpuidle")
    parts = []
    for name in ("current_driver", "current_governor"):
        with contextlib.suppress(OSError):
            parts.append(f"{name.removeprefix('current_')} {(cpuidle / name).read_text().strip()}")
    with contextlib.suppress(OSError):
        poll = Path("/sys/module/haltpoll/parameters/guest_halt_poll_ns").read_text().strip()
        parts.append(f"guest_halt_poll_ns {poll}")
    return ", ".join(parts) or "unknown"


def machine_info(placement: Placement, envoy_concurrency: int) -> dict[str, Any]:
    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    envoy = subprocess.run(
        [envoy_binary(), "--version"], capture_output=True, text=True, timeout=60, check=False
    ).stdout.strip()
    rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "cpu_idle": cpu_idle(),
        "python": platform.python_version(),
        "envoy": envoy.split("version:")[-1].strip(),
        "envoy_concurrency": envoy_concurrency,
        "wrk": wrk_version(),
        "gatewayctl_commit": rev,
        "pinning": placement.describe(),
    }


class Bench:
    """The running targets and every measurement taken against them."""

    def __init__(self, args: argparse.Namespace, work: Path, placement: Placement) -> None:
        self.args, self.work, self.placement = args, work, placement
        self.services: dict[str, Service] = {}
        self.scripts: dict[str, tuple[str, Path]] = {}  # variant -> (url, wrk script)
        self.results: list[Measurement] = []
        self.features: list[Measurement] = []
        self.warmups: list[Measurement] = []
        self.notes: list[str] = []
        self.access_log: Path | None = None

    def add_script(
        self,
        variant: str,
        service: Service,
        body: bytes,
        url_path: str = CHAT_PATH,
        headers: dict[str, str] = AUTH,
    ) -> None:
        path = write_script(self.work / f"{variant.replace(':', '-')}.lua", body, headers)
        self.scripts[variant] = (f"http://127.0.0.1:{service.port}{url_path}", path)
        check_completion(service.port, url_path, body, headers)

    def run(
        self,
        variant: str,
        target: str,
        conc: int,
        seconds: float,
        repeat: int,
        into: list[Measurement],
    ) -> Measurement:
        """One measurement; repeated (bounded) while unrelated processes took too much CPU."""
        url, script = self.scripts[variant]
        proxy = self.services.get(target)
        proxy_pids = proxy.pids if proxy is not None and target != "mock" else []
        best: Measurement | None = None
        for attempt in range(1 + self.args.noise_retries):
            wait_quiet(self.args.quiet_threshold, self.args.quiet_wait)
            m = measure(
                variant,
                url,
                script,
                conc,
                seconds,
                repeat,
                self.placement.client,
                proxy_pids,
                self.services["mock"].pids,
            )
            noise = m.other_cpu_s / (m.seconds * (os.cpu_count() or 1)) if m.seconds else 0.0
            print(
                f"  {variant:<22} c={conc:<3} r={repeat} {m.rps:>9,.0f} req/s  "
                f"p50 {m.p50_ms:.3f} ms  p99 {m.p99_ms:.3f} ms  errors {m.non2xx}+"
                f"{m.socket_errors}  proxy {m.proxy_us_per_request:.0f} µs/req  "
                f"other CPU {noise:.0%}" + (f" (attempt {attempt + 1})" if attempt else ""),
                flush=True,
            )
            if best is None or m.other_cpu_s < best.other_cpu_s:
                best = m
            if noise <= self.args.max_noise:
                break
        assert best is not None
        noise = best.other_cpu_s / (best.seconds * (os.cpu_count() or 1)) if best.seconds else 0
        if noise > self.args.max_noise and into is not self.warmups:
            self.notes.append(
                f"{variant} c={conc} r={repeat}: unrelated processes used "
                f"{noise:.0%} of the machine during the run"
            )
        into.append(best)
        if into is not self.warmups:  # partial results survive an interrupted run
            partial = {
                "partial": True,
                "runs": [m.as_dict() for m in self.results],
                "feature_runs": [m.as_dict() for m in self.features],
            }
            self.args.json.write_text(json.dumps(partial, indent=1) + "\n")
        return best

    def stop(self) -> None:
        for svc in reversed(list(self.services.values())):
            svc.stop()


def start_targets(bench: Bench, info: dict[str, Any]) -> None:
    args, work, placement = bench.args, bench.work, bench.placement
    mock = start_mock(work, placement)
    bench.services["mock"] = mock
    bench.add_script("direct", mock, request_body(UPSTREAM_MODEL, prompt_variables=False))

    gateway, access_log = start_gateway(
        work, "gateway", mock, placement, args.envoy_concurrency, access_log=True
    )
    bench.services["gateway"] = gateway
    bench.access_log = access_log
    for feature in FEATURES:
        body = request_body(route_model(feature), prompt_variables=True)
        bench.add_script(f"gateway:{feature}", gateway, body)
    bench.scripts["gateway"] = bench.scripts["gateway:full"]
    info["gateway_checks"] = check_gateway(gateway, mock)
    anthropic_checks, native_body = check_anthropic_route(gateway, mock)
    info["gateway_checks"] += anthropic_checks
    anthropic = request_body(route_model("anthropic"), prompt_variables=True)
    bench.add_script("gateway:anthropic", gateway, anthropic)
    bench.add_script("direct-anthropic", mock, native_body, ANTHROPIC_PATH, ANTHROPIC_HEADERS)

    if not args.no_features:
        nolog, _ = start_gateway(
            work, "gateway-nolog", mock, placement, args.envoy_concurrency, access_log=False
        )
        bench.services["gateway-nolog"] = nolog
        bench.add_script(
            "gateway-nolog:none", nolog, request_body(route_model("none"), prompt_variables=True)
        )
        # The response cache on a gateway of its own: a cache on one route costs the others a
        # little (docs/performance.md), which must not shift the other targets' numbers.
        cached, _ = start_gateway(
            work, "gateway-cache", mock, placement, args.envoy_concurrency, access_log=True,
            cache=True,
        )
        bench.services["gateway-cache"] = cached
        cache_body = request_body(route_model(CACHE_ROUTE), prompt_variables=True)
        bench.add_script("gateway-cache:none", cached,
                         request_body(route_model("none"), prompt_variables=True))
        for variant, headers in CACHE_VARIANTS.items():
            bench.add_script(f"gateway-cache:{variant}", cached, cache_body,
                             headers={**AUTH, **headers})

    if args.module:
        start_module_gateway(bench, mock)

    minimal = start_minimal(work, mock, placement, args.envoy_concurrency)
    bench.services["minimal"] = minimal
    bench.add_script("minimal", minimal, request_body(UPSTREAM_MODEL, prompt_variables=False))

    start_portkey_target(bench, info, mock)
    if args.no_litellm:
        info["litellm"] = "left out (--no-litellm, or --quick without a cached virtualenv)"
        return
    try:
        script = ensure_litellm(args.cache, work / "litellm-install.log")
        info["litellm"] = litellm_version(script)
        body = request_body(LITELLM_MODEL, prompt_variables=False)
        litellm = start_litellm(work, script, mock, placement, body)
        bench.services["litellm"] = litellm
        bench.add_script("litellm", litellm, body)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        info["litellm"] = f"not measured: {exc}"
        print(f"LiteLLM not measured: {exc}", file=sys.stderr)


def start_module_gateway(bench: Bench, mock: Service) -> None:
    """The gateway rendered with dataPlaneFilters: module, on the module gatewayctl up builds
    (its search path is set in this process's environment, which each Envoy inherits)."""
    from gatewayctl.local.module import build_module
    from gatewayctl.render.envoy.dynamic_module import SEARCH_PATH_ENV

    os.environ[SEARCH_PATH_ENV] = str(build_module(bench.work / "modules").parent)
    gateway, _ = start_gateway(bench.work, "gateway-module", mock, bench.placement,
                               bench.args.envoy_concurrency, access_log=True, filters="module")
    bench.services["gateway-module"] = gateway
    for feature in ("full", "none"):
        body = request_body(route_model(feature), prompt_variables=True)
        bench.add_script(f"gateway-module:{feature}", gateway, body)
    bench.scripts["gateway-module"] = bench.scripts["gateway-module:full"]


def start_portkey_target(bench: Bench, info: dict[str, Any], mock: Service) -> None:
    if bench.args.no_portkey:
        info["portkey"] = "left out (--no-portkey, or --quick without a cached install)"
        return
    try:
        script = ensure_portkey(bench.args.cache, bench.work / "portkey-install.log")
        info["portkey"] = PORTKEY_SPEC
        body = request_body(UPSTREAM_MODEL, prompt_variables=False)
        portkey = start_portkey(bench.work, script, mock, bench.placement, body)
        bench.services["portkey"] = portkey
        bench.add_script("portkey", portkey, body, headers=portkey_headers(mock.port))
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        info["portkey"] = f"not measured: {exc}"
        print(f"Portkey not measured: {exc}", file=sys.stderr)


def run_all(bench: Bench) -> None:
    args = bench.args
    concs = [int(c) for c in args.concurrency.split(",")]
    targets = [t for t in report.TARGETS_TEXT if t in bench.scripts]
    print(f"warm-up: {args.warmup:g} s per target at concurrency {max(concs)}", flush=True)
    for target in targets:
        bench.run(target, _service_of(target), max(concs), args.warmup, 0, bench.warmups)
    for repeat in range(1, args.repeats + 1):
        for conc in concs:
            for target in targets:
                bench.run(target, _service_of(target), conc, args.duration, repeat, bench.results)
    if args.no_features:
        return
    variants = ["direct", "minimal", "gateway-nolog:none", *[f"gateway:{f}" for f in FEATURES]]
    variants += ["gateway-cache:none", *(f"gateway-cache:{v}" for v in CACHE_VARIANTS)]
    variants.append("gateway:anthropic")
    if "gateway-module" in bench.scripts:
        variants += ["gateway-module:none", "gateway-module:full"]
    conc = args.feature_concurrency
    print(f"per-feature runs at concurrency {conc}", flush=True)
    for repeat in range(1, args.repeats + 1):
        for variant in variants:
            bench.run(variant, _service_of(variant), conc, args.duration, repeat, bench.features)


def _service_of(variant: str) -> str:
    return "mock" if variant.startswith("direct") else variant.split(":")[0]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM ends the run like Ctrl-C: the finally below stops every server it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    placement = Placement.for_machine(not args.no_pin)
    work = Path(tempfile.mkdtemp(prefix="gatewayctl-dataplane-"))
    info = machine_info(placement, args.envoy_concurrency)
    info.update(
        duration_s=args.duration,
        repeats=args.repeats,
        concurrency=args.concurrency,
        feature_concurrency=args.feature_concurrency,
        workdir=str(work),
    )
    print(json.dumps(info, indent=1), flush=True)
    bench = Bench(args, work, placement)
    try:
        start_targets(bench, info)
        run_all(bench)
    finally:
        bench.stop()  # Envoy flushes its access log on the way out
    info["gateway_requests_measured"] = sum(
        m.requests
        for m in bench.results + bench.features
        if m.target == "gateway" or m.target.startswith("gateway:")
    )
    info["access_log_lines"] = count_lines(bench.access_log)
    cells = report.summarise(bench.results)
    features = report.summarise(bench.features)
    ratios = report.compute_ratios(cells, features)
    checks = report.check_targets(cells + features, ratios)
    print("\n" + report.format_main(cells))
    if features:
        print(f"\nPer feature, concurrency {args.feature_concurrency} (Δ: against gateway:none)")
        print(report.format_features(features, ratios))
    print("\n" + json.dumps(ratios, indent=1))
    print("\nTargets:\n" + report.format_checks(checks))
    for line in report.format_per_core(ratios).splitlines():
        print("  " + line)
    print(report.format_anthropic(ratios))
    if info.get("access_log_lines") != info.get("gateway_requests_measured"):
        print(
            f"access log: {info.get('access_log_lines')} lines for "
            f"{info.get('gateway_requests_measured')} measured gateway requests "
            "(warm-up and checks add some)"
        )
    for note in bench.notes:
        print(f"note: {note}")
    out = {
        "info": info,
        "cells": [c.__dict__ for c in cells],
        "feature_cells": [c.__dict__ for c in features],
        "ratios": ratios,
        "targets": [{"target": n, "measured": v, "met": ok} for n, v, ok in checks],
        "notes": bench.notes,
        "runs": [m.as_dict() for m in bench.results],
        "feature_runs": [m.as_dict() for m in bench.features],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1) + "\n")
    print(f"\nresults: {args.json}  (work dir {work})")
    with contextlib.suppress(OSError):
        (work / "results.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0 if all(ok for name, _, ok in checks if name == "no errors in any run") else 1


if __name__ == "__main__":
    raise SystemExit(main())
