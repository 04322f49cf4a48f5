"""`dataPlaneFilters: auto`, the default: where gatewayctl does not run Envoy itself (Kubernetes,
Helm, `render`, `--live kubernetes`) it is the Lua filters, byte for byte; for the local
gateway it stays `auto` until the module is prepared for the Envoy that runs it
(tests/local/test_up_module.py). One function decides (ir.resolve_data_plane_filters)."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gatewayctl.ir import resolve_data_plane_filters
from gatewayctl.orchestrate import load_desired_ir
from gatewayctl.pipeline import compile_root
from gatewayctl.render.bundle import FORMATS, render_files
from gatewayctl.render.k8s import Provenance
from tests.conftest import REPO

IMAGE_LINE = re.compile(r"(?m)^(  image: .*)$")


@pytest.mark.parametrize(("requested", "local", "ready", "resolved"), [
    ("auto", False, None, "lua"),
    ("auto", False, True, "lua"),  # an image gatewayctl does not build: never guessed
    ("auto", True, None, "auto"),  # decided when the module is prepared
    ("auto", True, True, "module"),
    ("auto", True, False, "lua"),
    ("lua", True, True, "lua"),
    ("lua", False, None, "lua"),
    ("module", False, None, "module"),
    ("module", True, False, "module"),  # the explicit module's fallback is prepare_module's
])
def test_resolution(requested: str, local: bool, ready: bool | None, resolved: str) -> None:
    assert resolve_data_plane_filters(requested, local=local,  # type: ignore[arg-type]
                                      module_ready=ready) == resolved


def _copy(example: str, dest: Path, filters: str | None) -> Path:
    shutil.copytree(REPO / "examples" / example, dest)
    if filters is not None:
        gateway = dest / "gateway.yaml"
        text, count = IMAGE_LINE.subn(rf"\1\n  dataPlaneFilters: {filters}",
                                      gateway.read_text(encoding="utf-8"), count=1)
        assert count == 1
        gateway.write_text(text, encoding="utf-8")
    return dest


@pytest.mark.parametrize("example", ["quickstart", "multi-team"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_the_default_renders_exactly_the_explicit_lua(tmp_path: Path, example: str,
                                                       fmt: str) -> None:
    default = compile_root(_copy(example, tmp_path / "default", None)).ir
    lua = compile_root(_copy(example, tmp_path / "lua", "lua")).ir
    module = dataclasses.replace(lua, data_plane_filters="module")
    assert default.data_plane_filters == "lua"
    provenance = Provenance()
    files = render_files(default, provenance=provenance, fmt=fmt)
    assert files == render_files(lua, provenance=provenance, fmt=fmt)
    # the comparison sees the filters: the module's render differs
    assert files != render_files(module, provenance=provenance, fmt=fmt)


def test_only_the_local_target_keeps_auto(tmp_path: Path) -> None:
    root = _copy("quickstart", tmp_path / "root", None)
    for live in ("kubernetes", "dir:/tmp/out", "git:main"):
        assert load_desired_ir(root, live=live)[0].data_plane_filters == "lua"
    assert load_desired_ir(root, live="local")[0].data_plane_filters == "auto"
    assert compile_root(root, local=True).ir.data_plane_filters == "auto"
    explicit = _copy("quickstart", tmp_path / "lua", "lua")
    assert load_desired_ir(explicit, live="local")[0].data_plane_filters == "lua"


def _check_schema(tmp_path: Path, filters: str) -> subprocess.CompletedProcess[str]:
    doc = tmp_path / f"gateway-{filters}.yaml"
    doc.write_text("apiVersion: gatewayctl.dev/v1alpha1\nkind: Gateway\n"
                   "metadata: {name: gw}\n"
                   f"spec: {{namespace: ai, dataPlaneFilters: {filters}}}\n", encoding="utf-8")
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--schemafile",
                           str(REPO / "schemas" / "gateway.json"), str(doc)],
                          capture_output=True, text=True, timeout=120)


def test_the_schema_accepts_auto(tmp_path: Path) -> None:
    for filters in ("auto", "lua", "module"):
        done = _check_schema(tmp_path, filters)
        assert done.returncode == 0, done.stdout + done.stderr
    refused = _check_schema(tmp_path, "fast")
    assert refused.returncode == 1 and "dataPlaneFilters" in refused.stdout + refused.stderr
