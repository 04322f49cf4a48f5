"""Summaries, ratios and the printed tables of the data-plane benchmark. Pure: no I/O.

Each cell is the median over the repeats (requests per second, p50, p99, CPU per request);
errors are summed over the repeats, since a single error makes a run invalid.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from benchmarks.dataplane_load import Measurement

TARGETS_TEXT = {
    "direct": "direct to the mock upstream",
    "direct-anthropic": "direct to the mock, Anthropic API",
    "gateway": "gatewayctl gateway, every policy",
    "gateway:anthropic": "gateway, every policy, Anthropic",
    "gateway-module": "gateway, every policy, compiled filters",
    "minimal": "minimal Envoy route",
    "litellm": "LiteLLM proxy, 2 workers",
    "portkey": "Portkey gateway (Node), 1 process",
}

# Issue 9's targets, tightened by issue 21 (added p50; per core of CPU; Portkey).
MIN_VS_LITELLM = 50.0
MIN_VS_PORTKEY = 5.0
MIN_VS_MINIMAL = 0.60
MAX_ADDED_P50_MS = 0.3

# The gateways judged against the targets: the Lua filters (dataPlaneFilters: lua, what the
# default `auto` renders for Kubernetes and Helm) and, when the run has it (`--module`), the
# same gateway with dataPlaneFilters: module (what `auto` serves under `gatewayctl up` with a
# C compiler). Each one's figures are keyed
# by its prefix ("gateway_vs_minimal_rps", "gateway_module_vs_minimal_rps", ...).
GATEWAYS = {"gateway": "gateway", "gateway-module": "gateway (compiled filters)"}


def _prefix(target: str) -> str:
    return target.replace("-", "_")


@dataclass(frozen=True)
class Cell:
    target: str
    concurrency: int
    runs: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    proxy_us: float  # proxy CPU microseconds per request
    other_cpu_s: float  # largest CPU used by unrelated processes in one run

    @property
    def capacity_rps(self) -> float:
        """Requests per second one core would serve at this CPU cost (0: not a proxy)."""
        return 1e6 / self.proxy_us if self.proxy_us else 0.0


def summarise(measurements: Iterable[Measurement]) -> list[Cell]:
    groups: dict[tuple[str, int], list[Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.target, m.concurrency), []).append(m)
    return [
        Cell(
            target=target,
            concurrency=conc,
            runs=len(ms),
            rps=statistics.median(m.rps for m in ms),
            p50_ms=statistics.median(m.p50_ms for m in ms),
            p99_ms=statistics.median(m.p99_ms for m in ms),
            errors=sum(m.non2xx + m.socket_errors for m in ms),
            proxy_us=statistics.median(m.proxy_us_per_request for m in ms),
            other_cpu_s=max(m.other_cpu_s for m in ms),
        )
        for (target, conc), ms in groups.items()
    ]


def _find(cells: Sequence[Cell], target: str, conc: int) -> Cell | None:
    return next((c for c in cells if c.target == target and c.concurrency == conc), None)


def _peak(cells: Sequence[Cell], target: str) -> Cell | None:
    mine = [c for c in cells if c.target == target]
    return max(mine, key=lambda c: c.rps) if mine else None


def _throughput_ratios(key: str, gw: Cell, lite: Cell | None, mini: Cell | None,
                       portkey: Cell | None) -> dict[str, float]:
    """A gateway's throughput against LiteLLM, the minimal route and Portkey, by `key`."""
    out: dict[str, float] = {}
    if lite and lite.rps:
        out[f"{key}_vs_litellm_rps"] = round(gw.rps / lite.rps, 1)
    if mini and mini.rps:
        out[f"{key}_vs_minimal_rps"] = round(gw.rps / mini.rps, 3)
    if portkey and portkey.rps:
        out[f"{key}_vs_portkey_rps"] = round(gw.rps / portkey.rps, 1)
    return out


def compute_ratios(cells: Sequence[Cell], features: Sequence[Cell]) -> dict[str, object]:
    """The figures issue 9 asks for, each with the inputs it came from."""
    out: dict[str, object] = {}
    concs = sorted({c.concurrency for c in cells})
    per_conc: dict[str, dict[str, float | None]] = {}
    for conc in concs:
        lite = _find(cells, "litellm", conc)
        mini, direct = _find(cells, "minimal", conc), _find(cells, "direct", conc)
        portkey = _find(cells, "portkey", conc)
        row: dict[str, float | None] = {}
        for target in GATEWAYS:
            gw, key = _find(cells, target, conc), _prefix(target)
            if gw is None:
                continue
            row.update(_throughput_ratios(key, gw, lite, mini, portkey))
            if mini and gw.proxy_us:
                row[f"{key}_vs_minimal_cpu_capacity"] = round(mini.proxy_us / gw.proxy_us, 3)
            if lite and gw.proxy_us:
                row[f"{key}_vs_litellm_cpu_capacity"] = round(lite.proxy_us / gw.proxy_us, 1)
            if portkey and gw.proxy_us:
                row[f"{key}_vs_portkey_cpu_capacity"] = round(portkey.proxy_us / gw.proxy_us, 1)
        for name in (*GATEWAYS, "minimal", "litellm", "portkey"):
            cell = _find(cells, name, conc)
            if cell and direct:
                row[f"{_prefix(name)}_added_p50_ms"] = round(cell.p50_ms - direct.p50_ms, 3)
                row[f"{_prefix(name)}_added_p99_ms"] = round(cell.p99_ms - direct.p99_ms, 3)
        row.update(_anthropic_row(cells, conc))
        per_conc[str(conc)] = row
    out["per_concurrency"] = per_conc
    peaks = {t: _peak(cells, t) for t in TARGETS_TEXT}
    lite, mini, portkey = peaks["litellm"], peaks["minimal"], peaks["portkey"]
    for target in GATEWAYS:
        gw = peaks[target]
        if gw is not None:
            out.update(_throughput_ratios(f"peak_{_prefix(target)}", gw, lite, mini, portkey))
    base = _find(features, "gateway:none", features[0].concurrency) if features else None
    costs: dict[str, dict[str, float]] = {}
    for cell in features:
        if base is None:
            break
        costs[cell.target] = {
            "p50_ms": cell.p50_ms,
            "added_p50_us_vs_none": round((cell.p50_ms - base.p50_ms) * 1000, 1),
            "proxy_cpu_us_per_request": round(cell.proxy_us, 1),
            "added_cpu_us_vs_none": round(cell.proxy_us - base.proxy_us, 1),
            "rps": cell.rps,
        }
    out["features"] = costs
    return out


def _anthropic_row(cells: Sequence[Cell], conc: int) -> dict[str, float | None]:
    """The Anthropic route beside the OpenAI one: CPU per request (and their ratio), and the
    latency each adds over its own direct baseline (the mock answering that API)."""
    gw, ant = _find(cells, "gateway", conc), _find(cells, "gateway:anthropic", conc)
    direct, direct_ant = _find(cells, "direct", conc), _find(cells, "direct-anthropic", conc)
    row: dict[str, float | None] = {}
    if ant is None:
        return row
    row["anthropic_proxy_cpu_us"] = round(ant.proxy_us, 1)
    if gw is not None:
        row["openai_proxy_cpu_us"] = round(gw.proxy_us, 1)
        if gw.proxy_us:
            row["anthropic_vs_openai_cpu"] = round(ant.proxy_us / gw.proxy_us, 3)
    if direct_ant is not None:
        row["anthropic_added_p50_ms"] = round(ant.p50_ms - direct_ant.p50_ms, 3)
        row["anthropic_added_p99_ms"] = round(ant.p99_ms - direct_ant.p99_ms, 3)
    if gw is not None and direct is not None:
        row["openai_added_p50_ms"] = round(gw.p50_ms - direct.p50_ms, 3)
    return row


def format_anthropic(ratios: dict[str, object]) -> str:
    """One line per concurrency: the Anthropic route's figures beside the OpenAI route's."""
    per = ratios.get("per_concurrency")
    rows = sorted(per.items(), key=lambda kv: int(kv[0])) if isinstance(per, dict) else []
    lines = []
    for conc, row in rows:
        if not isinstance(row, dict) or "anthropic_proxy_cpu_us" not in row:
            continue
        lines.append(
            f"  c={conc}: proxy CPU {row.get('anthropic_proxy_cpu_us')} µs/req (OpenAI route "
            f"{row.get('openai_proxy_cpu_us')}, x{row.get('anthropic_vs_openai_cpu')}); added "
            f"p50 {row.get('anthropic_added_p50_ms')} ms (OpenAI route "
            f"{row.get('openai_added_p50_ms')} ms)"
        )
    return "Anthropic route vs OpenAI route, same gateway, same run:\n" + (
        "\n".join(lines) or "  n/a"
    )


def check_targets(cells: Sequence[Cell], ratios: dict[str, object]) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for each of the issue's targets that this run can judge, for
    each gateway of GATEWAYS the run measured."""
    checks: list[tuple[str, str, bool]] = []
    per = ratios.get("per_concurrency", {})
    for target, name in GATEWAYS.items():
        key = _prefix(target)

        def peak(figure: str, goal: str, minimum: float, shown: str, key: str = key,
                 name: str = name) -> None:
            value = ratios.get(f"peak_{key}_vs_{figure}")
            if isinstance(value, float):
                checks.append((f"{name} >= {goal} (peak)", shown.format(value),
                               value >= minimum))

        peak("litellm_rps", f"{MIN_VS_LITELLM:g}x LiteLLM throughput", MIN_VS_LITELLM, "{:g}x")
        peak("portkey_rps", f"{MIN_VS_PORTKEY:g}x Portkey throughput", MIN_VS_PORTKEY, "{:g}x")
        peak("minimal_rps", f"{MIN_VS_MINIMAL:.0%} of minimal Envoy throughput", MIN_VS_MINIMAL,
             "{:.0%}")
        if not isinstance(per, dict):
            continue
        # The peak can hide a concurrency where the gateway falls behind: each one counts too.
        for conc, cell in sorted(per.items(), key=lambda kv: int(kv[0])):
            share = cell.get(f"{key}_vs_minimal_rps")
            if int(conc) > 1 and isinstance(share, float):
                checks.append((
                    f"{name} >= {MIN_VS_MINIMAL:.0%} of minimal Envoy throughput at {conc} "
                    "connections", f"{share:.0%}", share >= MIN_VS_MINIMAL))
            # Requests per second flatter the gateway when the client side caps the minimal
            # route; CPU per request does not: per core of CPU is a target of its own.
            per_core = cell.get(f"{key}_vs_minimal_cpu_capacity")
            if int(conc) > 1 and isinstance(per_core, float):
                checks.append((
                    f"{name} >= {MIN_VS_MINIMAL:.0%} of minimal Envoy per core of CPU at "
                    f"{conc} connections", f"{per_core:.0%}", per_core >= MIN_VS_MINIMAL))
        added = per.get("1", {}).get(f"{key}_added_p50_ms")
        if added is not None:
            checks.append((f"{name} adds < {MAX_ADDED_P50_MS} ms p50 at concurrency 1",
                           f"{added:.3f} ms", added < MAX_ADDED_P50_MS))
    errors = sum(c.errors for c in cells)
    checks.append(("no errors in any run", str(errors), errors == 0))
    return checks


def format_main(cells: Sequence[Cell]) -> str:
    lines = [
        f"| {'target':<34} | {'conc':>4} | {'req/s':>9} | {'p50 ms':>8} | {'p99 ms':>8} "
        f"| {'errors':>6} | {'proxy CPU µs/req':>16} |",
        f"|{'-' * 36}|{'-' * 5}:|{'-' * 10}:|{'-' * 9}:|{'-' * 9}:|{'-' * 7}:|{'-' * 17}:|",
    ]
    order = list(TARGETS_TEXT)
    for cell in sorted(cells, key=lambda c: (c.concurrency, order.index(c.target))):
        cpu = f"{cell.proxy_us:.0f}" if cell.proxy_us else "–"
        lines.append(
            f"| {TARGETS_TEXT[cell.target]:<34} | {cell.concurrency:>4} | {cell.rps:>9,.0f} "
            f"| {cell.p50_ms:>8.3f} | {cell.p99_ms:>8.3f} | {cell.errors:>6} | {cpu:>16} |"
        )
    return "\n".join(lines)


def format_features(features: Sequence[Cell], ratios: dict[str, object]) -> str:
    costs = ratios.get("features", {})
    assert isinstance(costs, dict)
    lines = [
        f"| {'variant':<22} | {'req/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} | {'errors':>6} "
        f"| {'Δp50 µs':>8} | {'CPU µs/req':>10} | {'ΔCPU µs':>8} |",
        f"|{'-' * 24}|{'-' * 9}:|{'-' * 8}:|{'-' * 8}:|{'-' * 7}:|{'-' * 9}:|{'-' * 11}:|"
        f"{'-' * 9}:|",
    ]
    for cell in features:
        cost = costs.get(cell.target, {})
        lines.append(
            f"| {cell.target:<22} | {cell.rps:>8,.0f} | {cell.p50_ms:>7.3f} | {cell.p99_ms:>7.3f} "
            f"| {cell.errors:>6} | {cost.get('added_p50_us_vs_none', 0):>8.0f} "
            f"| {cell.proxy_us:>10.0f} | {cost.get('added_cpu_us_vs_none', 0):>8.0f} |"
        )
    return "\n".join(lines)


def format_per_core(ratios: dict[str, object]) -> str:
    """Each gateway's capacity per core against the minimal route's (CPU per request), which
    requests per second understate when the client side caps the minimal route."""
    per = ratios.get("per_concurrency", {})
    lines = []
    for target, name in GATEWAYS.items():
        figure = f"{_prefix(target)}_vs_minimal_cpu_capacity"
        parts = [
            f"{cell[figure]:.0%} at {conc}"
            for conc, cell in sorted(per.items(), key=lambda kv: int(kv[0]))
            if isinstance(cell, dict) and isinstance(cell.get(figure), float)
        ] if isinstance(per, dict) else []
        if parts or target == "gateway":
            lines.append(f"per core of CPU, {name} vs minimal Envoy: "
                         + (", ".join(parts) or "n/a"))
    return "\n".join(lines)


def format_checks(checks: Sequence[tuple[str, str, bool]]) -> str:
    return "\n".join(
        f"  [{'met' if ok else 'MISSED'}] {name}: {value}" for name, value, ok in checks
    )
