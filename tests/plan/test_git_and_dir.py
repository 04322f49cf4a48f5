"""`plan --live git:REF` in a Git checkout with no cluster, and the `dir:PATH` target."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.plan.conftest import FIXTURE_ROOT, Cli, set_rollout_step

NO_CLUSTER = {"KUBECONFIG": "/nonexistent/kubeconfig", "KUBERNETES_SERVICE_HOST": ""}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo, capture_output=True, text=True, check=True, timeout=30)
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A checkout with the manifests in `gateway/`: commit 1 at step 1, commit 2 at step 2."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("manifests\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "empty")
    shutil.copytree(FIXTURE_ROOT, repo / "gateway")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "gateway at step 1")
    set_rollout_step(repo / "gateway", 2)
    git(repo, "commit", "-q", "-am", "chat canary to step 2")
    return repo


def test_plan_against_the_previous_commit_needs_no_cluster(cli: Cli, repo: Path) -> None:
    result = cli("plan", str(repo / "gateway"), "--live", "git:HEAD~1", "-o", "json",
                 "--detailed-exitcode", env=NO_CLUSTER)

    assert result.exit_code == 2, result.output
    plan = json.loads(result.stdout)
    pending = [(c["layer"], c["kind"], c["name"]) for c in plan["changes"]
               if c["action"] != "no-op"]
    assert pending == [("manifest", "Route", "chat"),
                       ("resource", "ConfigMap", "ai-gateway/ai-gateway-config"),
                       ("resource", "ConfigMap", "ai-gateway/ai-gateway-ir")]
    assert plan["target"]["spec"] == "git:HEAD~1"


def test_plan_against_head_of_an_unchanged_checkout_has_no_changes(
    cli: Cli, repo: Path
) -> None:
    result = cli("plan", str(repo / "gateway"), "--live", "git:HEAD", "--detailed-exitcode",
                 env=NO_CLUSTER)

    assert result.exit_code == 0, result.output
    assert "No changes." in result.stdout


def test_plan_against_a_ref_without_the_root_creates_everything(
    cli: Cli, repo: Path
) -> None:
    result = cli("plan", str(repo / "gateway"), "--live", "git:HEAD~2", "-o", "json",
                 env=NO_CLUSTER)

    assert result.exit_code == 0, result.output
    actions = {c["action"] for c in json.loads(result.stdout)["changes"]}
    assert actions == {"create"}


def test_unknown_ref_is_one_clear_message(cli: Cli, repo: Path) -> None:
    result = cli("plan", str(repo / "gateway"), "--live", "git:no-such-branch", env=NO_CLUSTER)

    assert result.exit_code == 1
    assert result.stderr.startswith('error: resolve "no-such-branch": ')
    assert "hint:" in result.stderr


def test_git_source_cannot_be_applied_to(cli: Cli, repo: Path) -> None:
    result = cli("apply", str(repo / "gateway"), "--live", "git:HEAD~1", "--auto-approve",
                 env=NO_CLUSTER)

    assert result.exit_code == 1
    assert "git:HEAD~1 is read-only" in result.stderr


def test_apply_to_a_dir_writes_the_bundle_and_plans_clean_after(
    cli: Cli, root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bundle"
    first = cli("apply", str(root), "--live", f"dir:{out}", "--auto-approve")
    assert first.exit_code == 0, first.output
    assert (out / "ir.json").is_file() and (out / "envoy" / "lds.json").is_file()
    assert sorted(p.name for p in (out / "kubernetes").iterdir())[:2] == [
        "configmap-ai-gateway-bootstrap.yaml", "configmap-ai-gateway-config.yaml"]
    assert not list(tmp_path.glob(".bundle.*"))  # no temporary folder left behind

    again = cli("plan", str(root), "--live", f"dir:{out}", "--detailed-exitcode")
    assert again.exit_code == 0, again.output

    set_rollout_step(root, 3)
    saved = tmp_path / "plan.json"
    assert cli("plan", str(root), "--live", f"dir:{out}", "--out", str(saved)).exit_code == 0
    applied = cli("apply", str(saved))
    assert applied.exit_code == 0, applied.output
    ir = json.loads((out / "ir.json").read_text())
    chat = next(r for r in ir["routes"] if r["name"] == "chat")
    assert [(b["model"], b["weight"]) for b in chat["backends"]] == [
        ("gpt-4o-2024-08-06", 0), ("gpt-4o-2024-11-20", 100)]
    stale = cli("apply", str(saved))
    assert stale.exit_code == 1 and "stale" in stale.stderr


def test_saved_plan_is_applied_only_to_its_own_live_source(
    cli: Cli, root: Path, tmp_path: Path
) -> None:
    saved = tmp_path / "plan.json"
    assert cli("plan", str(root), "--live", f"dir:{tmp_path / 'a'}", "--out",
               str(saved)).exit_code == 0

    result = cli("apply", str(saved), "--live", f"dir:{tmp_path / 'b'}")

    assert result.exit_code == 1
    assert f"the plan was computed against dir:{tmp_path / 'a'}" in result.stderr


def test_plan_when_the_root_is_the_top_of_the_checkout(cli: Cli, tmp_path: Path) -> None:
    top = tmp_path / "manifests"
    shutil.copytree(FIXTURE_ROOT, top)
    git(top, "init", "-q", "-b", "main")
    git(top, "add", ".")
    git(top, "commit", "-q", "-m", "gateway at step 1")
    set_rollout_step(top, 2)

    result = cli("plan", str(top), "--live", "git:HEAD", "-o", "json", env=NO_CLUSTER)

    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    manifest = [(c["action"], c["kind"], c["name"]) for c in plan["changes"]
                if c["layer"] == "manifest"]
    assert manifest == [("update", "Route", "chat")]


def _with_module(root: Path) -> None:
    """The gateway on an image of its own with the compiled filters (dataPlaneFilters: module)."""
    path = root / "gateway.yaml"
    path.write_text(path.read_text().replace(
        "  image: envoyproxy/envoy:v1.40.0\n",
        "  image: registry.example.com/gatewayctl-envoy:v1.40.0\n  dataPlaneFilters: module\n"))


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                    reason="needs a C compiler (cc or gcc)")
def test_apply_to_a_dir_checks_a_module_config_with_the_module_built(
    cli: Cli, root: Path, tmp_path: Path
) -> None:
    """Envoy loads the module to validate its filters' config: the pre-apply check builds it
    (the gateway's own image brings the module it runs)."""
    _with_module(root)
    out = tmp_path / "bundle"
    done = cli("apply", str(root), "--live", f"dir:{out}", "--auto-approve")
    assert done.exit_code == 0, done.output
    lds = (out / "envoy" / "lds.json").read_text()
    assert "DynamicModuleFilter" in lds and "envoy.filters.http.lua" not in lds


def test_apply_of_a_module_config_without_a_compiler_is_one_clear_error(
    cli: Cli, root: Path, tmp_path: Path
) -> None:
    _with_module(root)
    empty = tmp_path / "no-compiler"
    empty.mkdir()
    out = tmp_path / "bundle"
    done = cli("apply", str(root), "--live", f"dir:{out}", "--auto-approve",
               env={"PATH": str(empty), "CC": ""})
    assert done.exit_code == 1, done.output
    assert "cannot check the configuration before applying it" in done.stderr
    assert "dataPlaneFilters: module" in done.stderr and "apt-get install gcc" in done.stderr
    assert not out.exists()  # nothing written
