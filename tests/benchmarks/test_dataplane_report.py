"""The data-plane benchmark's report judges each gateway it measured against the issue's
targets: the default (Lua filters) and the one with dataPlaneFilters: module."""

from __future__ import annotations

from benchmarks.dataplane_report import Cell, check_targets, compute_ratios, format_per_core


def cell(target: str, conc: int, rps: float, p50: float, cpu: float, errors: int = 0) -> Cell:
    return Cell(target=target, concurrency=conc, runs=2, rps=rps, p50_ms=p50, p99_ms=p50 * 2,
                errors=errors, proxy_us=cpu, other_cpu_s=0.0)


def run() -> list[Cell]:
    cells = [cell("direct", c, 9000, 0.200, 0) for c in (1, 16)]
    cells += [cell("minimal", c, 8000, 0.300, 100) for c in (1, 16)]
    # The Lua gateway misses everything; the module gateway meets everything.
    cells += [cell("gateway", 1, 2000, 0.700, 300), cell("gateway", 16, 4000, 2.0, 250)]
    cells += [cell("gateway-module", 1, 5000, 0.450, 150),
              cell("gateway-module", 16, 6000, 1.0, 140)]
    cells += [cell("portkey", c, 700, 1.1, 900) for c in (1, 16)]
    return cells


def test_each_gateway_is_judged_on_its_own_figures() -> None:
    cells = run()
    ratios = compute_ratios(cells, [])
    row = ratios["per_concurrency"]["16"]  # type: ignore[index]
    assert row["gateway_vs_minimal_cpu_capacity"] == 0.4
    assert row["gateway_module_vs_minimal_cpu_capacity"] == round(100 / 140, 3)
    assert ratios["peak_gateway_module_vs_portkey_rps"] == round(6000 / 700, 1)
    checks = {name: ok for name, _, ok in check_targets(cells, ratios)}
    assert checks["gateway >= 60% of minimal Envoy per core of CPU at 16 connections"] is False
    assert checks["gateway (compiled filters) >= 60% of minimal Envoy per core of CPU at 16 "
                  "connections"] is True
    assert checks["gateway (compiled filters) >= 60% of minimal Envoy throughput at 16 "
                  "connections"] is True
    assert checks["gateway adds < 0.3 ms p50 at concurrency 1"] is False
    assert checks["gateway (compiled filters) adds < 0.3 ms p50 at concurrency 1"] is True
    assert checks["gateway (compiled filters) >= 5x Portkey throughput (peak)"] is True
    assert checks["no errors in any run"] is True
    shown = {name: value for name, value, _ in check_targets(cells, ratios)}
    assert shown["gateway (compiled filters) >= 5x Portkey throughput (peak)"] == "8.6x"


def test_a_run_without_the_module_gateway_judges_the_default_alone() -> None:
    cells = [c for c in run() if c.target != "gateway-module"]
    ratios = compute_ratios(cells, [])
    names = [name for name, _, _ in check_targets(cells, ratios)]
    assert not any("compiled" in name for name in names)
    assert "gateway >= 60% of minimal Envoy throughput (peak)" in names
    assert format_per_core(ratios) == (
        "per core of CPU, gateway vs minimal Envoy: 33% at 1, 40% at 16")


def test_errors_anywhere_miss_the_error_target() -> None:
    cells = run() + [cell("gateway-module", 64, 6000, 1.0, 140, errors=3)]
    checks = check_targets(cells, compute_ratios(cells, []))
    assert ("no errors in any run", "3", False) in checks
