"""Golden files per compiler stage for every example: manifests -> IR, IR -> Envoy, IR -> K8s.

`pytest --update-golden` rewrites tests/golden/<example>/ from the current output and deletes
files no longer produced. gzip payloads in ConfigMaps are stored as the hash of their content,
because gzip bytes differ between zlib builds for the same content.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from gatewayctl.pipeline import compile_root
from gatewayctl.render.bundle import render_files
from tests.conftest import REPO, check_golden

GOLDEN = Path(__file__).parent
EXAMPLES = sorted(p.name for p in (REPO / "examples").iterdir() if p.is_dir())


def stable_text(rel: str, text: str) -> str:
    if not rel.startswith("kubernetes/") or "binaryData" not in text:
        return text
    obj = yaml.safe_load(text)
    for key, value in obj.get("binaryData", {}).items():
        if key.endswith(".gz"):
            content = gzip.decompress(base64.b64decode(value))
            obj["binaryData"][key] = "gunzip:sha256:" + hashlib.sha256(content).hexdigest()
    return yaml.safe_dump(obj, sort_keys=True, width=100)


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_renders_as_golden(example: str, update_golden: bool) -> None:
    ir = compile_root(REPO / "examples" / example).ir
    files = {rel: stable_text(rel, text) for rel, text in render_files(ir).items()}
    target = GOLDEN / example
    if update_golden:
        shutil.rmtree(target, ignore_errors=True)
    for rel, text in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        check_golden(path, text, update_golden)
    produced = {target / rel for rel in files}
    on_disk = {p for p in target.rglob("*") if p.is_file()}
    assert on_disk == produced, f"stale golden files: {sorted(on_disk - produced)}"
