"""Golden files per compiler stage for every example: manifests -> IR, IR -> Envoy, IR -> K8s.

`pytest --update-golden` rewrites tests/golden/examples/<example>/ from the current output and
deletes files (and examples) no longer produced. The files are kept in the reviewable form of
`tests/goldens.py`: Envoy config as YAML split per resource type, repeats as references.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gatewayctl.pipeline import compile_root
from gatewayctl.render.bundle import render_files
from tests.conftest import REPO
from tests.goldens import GOLDEN_DIRS, MAX_LINE, bundle_goldens, check_golden_folder, check_no_stale

GOLDEN = Path(__file__).parent / "examples"
EXAMPLES = sorted(p.name for p in (REPO / "examples").iterdir() if p.is_dir())


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_renders_as_golden(example: str, update_golden: bool) -> None:
    ir = compile_root(REPO / "examples" / example).ir
    check_golden_folder(GOLDEN / example, bundle_goldens(render_files(ir)), update_golden)


def test_no_golden_of_a_removed_example(update_golden: bool) -> None:
    check_no_stale(GOLDEN, [p for p in GOLDEN.iterdir() if p.name not in EXAMPLES],
                   update_golden)


def test_golden_lines_are_reviewable() -> None:
    """No golden line is longer than MAX_LINE characters: a diff shows what changed."""
    long = [f"{path.relative_to(REPO)}:{n}: {len(line)} characters"
            for folder in GOLDEN_DIRS for path in sorted(folder.rglob("*")) if path.is_file()
            for n, line in enumerate(path.read_bytes().decode("utf-8", "replace").splitlines(), 1)
            if len(line) > MAX_LINE]
    assert not long, "\n".join(long)
