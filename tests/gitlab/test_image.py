"""The CI image: git in it works on a checkout that another user owns, as a runner's is.

No container engine runs here, so the image's own Git configuration (`docker/gitconfig`, copied
to /etc/gitconfig by the Dockerfile) is given to git as its system configuration, and git runs
as the image's user (uid 10001) on a repository owned by root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

GITCONFIG = REPO / "docker" / "gitconfig"
IMAGE_USER = "10001"


@pytest.fixture
def checkout() -> Iterator[Path]:
    """A repository owned by root, readable by everyone (a runner's clone)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run git as another user")
    top = Path(tempfile.mkdtemp(prefix="gatewayctl-image-"))
    try:
        top.chmod(0o755)
        repo = top / "repo"
        repo.mkdir()
        env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null"}
        for args in (["init", "-q", "-b", "main"], ["-c", "user.name=r", "-c", "user.email=r@x",
                                                    "commit", "-q", "--allow-empty", "-m", "x"]):
            subprocess.run(["git", *args], cwd=repo, check=True, env=env, timeout=30)
        subprocess.run(["chmod", "-R", "a+rX", str(top)], check=True, timeout=30)
        yield repo
    finally:
        shutil.rmtree(top)


def git_as_image_user(repo: Path, system_config: str) -> subprocess.CompletedProcess[str]:
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to run git as the image's user"
    env = {"PATH": os.environ["PATH"], "HOME": "/nonexistent", "GIT_CONFIG_GLOBAL": "/dev/null",
           "GIT_CONFIG_SYSTEM": system_config}
    return subprocess.run([setpriv, f"--reuid={IMAGE_USER}", f"--regid={IMAGE_USER}",
                           "--clear-groups", "git", "-C", str(repo), "rev-parse", "HEAD"],
                          capture_output=True, text=True, env=env, timeout=30)


def test_git_refuses_the_checkout_without_the_image_configuration(checkout: Path) -> None:
    done = git_as_image_user(checkout, "/dev/null")
    assert done.returncode != 0 and "dubious ownership" in done.stderr


def test_git_reads_the_checkout_with_the_image_configuration(checkout: Path) -> None:
    # A copy the image's user can read: the checkout under test may sit in a private folder
    # (a clone in `mktemp -d`, mode 0700), as /etc/gitconfig in the image never does.
    config = checkout.parent / "gitconfig"
    shutil.copyfile(GITCONFIG, config)
    config.chmod(0o644)
    done = git_as_image_user(checkout, str(config))
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip()) == 40


def test_the_dockerfile_installs_that_configuration_git_and_no_envoy() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "COPY docker/gitconfig /etc/gitconfig" in dockerfile
    assert "--no-install-recommends git" in dockerfile
    # no [envoy] extra; the cache store service's event loop (uvloop) only
    assert '/opt/gatewayctl/bin/pip install ".[cachestore]"\n' in dockerfile
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert [d.split(";")[0].split(">")[0] for d in
            extras["project"]["optional-dependencies"]["cachestore"]] == ["uvloop"]
    assert "USER 10001:10001" in dockerfile
