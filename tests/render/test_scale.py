"""Scale: what one route costs in the rendered config does not depend on how many there are.

Every composite cluster `r_<route>_<model>` used to carry its own copy of the upstream Lua
filter, and every route its own rate-limit and RBAC filter configs, so a 1,000-route root
rendered to ~13 MB that Envoy took ~8 s to validate. The upstream chain now lives once in the
router, limits and guardrails once in the listener (docs/data-plane.md, "Scale").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.corpus import generate
from gatewayctl.compile import compile_gateway
from gatewayctl.ir import GatewayIR
from gatewayctl.manifests.manifest_set import load_manifest_set
from gatewayctl.render.envoy import EnvoyBundle, EnvoyOptions, render_envoy
from gatewayctl.render.envoy.routes import route_entries
from tests.render.conftest import needs_envoy
from tests.render.harness import validate


def _corpus_ir(n: int, tmp: Path) -> GatewayIR:
    manifests, diagnostics = load_manifest_set(generate(n, tmp / f"root-{n}"))
    assert not [d for d in diagnostics if d.severity == "error"], diagnostics
    return compile_gateway(manifests)


def _size(value: Any) -> int:
    return len(json.dumps(value, sort_keys=True, separators=(",", ":")).encode())


def _clusters(bundle: EnvoyBundle) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in bundle.cds["resources"]}


def _routes(bundle: EnvoyBundle) -> dict[str, dict[str, Any]]:
    table = bundle.rds["resources"][0]
    return {r["name"]: r for r in route_entries(table["virtual_hosts"][0])}


def test_per_route_config_does_not_grow_with_the_number_of_routes(tmp_path: Path) -> None:
    small = render_envoy(_corpus_ir(10, tmp_path))
    large = render_envoy(_corpus_ir(200, tmp_path))
    # The same route renders to the same composite clusters and route entry, byte for byte.
    for name in ("r_route-3_model-3_a", "r_route-3_model-3_b", "r_route-0_model-0_a"):
        assert _clusters(small)[name] == _clusters(large)[name]
    assert _routes(small)["route-3"] == _routes(large)["route-3"]
    # Members differ only in their provider's name (the corpus has more providers at 200).
    member = "m_model-3_a"
    assert abs(_size(_clusters(small)[member]) - _size(_clusters(large)[member])) <= 4
    # A composite cluster is a name, a chain and a circuit breaker: no filter config.
    for cluster in _clusters(large).values():
        if cluster["name"].startswith("r_"):
            assert "typed_extension_protocol_options" not in cluster
            assert _size(cluster) < 600, cluster

    # What each additional route costs, LDS + RDS + CDS together (2 backends, 2 models).
    def total(b: EnvoyBundle) -> int:
        return _size(b.lds) + _size(b.rds) + _size(b.cds)

    per_route = (total(large) - total(small)) / 190
    # ~4.5k since GET /v1/models/{model}: each public model has its direct response (~560 bytes)
    assert per_route < 4608, per_route


@needs_envoy
@pytest.mark.envoy
@pytest.mark.slow
def test_thousand_route_corpus_renders_small_and_validates(tmp_path: Path) -> None:
    ir = _corpus_ir(1000, tmp_path)
    assert len(ir.routes) == 1000
    bundle = render_envoy(ir, EnvoyOptions(config_dir=str(tmp_path / "config")))
    files = bundle.files()
    # the listener and its route table (LDS + RDS), and the clusters
    lds = len(files["lds.json"].encode()) + len(files["rds.json"].encode())
    cds = len(files["cds.json"].encode())
    # Was ~3.9 MB + ~9.6 MB. The rest is mostly the 2,000 member clusters (TLS per model).
    # LDS + RDS ~2.06 MB since GET /v1/models/{model} (~560 bytes per public model).
    assert lds + cds < 4_700_000, (lds, cds)
    assert lds < 2_200_000, lds
    (tmp_path / "validate.yaml").write_text(files["validate.yaml"])
    result = validate(tmp_path / "validate.yaml")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
