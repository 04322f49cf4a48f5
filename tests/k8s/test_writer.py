"""write_manifests / dump_object: one deterministic YAML file per object."""

from __future__ import annotations

from pathlib import Path

import yaml

from gatewayctl.ir import GatewayIR
from gatewayctl.render.k8s import dump_all, render_kubernetes, write_manifests
from gatewayctl.render.k8s.writer import dump_object
from tests.k8s.bundles import envoy_bundle


def test_writes_one_file_per_object_that_reads_back_equal(
    multi_team: GatewayIR, tmp_path: Path
) -> None:
    objects = render_kubernetes(multi_team, envoy_bundle(multi_team))
    paths = write_manifests(objects, tmp_path / "k8s")
    assert [p.name for p in paths] == [
        "serviceaccount-ai-gateway.yaml",
        "configmap-ai-gateway-bootstrap.yaml",
        "configmap-ai-gateway-config.yaml",
        "configmap-ai-gateway-ir.yaml",
        "service-ai-gateway.yaml",
        "deployment-ai-gateway.yaml",
        "poddisruptionbudget-ai-gateway.yaml",
        "horizontalpodautoscaler-ai-gateway.yaml",
        "networkpolicy-ai-gateway.yaml",
        "podmonitor-ai-gateway.yaml",
        "prometheusrule-ai-gateway.yaml",
    ]
    for obj, path in zip(objects, paths, strict=True):
        assert yaml.safe_load(path.read_text(encoding="utf-8")) == obj
    assert list(yaml.safe_load_all(dump_all(objects))) == objects


def test_output_is_byte_identical_across_runs(multi_team: GatewayIR, tmp_path: Path) -> None:
    for out in ("a", "b"):
        write_manifests(render_kubernetes(multi_team, envoy_bundle(multi_team)), tmp_path / out)
    a = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
    b = {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}
    assert a == b


def test_the_bootstrap_is_a_readable_literal_block(multi_team: GatewayIR) -> None:
    objects = render_kubernetes(multi_team, envoy_bundle(multi_team))
    text = dump_object(objects[1])
    assert "  bootstrap.yaml: |\n    admin:\n" in text


def test_stale_rendered_files_are_removed_and_others_kept(
    multi_team: GatewayIR, tmp_path: Path
) -> None:
    objects = render_kubernetes(multi_team, envoy_bundle(multi_team))
    write_manifests(objects, tmp_path)
    (tmp_path / "notes.yaml").write_text("kind: Something\n")
    (tmp_path / "lds.json").write_text("{}\n")
    without_rule = [o for o in objects if o["kind"] != "PrometheusRule"]
    write_manifests(without_rule, tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "prometheusrule-ai-gateway.yaml" not in names
    assert "notes.yaml" in names and "lds.json" in names
    assert len(names) == len(without_rule) + 2
