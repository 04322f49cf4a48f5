"""The project's own `.gitlab-ci.yml`, run by gitlab-ci-local on a release tag: it builds the
wheel and publishes it to the project's PyPI package registry (the GitLab API fake); a manifest
repository's pipeline with `install: registry` then installs exactly that version from there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fakes.gitlab_api import JOB_TOKEN, GitLabAPIServer
from tests.gitlab.runner import (
    copy_project,
    example_files,
    job_venv,
    make_repo,
    run_pipeline,
)

pytestmark = pytest.mark.slow

TAG = {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_TAG": "v0.1.0", "CI_COMMIT_REF_NAME": "v0.1.0"}
PUSH = {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "main", "CI_COMMIT_REF_NAME": "main"}


def test_a_release_tag_publishes_the_wheel_and_the_template_installs_that_version(
        tmp_path: Path, gitlab: GitLabAPIServer) -> None:
    gatewayctl = gitlab.add_project("platform/gatewayctl")
    project = copy_project(tmp_path / "gatewayctl")
    build_bin = job_venv(tmp_path / "build-venv", with_test_dependencies=False)

    release = run_pipeline(project, gitlab=gitlab, project_id=gatewayctl.id, pipeline=TAG,
                           job_token=JOB_TOKEN, jobs=("build", "publish-package"),
                           python_bin=build_bin)

    assert release.results == {"build": "PASS", "publish-package": "PASS"}, release.explain()
    published = sorted(f.filename for f in gatewayctl.pypi_files.values())
    assert published == ["gatewayctl-0.1.0-py3-none-any.whl", "gatewayctl-0.1.0.tar.gz"]
    uploads = gitlab.requests_to("POST", r"/projects/\d+/packages/pypi$")
    assert [(r.status, r.auth_header) for r in uploads] == [(201, "Authorization")] * 2

    # a manifest repository includes the template of that release, installing from the registry
    manifests = make_repo(tmp_path / "gateway-config", """\
stages: [test, deploy]
include:
  - local: ci/gatewayctl.gitlab-ci.yml
    inputs:
      root: gateway/
      install: registry
      gatewayctl-project: platform/gatewayctl
""", example_files("quickstart", "gateway"))
    config = gitlab.add_project("platform/gateway-config", files=manifests.files())
    job_bin = job_venv(tmp_path / "job-venv", with_test_dependencies=True)

    run = run_pipeline(manifests, gitlab=gitlab, project_id=config.id, pipeline=PUSH,
                       job_token=JOB_TOKEN, jobs=("gatewayctl-validate",),
                       python_bin=job_bin, env={"PIP_NO_DEPS": "1"})

    assert run.results == {"gatewayctl-validate": "PASS"}, run.explain()
    assert "ok: " in run.job_log("gatewayctl-validate")
    assert (job_bin / "gatewayctl").is_file()  # installed into the job's environment
    index = gitlab.requests_to("GET", r"/projects/platform%2Fgatewayctl/packages/pypi/simple/"
                               r"gatewayctl/?$") or gitlab.requests_to(
        "GET", r"/projects/platform/gatewayctl/packages/pypi/simple/gatewayctl/?$")
    assert index and index[-1].status == 200 and index[-1].auth_header == "Authorization"
    downloads = gitlab.requests_to("GET", r"/packages/pypi/files/[0-9a-f]{64}/")
    assert [re.sub(r".*/", "", r.path) for r in downloads] == [
        "gatewayctl-0.1.0-py3-none-any.whl"]


def test_the_template_refuses_an_image_with_another_gatewayctl_version(
        tmp_path: Path, gitlab: GitLabAPIServer) -> None:
    """The jobs run exactly the version the template belongs to."""
    manifests = make_repo(tmp_path / "gateway-config", """\
include:
  - local: ci/gatewayctl.gitlab-ci.yml
    inputs:
      root: gateway/
      version: 0.2.0
      image: registry.example.com/platform/gatewayctl:0.2.0
""", example_files("quickstart", "gateway"))
    config = gitlab.add_project("platform/gateway-config", files=manifests.files())

    run = run_pipeline(manifests, gitlab=gitlab, project_id=config.id, pipeline=PUSH,
                       job_token=JOB_TOKEN, jobs=("gatewayctl-validate",))

    assert run.results == {"gatewayctl-validate": "FAIL"}, run.explain()
    assert ("error: this pipeline needs gatewayctl 0.2.0; the job has 'gatewayctl 0.1.0'"
            in run.job_log("gatewayctl-validate"))
