"""Run GitLab CI pipelines the way a runner does, with gitlab-ci-local (shell executor).

A `ManifestRepo` is a Git repository in a temporary folder; `run_pipeline` runs its
`.gitlab-ci.yml` with gitlab-ci-local as a merge-request, push, schedule or tag pipeline, with
GitLab's predefined variables pointing at the local GitLab API fake, and CI/CD variables given
the way GitLab would give them (file variables, environment-scoped values). The jobs run the
gatewayctl of the test's own virtualenv (it comes first on PATH).

gitlab-ci-local is an npm package; `.ci/run` installs it into `.cache/gitlab-ci-local/` (pinned:
4.75.x crashes on Node 20). Where it is missing, the tests fail in CI and skip elsewhere.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.fakes.kubeapi.server import Rule

GITLAB_CI_LOCAL_VERSION = "4.73.0"
GCL_PREFIX = REPO / ".cache" / "gitlab-ci-local"
PIPELINE_TIMEOUT_S = 300
_GIT_ID = ["-c", "user.name=Developer", "-c", "user.email=developer@example.com"]
_RESULT = re.compile(r"^ (PASS|FAIL|WARN) +(\S+)", re.M)  # WARN: failed, allowed to fail


def gitlab_ci_local() -> str:
    """The gitlab-ci-local executable; fails in CI (and skips elsewhere) when it is missing."""
    candidates = [os.environ.get("GATEWAYCTL_GITLAB_CI_LOCAL"),
                  str(GCL_PREFIX / "node_modules" / ".bin" / "gitlab-ci-local"),
                  shutil.which("gitlab-ci-local")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    message = (f"gitlab-ci-local is not installed: npm install --prefix {GCL_PREFIX} "
               f"gitlab-ci-local@{GITLAB_CI_LOCAL_VERSION} (bash .ci/run does it)")
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
    raise AssertionError("unreachable")


@dataclass
class ManifestRepo:
    """A manifest repository: a Git work tree whose `origin` is the GitLab project."""

    path: Path

    def git(self, *args: str) -> str:
        done = subprocess.run(["git", *_GIT_ID, *args], cwd=self.path, capture_output=True,
                              text=True, check=True, timeout=60)
        return done.stdout.strip()

    def write(self, relative: str, text: str) -> None:
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")

    def read(self, relative: str) -> str:
        return (self.path / relative).read_text(encoding="utf-8")

    def replace(self, relative: str, old: str, new: str) -> None:
        text = self.read(relative)
        assert old in text, f"{old!r} not in {relative}"
        self.write(relative, text.replace(old, new, 1))

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

    def files(self, under: str = "") -> dict[str, str]:
        """Tracked files (path -> text), for seeding the GitLab fake's copy of the project."""
        listed = self.git("ls-files", "-z", "--", under or ".").split("\0")
        return {p: self.read(p) for p in listed if p}


def make_repo(path: Path, ci_yaml: str, files: dict[str, str]) -> ManifestRepo:
    """A repository on `main` with the template at ci/, `.gitlab-ci.yml` and `files`."""
    path.mkdir(parents=True)
    repo = ManifestRepo(path)
    repo.git("init", "-q", "-b", "main")
    repo.git("remote", "add", "origin", "https://gitlab.example.com/platform/gateway-config.git")
    shutil.copy(REPO / "templates" / "gatewayctl.gitlab-ci.yml", path / "ci.template.yml")
    (path / "ci").mkdir()
    shutil.move(path / "ci.template.yml", path / "ci" / "gatewayctl.gitlab-ci.yml")
    repo.write(".gitlab-ci.yml", ci_yaml)
    repo.write(".gitignore", ".gitlab-ci-local/\n.cache/\n")
    for relative, text in files.items():
        repo.write(relative, text)
    repo.commit("Initial commit")
    return repo


def copy_project(path: Path) -> ManifestRepo:
    """This project's files (tracked and new, as in the work tree) in a new repository."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=REPO, capture_output=True, check=True,
                            timeout=60).stdout.decode().split("\0")
    for relative in filter(None, listed):
        source = REPO / relative
        if source.is_file():
            (path / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, path / relative)
    repo = ManifestRepo(path)
    repo.git("init", "-q", "-b", "main")
    repo.git("remote", "add", "origin", "https://gitlab.example.com/platform/gatewayctl.git")
    repo.commit("Release")
    return repo


def job_venv(path: Path, *, with_test_dependencies: bool) -> Path:
    """A virtualenv for jobs that install packages; returns its bin folder.

    With `with_test_dependencies`, gatewayctl's dependencies are importable from the test's
    own environment (linked, without gatewayctl itself), so that a job can install gatewayctl
    with PIP_NO_DEPS=1 from a package registry and run it, without a resolver going online.
    """
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    if with_test_dependencies:
        linked = path / "test-dependencies"
        linked.mkdir()
        skip = ("gatewayctl", "__editable__", "_gatewayctl", "pip", "setuptools",
                "_distutils_hack", "distutils-precedence", "__pycache__")
        for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
            if not entry.name.lower().startswith(skip):
                (linked / entry.name).symlink_to(entry)
        site = next(path.glob("lib/python3*/site-packages"))
        (site / "test-dependencies.pth").write_text(f"{linked}\n", encoding="utf-8")
    return path / "bin"


def documented_role(name: str) -> list[Rule]:
    """A Role of docs/gitlab-workflow.md as the Kubernetes API fake's RBAC rules."""
    doc = (REPO / "docs" / "gitlab-workflow.md").read_text()
    blocks = re.findall(r"```yaml\n(apiVersion: rbac.authorization.k8s.io/v1\n.*?)```", doc,
                        re.S)
    roles = [r for block in blocks for r in yaml.safe_load_all(block)]
    role = next(r for r in roles if r["metadata"]["name"] == name)
    return [Rule(tuple(rule["verbs"]), tuple(rule["resources"])) for rule in role["rules"]]


def example_files(example: str, under: str) -> dict[str, str]:
    base = REPO / "examples" / example
    return {f"{under}/{p.name}": p.read_text(encoding="utf-8")
            for p in sorted(base.iterdir()) if p.is_file() and p.suffix in (".yaml", ".yml")}


@dataclass
class PipelineRun:
    returncode: int
    output: str
    results: dict[str, str] = field(default_factory=dict)  # job -> PASS | FAIL | WARN
    cwd: Path = Path(".")

    def job_log(self, job: str) -> str:
        """The lines a job printed (gitlab-ci-local prefixes each with the job's name)."""
        prefix = re.compile(rf"^{re.escape(job)}\s+(?:> ?)?(.*)$")
        return "\n".join(m.group(1) for line in self.output.splitlines()
                         if (m := prefix.match(line)))

    def artifact(self, job: str, relative: str) -> Path:
        return self.cwd / ".gitlab-ci-local" / "artifacts" / job / relative

    def explain(self) -> str:
        return f"exit {self.returncode}\n{self.output[-12000:]}"


def merge_request_variables(*, iid: int, diff_base: str, source_branch: str,
                            target_branch: str = "main") -> dict[str, str]:
    """What GitLab sets in a merge request pipeline (and CI_COMMIT_BRANCH stays unset)."""
    return {
        "CI_PIPELINE_SOURCE": "merge_request_event",
        "CI_MERGE_REQUEST_IID": str(iid),
        "CI_MERGE_REQUEST_DIFF_BASE_SHA": diff_base,
        "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": source_branch,
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": target_branch,
        "CI_COMMIT_REF_NAME": source_branch,
    }


def run_pipeline(
    repo: ManifestRepo,
    *,
    gitlab: Any,
    project_id: int,
    pipeline: dict[str, str],
    cicd_variables: dict[str, Any] | None = None,
    jobs: tuple[str, ...] = (),
    manual: tuple[str, ...] = (),
    job_token: str,
    env: dict[str, str] | None = None,
    python_bin: Path | None = None,
) -> PipelineRun:
    """Run the pipeline in `repo` with gitlab-ci-local; `pipeline` sets predefined variables.

    `cicd_variables` are the project's CI/CD variables in gitlab-ci-local's variables-file
    form: a string value, a path to a file (a file variable), or `{"type": "file", "values":
    {"production": text}}` for an environment-scoped one.
    """
    exe = gitlab_ci_local()
    api_url = gitlab.api_url
    predefined = {
        "CI_API_V4_URL": api_url,
        "CI_SERVER_URL": gitlab.url,
        "CI_SERVER_HOST": "127.0.0.1",
        "CI_PROJECT_ID": str(project_id),
        "CI_DEFAULT_BRANCH": "main",
        "CI_JOB_TOKEN": job_token,
        **pipeline,
    }
    variables_file = repo.path.parent / f"{repo.path.name}-variables.yml"
    variables_file.write_text(yaml.safe_dump(cicd_variables or {}), encoding="utf-8")
    argv = [exe, "--force-shell-executor", "--shell-isolation", "--no-color",
            "--home", str(repo.path.parent / "gcl-home"),
            "--variables-file", os.path.relpath(variables_file, repo.path),
            "--ignore-predefined-vars", ",".join(sorted(predefined))]
    for name, value in predefined.items():
        argv += ["--variable", f"{name}={value}"]
    if pipeline.get("CI_PIPELINE_SOURCE") == "merge_request_event" or "CI_COMMIT_TAG" in pipeline:
        argv += ["--unset-variable", "CI_COMMIT_BRANCH"]
    for job in manual:
        argv += ["--manual", job]
    argv += list(jobs)
    bin_dir = python_bin or Path(sys.executable).parent
    environ = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               "NO_COLOR": "1", **(env or {})}
    for name in ("GITLAB_TOKEN", "KUBECONFIG", "CI", "GITLAB_CI"):
        environ.pop(name, None)
    done = subprocess.run(argv, cwd=repo.path, capture_output=True, text=True,
                          timeout=PIPELINE_TIMEOUT_S, env=environ, stdin=subprocess.DEVNULL)
    output = done.stdout + done.stderr
    results = {m.group(2): m.group(1) for m in _RESULT.finditer(output)}
    return PipelineRun(done.returncode, output, results, repo.path)
