"""The validator never crashes, is deterministic, and fails fast on hostile files."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatewayctl.manifests.yamlsource import FAST_LOADER, PURE_LOADER, parse_text
from gatewayctl.validate import run_validate
from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "multi-team"
EXAMPLE_TEXT = {p.name: p.read_text() for p in sorted(EXAMPLE.glob("*.yaml"))}
FILES = sorted(EXAMPLE_TEXT)

# Fragments that are likely to hit interesting paths: YAML structure, types, references.
FRAGMENTS = [
    "",
    " ",
    "\n",
    ":",
    "- ",
    "{",
    "}",
    "[",
    "]",
    "'",
    '"',
    "&a ",
    "*a",
    "!!int ",
    "\t",
    "---\n",
    "100",
    "-1",
    "0.5",
    "true",
    "null",
    "1e9",
    "x" * 70,
    "Chat",
    "gpt-4o",
    "10m",
    "sk-",
    "%",
    "{{ x }}",
    "{% if %}",
    "(?<=a)",
    "weight",
    "kind",
    "spec",
    "\ufeff",
    "\r\n",
]


@st.composite
def mutation(draw: st.DrawFn) -> tuple[str, str]:
    name = draw(st.sampled_from(FILES))
    text = EXAMPLE_TEXT[name]
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        pos = draw(st.integers(min_value=0, max_value=len(text)))
        cut = draw(st.integers(min_value=0, max_value=12))
        frag = draw(st.sampled_from(FRAGMENTS) | st.text(max_size=6))
        text = text[:pos] + frag + text[pos + cut :]
    return name, text


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(mutation())
def test_mutations_never_crash_and_are_deterministic(tmp_path_factory, change):  # type: ignore[no-untyped-def]
    name, text = change
    root = tmp_path_factory.mktemp("mut")
    for other, body in EXAMPLE_TEXT.items():
        (root / other).write_text(body, encoding="utf-8")
    (root / name).write_text(text, encoding="utf-8")
    first = run_validate(root, output="json", strict=False, reports=[], colour=False)
    second = run_validate(root, output="json", strict=False, reports=[], colour=False)
    assert first == second
    assert first[0] in (0, 1)
    shutil.rmtree(root)


def _timed(root: Path) -> tuple[float, int, str]:
    start = time.perf_counter()
    code, text = run_validate(root, output="text", strict=False, reports=[], colour=False)
    return time.perf_counter() - start, code, text


def test_alias_bomb_fails_fast(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")
    elapsed, code, text = _timed(tmp_path)
    assert code == 1
    assert (
        "bomb.yaml:6:10:" in text
        and "error[GW003] aliases expand to more than 100000 values" in text
    )
    assert elapsed < 2.0


def test_huge_file_fails_fast(tmp_path: Path) -> None:
    with (tmp_path / "huge.yaml").open("w") as f:
        line = "# " + "x" * 1022 + "\n"
        for _ in range(50 * 1024):
            f.write(line)
    elapsed, code, text = _timed(tmp_path)
    assert code == 1
    assert "huge.yaml:1:1: error[GW004] file is 50.0 MiB; manifests are limited to 8 MiB" in text
    assert elapsed < 2.0


def test_nesting_bomb_fails_fast(tmp_path: Path) -> None:
    # 20 levels of 9-way nesting would be 9**20 values if expanded; deeper nesting crashes
    # naive recursive loaders. Both must end in one clear error.
    (tmp_path / "deep.yaml").write_text("spec: " + "[" * 100_000 + "]" * 100_000 + "\n")
    nested = "x: &l0 [1,2,3,4,5,6,7,8,9]\n" + "".join(
        f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]\n" for i in range(1, 21)
    )
    (tmp_path / "nested.yaml").write_text(nested)
    elapsed, code, text = _timed(tmp_path)
    assert code == 1
    assert "deep.yaml:1:54: error[GW005] nesting deeper than 48 levels" in text
    assert "nested.yaml:" in text and "error[GW003]" in text
    assert elapsed < 2.0


def test_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    for name, body in EXAMPLE_TEXT.items():
        data = body.replace("\n", "\r\n").encode("utf-8")
        (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + data)
    code, text = run_validate(tmp_path, output="text", strict=False, reports=[], colour=False)
    assert code == 0, text


def test_help_imports_no_heavy_clients() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gatewayctl", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    for heavy in ("kubernetes", "gitlab", "deepdiff", "pydantic", "jinja2", "re2", "ruamel"):
        assert heavy not in imported, f"--help imported {heavy}"
    assert "Usage:" in proc.stdout


@pytest.mark.parametrize("loader", [FAST_LOADER, PURE_LOADER], ids=["libyaml", "pure-python"])
def test_nesting_limit_is_gatewayctls_own_whatever_the_parser(loader: object) -> None:
    # libyaml >= 0.2.6 has a depth limit of its own and reads ahead on a line, so it would stop
    # first, at its own place and with its own message; the limit and its place are ours.
    first = "apiVersion: gatewayctl.dev/v1alpha1\nkind: Gateway\n"
    for depth in (47, 2_000, 100_000):
        text = f"{first}---\nspec:\n  x: " + "[" * depth + "]" * depth + "\n"
        docs, diags = parse_text("deep.yaml", text, loader=loader)
        assert [d.format() for d in diags] == [
            "deep.yaml:5:52: error[GW005] nesting deeper than 48 levels\n"
            "  hint: manifests are shallow; this looks like generated or hostile input"
        ]
        assert [d.data for d in docs] == [
            {"apiVersion": "gatewayctl.dev/v1alpha1", "kind": "Gateway"}
        ]
    text = "spec:\n  x: " + "[" * 46 + "]" * 46 + "\n"
    docs, diags = parse_text("ok.yaml", text, loader=loader)
    assert diags == [] and docs[0].values[("spec", "x")] == (2, 6)
