"""A file the user names for output (a report, a saved plan, the schemas) that cannot be written
is the user's error: exit 1 with a message naming the file and the reason, not an internal
error (exit 70) with a crash log."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from gatewayctl.cli import main
from tests.cli.helpers import QUICKSTART

MULTI_TEAM = QUICKSTART.parent / "multi-team"  # it has RequestTest cases


def _cases(folder: Path, afile: Path) -> list[tuple[list[str], Path, str]]:
    """(arguments, the path they cannot write, what the message calls it)"""
    return [
        (["validate", str(QUICKSTART), "--report", f"junit={folder}"], folder,
         "the JUnit report"),
        (["validate", str(QUICKSTART), "--report", f"codequality={folder}"], folder,
         "the Code Quality report"),
        (["test", str(MULTI_TEAM), "--report", f"junit={folder}"], folder, "the JUnit report"),
        (["plan", str(QUICKSTART), "--live", f"dir:{folder / 'live'}", "--out", str(folder)],
         folder, "the plan"),
        (["schema", "export", str(afile)], afile, "the schema"),  # a schema in it
    ]


@pytest.mark.parametrize("case", range(5))
def test_an_output_file_that_cannot_be_written_is_an_error_naming_it(
    case: int, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where a crash log goes
    (tmp_path / "tmp").mkdir()
    folder = tmp_path / "a-folder"
    folder.mkdir()
    afile = tmp_path / "a-file"
    afile.write_text("")
    args, path, what = _cases(folder, afile)[case]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 1, err
    assert f"error: cannot write {what} {path}" in err, err
    if path == afile:
        assert f": {afile} is a file, not a folder\n" in err
    assert "hint: " in err
    assert not list((tmp_path / "tmp").glob("gatewayctl-crash-*"))
