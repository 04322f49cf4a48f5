"""`render --out` and `apply --live dir:` never destroy what they did not write (SPEC §7).

Each case is one a user ran into: a render or apply into a Git checkout, into a folder of their
own files, and into a bundle folder that also holds a file of theirs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from gatewayctl.render.output_folder import RECORD_NAME
from tests.cli.helpers import QUICKSTART, gatewayctl, git_checkout, snapshot


def test_render_into_its_own_git_checkout_is_refused(tmp_path: Path) -> None:
    checkout = git_checkout(tmp_path / "checkout")
    before = snapshot(checkout)

    proc = gatewayctl("render", ".", "--out", ".", cwd=checkout)

    assert proc.returncode == 1
    assert proc.stderr.startswith("error: . is the manifest root .; nothing was written\n"
                                  "  hint: write the bundle to a folder of its own")
    assert proc.stdout == ""
    assert snapshot(checkout) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkout"]


def test_render_into_a_folder_inside_a_git_checkout_is_refused(tmp_path: Path) -> None:
    checkout = git_checkout(tmp_path / "checkout")
    (checkout / "docs").mkdir()
    manifests = tmp_path / "manifests"
    shutil.copytree(QUICKSTART, manifests)
    before = snapshot(checkout)

    proc = gatewayctl("render", str(manifests), "--out", "docs/out", cwd=checkout)

    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == (
        f"error: docs/out lies inside {checkout}, which is a Git work tree; nothing was written")
    assert snapshot(checkout) == before


def test_render_into_a_folder_of_foreign_files_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "photos"
    out.mkdir()
    (out / "cat.jpg").write_bytes(b"\xff\xd8 a cat")
    (out / ".hidden").write_text("x")
    before = snapshot(out)

    proc = gatewayctl("render", str(QUICKSTART), "--out", str(out))

    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == (
        f"error: {out} is not empty and holds no gatewayctl bundle (.hidden, cat.jpg); "
        "nothing was written")
    assert snapshot(out) == before


def test_render_twice_into_a_bundle_keeps_a_foreign_file(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    first = gatewayctl("render", str(QUICKSTART), "--out", str(out))
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"rendered 15 files to {out} (15 new, 0 changed)\n"
    recorded = json.loads((out / RECORD_NAME).read_text())["files"]
    assert len(recorded) == 15 and "ir.json" in recorded
    (out / "NOTES.md").write_text("my notes")

    again = gatewayctl("render", str(QUICKSTART), "--out", str(out))

    assert again.returncode == 0, again.stderr
    assert again.stdout == f"rendered 15 files to {out} (0 new, 0 changed)\n"
    assert (out / "NOTES.md").read_text() == "my notes"


def test_apply_to_its_own_checkout_as_a_dir_is_refused(tmp_path: Path) -> None:
    checkout = git_checkout(tmp_path / "checkout")
    before = snapshot(checkout)

    proc = gatewayctl("apply", ".", "--live", "dir:.", "--auto-approve", cwd=checkout)

    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == (
        "error: . is the manifest root .; nothing was written")
    assert snapshot(checkout) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkout"]  # no lock file either


def test_plan_against_a_refused_dir_says_so(tmp_path: Path) -> None:
    checkout = git_checkout(tmp_path / "checkout")
    proc = gatewayctl("plan", ".", "--live", "dir:.", cwd=checkout)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == "error: . is the manifest root .; nothing was written"


def _stale_bundle(tmp_path: Path) -> Path:
    """A real bundle folder, with one file of an older render and one file of the user's."""
    out = tmp_path / "bundle"
    assert gatewayctl("render", str(QUICKSTART), "--out", str(out)).returncode == 0
    record = json.loads((out / RECORD_NAME).read_text())
    record["files"] = sorted([*record["files"], "kubernetes/configmap-old-gateway.yaml"])
    (out / RECORD_NAME).write_text(json.dumps(record))
    (out / "kubernetes" / "configmap-old-gateway.yaml").write_text("kind: ConfigMap\n")
    (out / "kubernetes" / "my-extra.yaml").write_text("kind: Secret\n")
    return out


def test_dir_plan_lists_every_file_apply_deletes_and_apply_keeps_foreign_files(
    tmp_path: Path
) -> None:
    out = _stale_bundle(tmp_path)

    plan = gatewayctl("plan", str(QUICKSTART), "--live", f"dir:{out}", "-o", "json")
    text = gatewayctl("plan", str(QUICKSTART), "--live", f"dir:{out}", "--detailed-exitcode")
    applied = gatewayctl("apply", str(QUICKSTART), "--live", f"dir:{out}", "--auto-approve")

    changes = json.loads(plan.stdout)["changes"]
    assert [(c["kind"], c["name"], c["action"]) for c in changes if c["action"] != "no-op"] == [
        ("File", "kubernetes/configmap-old-gateway.yaml", "delete")]
    assert text.returncode == 2
    assert "  - File kubernetes/configmap-old-gateway.yaml\n" in text.stdout
    assert "Resources: 0 to create, 0 to change, 1 to delete" in text.stdout
    assert applied.returncode == 0, applied.stderr
    assert f"removed {out}/kubernetes/configmap-old-gateway.yaml\n" in applied.stdout
    assert "Apply complete: 0 created, 0 changed, 1 deleted." in applied.stdout
    assert not (out / "kubernetes" / "configmap-old-gateway.yaml").exists()
    assert (out / "kubernetes" / "my-extra.yaml").read_text() == "kind: Secret\n"
    clean = gatewayctl("plan", str(QUICKSTART), "--live", f"dir:{out}", "--detailed-exitcode")
    assert clean.returncode == 0, clean.stdout


def test_a_saved_dir_plan_is_refused_when_the_files_to_delete_changed(tmp_path: Path) -> None:
    out = _stale_bundle(tmp_path)
    saved = tmp_path / "plan.json"
    assert gatewayctl("plan", str(QUICKSTART), "--live", f"dir:{out}", "--out",
                      str(saved)).returncode == 0
    record = json.loads((out / RECORD_NAME).read_text())
    record["files"] = sorted([*record["files"], "kubernetes/my-extra.yaml"])
    (out / RECORD_NAME).write_text(json.dumps(record))

    proc = gatewayctl("apply", str(saved))

    assert proc.returncode == 1
    assert "the saved plan is stale" in proc.stderr
    assert (out / "kubernetes" / "my-extra.yaml").exists()
