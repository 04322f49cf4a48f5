"""Input bounds: however many problems a root holds, output and memory stay bounded."""

from __future__ import annotations

import json
import random
from pathlib import Path

from gatewayctl.diagnostics import (
    MAX_DIAGNOSTICS,
    DiagnosticSink,
    Location,
    error,
    sort_diagnostics,
    warning,
)
from gatewayctl.validate import run_validate
from tests.cli.helpers import gatewayctl

GATEWAY = "apiVersion: gatewayctl.dev/v1alpha1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n"


def _unknown_fields(root: Path, n: int) -> None:
    lines = [f"  field{i}: {i}" for i in range(n)]
    (root / "gw.yaml").write_text(GATEWAY + "  namespace: ns\n" + "\n".join(lines) + "\n")


def test_text_output_shows_the_first_1000_then_counts_the_rest(tmp_path: Path) -> None:
    _unknown_fields(tmp_path, 5_000)
    code, text = run_validate(tmp_path, output="text", strict=False, reports=[], colour=False)
    assert code == 1
    heads = [line for line in text.splitlines() if "error[" in line]
    assert len(heads) == MAX_DIAGNOSTICS + 1
    at = f"{tmp_path}/gw.yaml"
    assert heads[0] == f'{at}:6:3: error[GW104] spec.field0: unknown field "field0"'
    assert heads[999] == f'{at}:1005:3: error[GW104] spec.field999: unknown field "field999"'
    assert heads[1000] == (
        "error[GW010] 4000 more problems not shown (4000 errors, 0 warnings): "
        "only the first 1000 are listed"
    )
    assert text.endswith("\n5000 errors, 0 warnings in 1 file\n")


def test_json_and_reports_are_capped_too(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    _unknown_fields(root, 3_000)
    cq, ju = tmp_path / "cq.json", tmp_path / "junit.xml"
    reports = [f"codequality={cq}", f"junit={ju}"]
    code, out = run_validate(root, output="json", strict=False, reports=reports, colour=False)
    assert code == 1
    data = json.loads(out)
    assert (data["errors"], data["warnings"], data["omitted"]) == (3000, 0, 2000)
    assert len(data["diagnostics"]) == 1001
    assert data["diagnostics"][-1]["code"] == "GW010"
    issues = json.loads(cq.read_text())
    assert len(issues) == 1001 and issues[-1]["check_name"] == "GW010"
    assert ju.read_text().count("<testcase") == 2  # Gateway/gw, and the count of the rest


def test_errors_are_kept_before_warnings(tmp_path: Path) -> None:
    sink = DiagnosticSink(limit=10)
    for i in range(50):
        sink.add(warning("GW211", f"w{i}", location=Location("a.yaml", i + 1, 1)))
    sink.add(error("GW203", "late error", location=Location("z.yaml", 99, 1)))
    shown = sink.result()
    assert (shown.errors, shown.warnings, shown.omitted) == (1, 50, 41)
    assert [d.summary for d in shown[:10]] == [f"w{i}" for i in range(9)] + ["late error"]
    assert shown[-1].code == "GW010" and not shown[-1].is_error  # only warnings left out


def test_the_sink_keeps_exactly_the_first_problems_in_bounded_memory() -> None:
    rng = random.Random(7)
    diags = [
        error("GW104", f"p{i}", location=Location(f"f{i % 7}.yaml", rng.randint(1, 500), 1))
        for i in range(20_000)
    ]
    sink = DiagnosticSink(limit=100)
    peak = 0
    for d in diags:
        sink.add(d)
        peak = max(peak, len(sink.items))
    shown = sink.result()
    assert peak < 200  # never more than twice the limit held at once
    assert list(shown[:100]) == sort_diagnostics(diags)[:100]
    assert shown.errors == 20_000 and shown.omitted == 19_900


def test_below_the_cap_nothing_is_omitted(tmp_path: Path) -> None:
    _unknown_fields(tmp_path, 3)
    code, out = run_validate(tmp_path, output="json", strict=False, reports=[], colour=False)
    data = json.loads(out)
    assert (data["errors"], data["omitted"], len(data["diagnostics"])) == (3, 0, 3)


def test_plan_json_on_bad_manifests_counts_every_problem(tmp_path: Path) -> None:
    _unknown_fields(tmp_path, 1_500)
    proc = gatewayctl("plan", str(tmp_path), "--live", f"dir:{tmp_path / 'out'}", "-o", "json")
    data = json.loads(proc.stdout)
    assert proc.returncode == 1
    assert (data["errors"], data["omitted"], len(data["diagnostics"])) == (1500, 500, 1001)


def test_up_on_bad_manifests_counts_every_error(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    _unknown_fields(root, 1_500)
    proc = gatewayctl("up", str(root), env={"GATEWAYCTL_STATE_DIR": str(tmp_path / "state")})
    assert proc.returncode == 1
    assert f"{root} has 1500 manifest error(s):" in proc.stderr
    assert "... and 1495 more" in proc.stderr
