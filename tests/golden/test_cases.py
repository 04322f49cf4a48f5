"""Per-feature golden cases: one small manifest root per policy feature, provider type and
rollout state, in the manner of Envoy Gateway's translator testdata.

`cases/<name>.yaml` is the input (its first line says what it shows). Two stages are pinned:
manifests -> IR (`cases/<name>/ir.json`), and IR -> Envoy, rendered from that `ir.json` read
back (`listeners.yaml`, `routes.yaml`, `clusters.yaml`, `prometheusrule.yaml` where the
gateway has alerts, and `ratelimit.yaml`, the rate limit service's configuration, with global
limits). The Lua filters' code is the same in every case and shown by its digest;
`tests/golden/examples/` shows it in full. `pytest --update-golden` rewrites the outputs and
deletes those of removed cases.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gatewayctl.ir import from_json, to_json
from gatewayctl.pipeline import compile_root
from gatewayctl.render.envoy import EnvoyOptions, render_envoy
from gatewayctl.render.k8s.alerts import render_prometheus_rule
from gatewayctl.render.k8s.cachestore import render_cache_store_objects
from gatewayctl.render.k8s.network import render_cache_store_network_policy
from gatewayctl.render.ratelimit_config import dump_ratelimit_config, render_ratelimit_config
from tests.goldens import (
    check_golden,
    check_golden_folder,
    check_no_stale,
    envoy_goldens,
    golden_yaml,
)

CASES = Path(__file__).parent / "cases"
CASE_FILES = sorted(CASES.glob("*.yaml"))


def test_every_feature_has_a_case() -> None:
    names = {p.stem for p in CASE_FILES}
    for provider in ("openai", "azure-openai", "anthropic", "openai-compatible", "bedrock",
                     "gemini"):
        assert f"provider-{provider}" in names
    for state in ("not-started", "progressing", "paused", "aborted", "completed"):
        assert f"rollout-{state}" in names
    for feature in ("api-keys", "allow-consumers", "allow-teams", "rate-limit-consumer",
                    "rate-limit-route", "token-limit", "max-request-bytes", "deny-block",
                    "deny-log", "redact", "defaults-merged", "output-guardrails"):
        assert f"policy-{feature}" in names


def test_no_outputs_of_a_removed_case(update_golden: bool) -> None:
    names = {p.stem for p in CASE_FILES}
    check_no_stale(CASES, [p for p in CASES.iterdir() if p.is_dir() and p.name not in names],
                   update_golden)


@pytest.mark.parametrize("case", CASE_FILES, ids=lambda p: p.stem)
def test_case(case: Path, tmp_path: Path, update_golden: bool) -> None:
    assert case.read_text(encoding="utf-8").startswith("# "), "say what the case shows"
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(case, root / "manifests.yaml")
    out = CASES / case.stem

    check_golden(out / "ir.json", to_json(compile_root(root).ir), update_golden)

    ir = from_json((out / "ir.json").read_text(encoding="utf-8"))
    files = render_envoy(ir, EnvoyOptions()).files()
    golden = envoy_goldens(files["lds.json"], files["cds.json"], files["rds.json"],
                           full_code=False)
    rule = render_prometheus_rule(ir)
    if rule is not None:
        golden["prometheusrule.yaml"] = golden_yaml(rule)
    service = render_ratelimit_config(ir)
    if service is not None:
        golden["ratelimit.yaml"] = dump_ratelimit_config(service)
    store = render_cache_store_objects(ir)
    policy = render_cache_store_network_policy(ir)
    if store:
        golden["cachestore.yaml"] = golden_yaml([*store, *([policy] if policy else [])])
    check_golden_folder(out, {"ir.json": to_json(ir), **golden}, update_golden)
