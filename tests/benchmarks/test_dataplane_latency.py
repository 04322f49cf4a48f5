"""benchmarks.dataplane_latency: each variant removes what it names from the compiled gateway
(and nothing else), and the benchmark runs end to end on a real Envoy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from benchmarks import dataplane_latency as latency
from benchmarks.dataplane_gateway import render_gateway
from benchmarks.dataplane_instructions import _hcm

needs_tools = pytest.mark.skipif(
    shutil.which("wrk") is None or (shutil.which("cc") is None and shutil.which("gcc") is None),
    reason="needs wrk and a C compiler")


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("latency")
    render_gateway(work, "http://127.0.0.1:9", 10000, 10001, work / "access.log",
                   filters="module")
    return work / "config"


def _parts(lds: dict[str, Any]) -> dict[str, object]:
    hcm = _hcm(lds)
    route = latency._route(lds)
    model = next(h["header"]["value"] for h in route["response_headers_to_add"]
                 if h["header"]["key"] == "x-gateway-model")
    return {
        "-access-log": bool(hcm.get("access_log")),
        "-rbac": any("rbac" in f["typed_config"]["@type"] for f in hcm["http_filters"]),
        "-limits": any("local_ratelimit" in f["typed_config"]["@type"]
                       or f["name"] == "gatewayctl.limits" for f in hcm["http_filters"]),
        "-health-check": any("health_check" in f["typed_config"]["@type"]
                             for f in hcm["http_filters"]),
        "-lua": any(f["name"] == "envoy.filters.http.lua" for f in hcm["http_filters"]),
        "-early-mutation": "early_header_mutation_extensions" in hcm,
        "literal-model": model.startswith("%UPSTREAM_METADATA"),
        "member-cluster": route["route"]["cluster"].startswith("r_"),
    }


def test_the_gateway_has_every_part_the_variants_remove(config_dir: Path) -> None:
    assert all(_parts(latency.variant_lds(config_dir, [])).values())


@pytest.mark.parametrize("name", list(latency.PARTS))
def test_each_variant_removes_its_part_and_only_it(config_dir: Path, name: str) -> None:
    parts = _parts(latency.variant_lds(config_dir, latency.VARIANTS[name]))
    assert [part for part, present in parts.items() if not present] == [name]


def test_all_removes_every_part(config_dir: Path) -> None:
    assert not any(_parts(latency.variant_lds(config_dir, latency.VARIANTS["-all"])).values())


def test_envoy_json_log_swaps_the_compiled_line_for_envoys(config_dir: Path) -> None:
    logs = _hcm(latency.variant_lds(config_dir, latency.VARIANTS["envoy-json-log"]))["access_log"]
    gateway = _hcm(latency.variant_lds(config_dir, []))["access_log"]
    assert gateway[0]["name"] == "envoy.access_loggers.dynamic_modules"
    assert logs[0]["name"] == "envoy.access_loggers.file"
    assert logs[1:] == gateway[1:]

    # the body filter then writes every `gw` value for Envoy's logger (no `log_only`)
    def body_config(lds: dict[str, Any]) -> dict[str, Any]:
        flt = next(f for f in _hcm(lds)["http_filters"]
                   if f["typed_config"].get("filter_name") == "body")
        return dict(json.loads(flt["typed_config"]["filter_config"]["value"]))

    swapped = body_config(latency.variant_lds(config_dir, latency.VARIANTS["envoy-json-log"]))
    kept = body_config(latency.variant_lds(config_dir, []))
    assert "log_only" in kept and "log_only" not in swapped
    assert swapped == {k: v for k, v in kept.items() if k != "log_only"}


def test_an_unknown_variant_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        latency.main(["--only=-rbac,no-such-variant"])
    assert exited.value.code == 2
    assert "--only: unknown variant no-such-variant; known variants: gateway, -access-log" \
        in capsys.readouterr().err


@needs_tools
def test_the_benchmark_runs_on_real_envoys(tmp_path: Path) -> None:
    out = tmp_path / "latency.json"
    assert latency.main(["--only", "gateway,-all", "--repeats", "1", "--duration", "1",
                         "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert sorted(results["median_us"]) == ["-all", "gateway", "minimal"]
    assert all(value > 0 for value in results["median_us"].values())
