"""The output-folder policy (`gatewayctl.render.output_folder`): where a bundle may be written,
what a write creates, changes and deletes, and that a refusal or a failure changes nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gatewayctl import __version__
from gatewayctl.errors import GatewayctlError
from gatewayctl.render import output_folder
from gatewayctl.render.output_folder import (
    RECORD_NAME,
    FolderRefused,
    check_folder,
    plan_folder,
    write_folder,
)
from tests.cli.helpers import snapshot

BUNDLE = {"ir.json": "{}\n", "envoy/lds.json": "lds\n", "envoy/cds.json": "cds\n",
          "kubernetes/service-gw.yaml": "kind: Service\n"}


def record(folder: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((folder / RECORD_NAME).read_text())
    return data


def test_a_new_folder_gets_the_files_and_a_record_of_them(tmp_path: Path) -> None:
    out = tmp_path / "a" / "bundle"

    done = write_folder(out, BUNDLE)

    assert done.create == tuple(sorted(BUNDLE)) and not done.delete
    assert {p: (out / p).read_text() for p in BUNDLE} == BUNDLE
    assert record(out) == {"kind": "gatewayctl-bundle", "format": 1, "gatewayctl": __version__,
                           "files": sorted(BUNDLE)}
    assert sorted(p.name for p in tmp_path.joinpath("a").iterdir()) == ["bundle"]


def test_an_empty_folder_is_written_into(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    write_folder(out, BUNDLE)
    assert set(snapshot(out)) == {*BUNDLE, RECORD_NAME, "envoy/", "kubernetes/"}


def test_a_folder_with_files_of_someone_else_is_refused_and_kept(tmp_path: Path) -> None:
    out = tmp_path / "notes"
    out.mkdir()
    (out / "todo.txt").write_text("mine")
    before = snapshot(out)

    with pytest.raises(FolderRefused) as err:
        write_folder(out, BUNDLE)

    assert err.value.message == (f"{out} is not empty and holds no gatewayctl bundle "
                                 "(todo.txt); nothing was written")
    assert "new or empty folder" in (err.value.hint or "")
    assert snapshot(out) == before


def test_rewriting_a_bundle_replaces_and_removes_only_its_own_files(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    write_folder(out, BUNDLE)
    (out / "README.md").write_text("kept")
    (out / "kubernetes" / "extra.yaml").write_text("kept too")
    desired = {k: v for k, v in BUNDLE.items() if k != "envoy/cds.json"}
    desired["ir.json"] = '{"v": 2}\n'
    desired["kubernetes/deployment-gw.yaml"] = "kind: Deployment\n"

    planned = plan_folder(out, desired)
    done = write_folder(out, desired)

    assert planned == done
    assert done.create == ("kubernetes/deployment-gw.yaml",)
    assert done.update == ("ir.json",)
    assert done.delete == ("envoy/cds.json",)
    assert done.unchanged == ("envoy/lds.json", "kubernetes/service-gw.yaml")
    assert done.foreign == ("README.md", "kubernetes/extra.yaml")
    assert (out / "README.md").read_text() == "kept"
    assert (out / "kubernetes" / "extra.yaml").read_text() == "kept too"
    assert not (out / "envoy" / "cds.json").exists()
    assert record(out)["files"] == sorted(desired)


def test_a_folder_emptied_by_the_write_is_removed_with_its_last_file(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    write_folder(out, BUNDLE)
    desired = {k: v for k, v in BUNDLE.items() if not k.startswith("envoy/")}
    write_folder(out, desired)
    assert not (out / "envoy").exists()


def test_plan_reads_only(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    write_folder(out, BUNDLE)
    before = snapshot(out)
    changes = plan_folder(out, {"ir.json": None, "new.txt": None})
    assert changes.update == ("ir.json",) and changes.create == ("new.txt",)
    assert changes.delete == ("envoy/cds.json", "envoy/lds.json", "kubernetes/service-gw.yaml")
    assert snapshot(out) == before


def test_a_bundle_file_landing_on_a_foreign_file_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    write_folder(out, {"ir.json": "{}\n"})
    (out / "envoy").mkdir()
    (out / "envoy" / "lds.json").write_text("someone's own listeners")
    before = snapshot(out)

    with pytest.raises(FolderRefused) as err:
        write_folder(out, BUNDLE)

    assert err.value.message == (f"{out}/envoy/lds.json is not a file gatewayctl wrote, and "
                                 "the bundle would replace it; nothing was written")
    assert snapshot(out) == before


def test_a_link_in_place_of_a_recorded_folder_is_not_followed(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    write_folder(out, BUNDLE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "lds.json").write_text("precious")
    for name in ("lds.json", "cds.json"):
        (out / "envoy" / name).unlink()
    (out / "envoy").rmdir()
    (out / "envoy").symlink_to(elsewhere)

    with pytest.raises(FolderRefused):
        write_folder(out, BUNDLE)
    assert plan_folder(out, {"ir.json": "{}\n"}).delete == ("kubernetes/service-gw.yaml",)
    assert (elsewhere / "lds.json").read_text() == "precious"


@pytest.mark.parametrize("files", [["../outside.txt"], ["/etc/hostname"], ["a/../../x"], 7])
def test_a_damaged_record_is_refused_and_nothing_outside_is_touched(
    tmp_path: Path, files: object
) -> None:
    out = tmp_path / "bundle"
    write_folder(out, BUNDLE)
    (tmp_path / "outside.txt").write_text("precious")
    data = record(out) | {"files": files}
    (out / RECORD_NAME).write_text(json.dumps(data))

    with pytest.raises(FolderRefused) as err:
        write_folder(out, {"ir.json": "{}\n"})

    assert err.value.message == (f"{out}/{RECORD_NAME} is not a gatewayctl bundle record; "
                                 "nothing was written")
    assert (tmp_path / "outside.txt").read_text() == "precious"


def test_a_bundle_of_an_older_gatewayctl_without_a_record_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "old"
    for rel, text in BUNDLE.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    with pytest.raises(FolderRefused) as err:
        write_folder(out, BUNDLE)
    assert "holds no gatewayctl bundle (envoy, ir.json, kubernetes)" in err.value.message


def test_a_git_repository_inside_a_bundle_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    write_folder(out, BUNDLE)
    (out / "vendor" / ".git").mkdir(parents=True)
    with pytest.raises(FolderRefused) as err:
        write_folder(out, BUNDLE)
    assert err.value.message == (f"{out} contains a Git repository (vendor/.git); nothing "
                                 "was written")


def test_refused_places(tmp_path: Path) -> None:
    root = tmp_path / "manifests"
    (root / "sub").mkdir(parents=True)
    checkout = tmp_path / "checkout"
    (checkout / "deep").mkdir(parents=True)
    (checkout / ".git").write_text("gitdir: /elsewhere\n")  # a worktree's .git is a file
    link = tmp_path / "link"
    link.symlink_to(root / "sub")
    a_file = tmp_path / "file"
    a_file.write_text("x")

    def refusal(out: Path) -> str:
        with pytest.raises(FolderRefused) as err:
            check_folder(out, root=root)
        return err.value.message

    assert refusal(root) == f"{root} is the manifest root {root}; nothing was written"
    assert refusal(root / "sub" / "out") == (
        f"{root / 'sub' / 'out'} lies inside the manifest root {root}; nothing was written")
    assert refusal(tmp_path) == (
        f"{tmp_path} contains the manifest root {root}; nothing was written")
    assert refusal(link / "x") == (
        f"{link / 'x'} lies inside the manifest root {root}; nothing was written")
    assert refusal(checkout) == f"{checkout} is a Git work tree; nothing was written"
    assert refusal(checkout / "deep" / "out") == (
        f"{checkout / 'deep' / 'out'} lies inside {checkout}, which is a Git work tree; "
        "nothing was written")
    assert refusal(a_file) == f"{a_file} exists and is not a folder; nothing was written"
    assert check_folder(tmp_path / "fine", root=root) == tmp_path / "fine"


def test_a_failure_while_staging_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "bundle"
    write_folder(out, BUNDLE)
    (out / "README.md").write_text("kept")
    before = snapshot(out)
    real = output_folder._write_text
    calls = {"n": 0}

    def disk_full_on_the_second_file(path: Path, text: str) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        real(path, text)

    monkeypatch.setattr(output_folder, "_write_text", disk_full_on_the_second_file)
    desired = {**{k: v + "2" for k, v in BUNDLE.items()}, "new/file.txt": "x"}

    with pytest.raises(GatewayctlError) as err:
        write_folder(out, desired)

    assert err.value.message == (f"cannot write the bundle to {out}: No space left on device; "
                                 "nothing was changed")
    assert snapshot(out) == before


def test_a_write_cut_short_while_renaming_is_finished_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "bundle"
    write_folder(out, BUNDLE)
    (out / "README.md").write_text("kept")
    desired = {"ir.json": "{}\n", "envoy/new.json": "n\n", "kubernetes/z.yaml": "z\n"}
    real = os.replace
    renames = {"n": 0}

    def killed_after_one_file(src: str | Path, dst: str | Path) -> None:
        if not str(dst).endswith(RECORD_NAME):
            renames["n"] += 1
            if renames["n"] == 2:
                raise KeyboardInterrupt  # what a kill part-way leaves behind
        real(src, dst)

    monkeypatch.setattr(output_folder.os, "replace", killed_after_one_file)
    with pytest.raises(KeyboardInterrupt):
        write_folder(out, desired)
    monkeypatch.setattr(output_folder.os, "replace", real)
    # The record claims old and new files alike, so none of them is left as "foreign".
    assert set(record(out)["files"]) == set(BUNDLE) | set(desired)  # type: ignore[arg-type]

    write_folder(out, desired)

    assert set(snapshot(out)) == {*desired, RECORD_NAME, "README.md", "envoy/", "kubernetes/"}
    assert record(out)["files"] == sorted(desired)


def test_the_dir_plan_knows_the_bundle_paths_without_rendering() -> None:
    from gatewayctl.pipeline import compile_root
    from gatewayctl.render.bundle import bundle_paths, render_files, render_objects
    from tests.cli.helpers import QUICKSTART

    ir = compile_root(QUICKSTART).ir
    assert bundle_paths(render_objects(ir)) == set(render_files(ir))
