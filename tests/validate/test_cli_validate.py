"""`gatewayctl validate` as users run it: exit codes, JSON, reports, colour."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gatewayctl.validate import run_validate
from tests.conftest import REPO

CASES = REPO / "tests" / "validate" / "cases"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gatewayctl", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def test_valid_root_exits_0() -> None:
    proc = run("validate", "examples/multi-team")
    assert proc.returncode == 0
    assert proc.stdout == "ok: 23 manifests in 9 files are valid\n"


def test_warnings_fail_only_with_strict() -> None:
    case = str(CASES / "fallback-is-backend-strict.yaml")
    assert run("validate", case).returncode == 0
    assert run("validate", case, "--strict").returncode == 1


def test_json_output() -> None:
    proc = run("validate", str(CASES / "dangling-model.yaml"), "-o", "json")
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert data["valid"] is False and data["errors"] == 1 and data["warnings"] == 0
    (diag,) = data["diagnostics"]
    assert diag == {
        "severity": "error",
        "code": "GW203",
        "message": 'spec.backends[0].model: Model "gpt-4o-2024-08-07" does not exist',
        "summary": 'Model "gpt-4o-2024-08-07" does not exist',
        "field": "spec.backends[0].model",
        "hint": 'did you mean "gpt-4o-2024-08-06"?',
        "resource": "Route/chat",
        "path": "dangling-model.yaml",
        "line": 48,
        "column": 15,
    }


def test_codequality_and_junit_reports(tmp_path: Path) -> None:
    cq, ju = tmp_path / "cq.json", tmp_path / "junit.xml"
    case = CASES / "weights-not-100.yaml"
    proc = run("validate", str(case), "--report", f"codequality={cq}", "--report", f"junit={ju}")
    assert proc.returncode == 1
    (issue,) = json.loads(cq.read_text())
    assert issue["check_name"] == "GW204"
    assert issue["severity"] == "major"
    assert issue["location"] == {"path": str(case.parent / case.name), "lines": {"begin": 48}}
    assert issue["description"].startswith("GW204: spec.backends: backend weights sum to 95")
    assert len(issue["fingerprint"]) == 32
    suite = ET.parse(ju).getroot()
    assert suite.tag == "testsuites" and suite.get("failures") == "1"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert "Route/chat" in cases and cases["Route/chat"].find("failure") is not None
    assert cases["Gateway/ai-gateway"].find("failure") is None


def test_the_text_names_a_file_as_the_reports_do_under_the_root_given(tmp_path: Path) -> None:
    """`validate manifests/prod` prints `manifests/prod/routes.yaml:…`: a path that opens from
    where the command ran (terminals and editors link it), the Code Quality report's path."""
    root = tmp_path / "manifests" / "prod"
    root.mkdir(parents=True)
    (root / "routes.yaml").write_text((CASES / "weights-not-100.yaml").read_text())
    cq, ju = tmp_path / "cq.json", tmp_path / "junit.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "gatewayctl", "validate", "manifests/prod",
         "--report", f"codequality={cq}", "--report", f"junit={ju}"],
        capture_output=True, text=True, cwd=tmp_path, check=False)
    assert proc.returncode == 1
    head = proc.stdout.splitlines()[0]
    assert head.startswith("manifests/prod/routes.yaml:48:")
    (issue,) = json.loads(cq.read_text())
    assert issue["location"]["path"] == "manifests/prod/routes.yaml"
    assert (tmp_path / issue["location"]["path"]).is_file()
    failure = next(c.find("failure") for c in ET.parse(ju).getroot().iter("testcase")
                   if c.find("failure") is not None)
    assert failure.get("message", "").startswith("manifests/prod/routes.yaml:48:")


def test_bad_report_option_is_a_usage_error() -> None:
    proc = run("validate", "examples/quickstart", "--report", "sarif=x.json")
    assert proc.returncode == 1
    assert proc.stderr == (
        'error: invalid --report "sarif=x.json"\n'
        "  hint: use --report codequality=FILE or --report junit=FILE\n"
    )


def test_missing_root() -> None:
    proc = run("validate", "does/not/exist")
    assert proc.returncode == 1
    assert "error: does/not/exist does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_no_colour_when_piped_or_no_color() -> None:
    proc = run("validate", str(CASES / "dangling-model.yaml"), env={"NO_COLOR": "1"})
    assert "\033[" not in proc.stdout


def test_render_refuses_invalid_manifests_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run("render", str(CASES / "dangling-model.yaml"), "--out", str(out))
    assert proc.returncode == 1
    assert "error[GW203]" in proc.stderr and "nothing was rendered" in proc.stderr
    assert not out.exists()


def test_a_folder_above_several_roots_is_named_as_such() -> None:
    """`gatewayctl validate` (ROOT `.`) at the top of a repository, or on `examples/`, reads
    every root below as one: the hint names the folders that hold a Gateway."""
    proc = run("validate", "examples")
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert ("quickstart/gateway.yaml:7:7: error[GW207] kind: more than one Gateway in this "
            "manifest root") in out
    assert ("  hint: a root describes exactly one gateway; the first is at "
            "multi-team/gateway.yaml:7:7; the 2 Gateways here lie in 2 folders: give the folder "
            "of one as ROOT (multi-team, quickstart)\n") in out


def test_several_extra_gateways_say_what_to_do_once() -> None:
    """Each extra Gateway is an error at its `kind`; the hint is not repeated for each."""
    proc = run("validate", str(CASES / "three-gateways.yaml"))
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert out.count("error[GW207] kind: more than one Gateway in this manifest root") == 2
    assert out.count("hint: a root describes exactly one gateway") == 1


def test_an_empty_root_is_one_error_and_a_file_root_hints_at_its_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    code, text = run_validate(Path("empty"), output="text", strict=False, reports=[],
                              colour=False)
    assert code == 1
    assert text == ("error[GW008] no manifests (*.yaml, *.yml) under empty\n"
                    "  hint: point gatewayctl at the folder holding your manifests\n"
                    "1 error, 0 warnings in 0 files\n")
    (tmp_path / "gateway").mkdir()
    (tmp_path / "gateway" / "models.yaml").write_text(
        "apiVersion: gatewayctl.dev/v1alpha1\nkind: Model\nmetadata: {name: m}\n"
        "spec: {provider: openai}\n", encoding="utf-8")
    code, text = run_validate(Path("gateway/models.yaml"), output="text", strict=False,
                              reports=[], colour=False)
    assert code == 1
    assert text.startswith(
        "error[GW207] no Gateway in gateway/models.yaml\n"
        "  hint: add one manifest with kind: Gateway (namespace, listener, replicas); a root "
        "given as a file is read alone: to check a folder of manifests, give the folder "
        "(gateway)\n")
