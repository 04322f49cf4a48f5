"""Provenance: GitLab CI's variables -> annotations."""

from __future__ import annotations

from gatewayctl.render.k8s import Provenance


def test_reads_gitlab_ci_variables() -> None:
    source = Provenance.from_environment(
        {
            "CI_COMMIT_SHA": "4f2a9c0e",
            "CI_COMMIT_REF_NAME": "feature/canary",
            "CI_MERGE_REQUEST_PROJECT_URL": "https://gitlab.example.com/platform/gateway/",
            "CI_MERGE_REQUEST_IID": "42",
            "CI_PIPELINE_URL": "https://gitlab.example.com/platform/gateway/-/pipelines/7",
        }
    )
    assert source == Provenance(
        commit="4f2a9c0e",
        ref="feature/canary",
        merge_request_url="https://gitlab.example.com/platform/gateway/-/merge_requests/42",
        pipeline_url="https://gitlab.example.com/platform/gateway/-/pipelines/7",
    )
    assert source.annotations() == {
        "gatewayctl.dev/source-commit": "4f2a9c0e",
        "gatewayctl.dev/source-merge-request": (
            "https://gitlab.example.com/platform/gateway/-/merge_requests/42"
        ),
        "gatewayctl.dev/source-pipeline": (
            "https://gitlab.example.com/platform/gateway/-/pipelines/7"
        ),
        "gatewayctl.dev/source-ref": "feature/canary",
    }


def test_unset_or_empty_variables_are_none() -> None:
    source = Provenance.from_environment(
        {"CI_COMMIT_SHA": "", "CI_MERGE_REQUEST_IID": "3", "CI_PIPELINE_URL": "  "}
    )
    assert source == Provenance()
    assert source.annotations() == {}


def test_defaults_to_the_process_environment(monkeypatch: object) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setenv("CI_COMMIT_SHA", "feedface")
    monkeypatch.delenv("CI_COMMIT_REF_NAME", raising=False)
    assert Provenance.from_environment().commit == "feedface"
