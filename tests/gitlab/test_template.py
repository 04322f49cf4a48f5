"""The reusable pipeline: valid against GitLab CI's schema, and complete.

check-jsonschema reads one YAML document per file, and a file with a `spec:` header is two
documents (header, `---`, jobs), so each document is checked on its own.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "gatewayctl.gitlab-ci.yml"


def documents() -> tuple[str, str]:
    header, jobs = re.split(r"(?m)^---\n", TEMPLATE.read_text(), maxsplit=1)
    return header, jobs


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.gitlab-ci",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_file_is_a_spec_header_and_the_jobs():
    loaded = list(yaml.safe_load_all(TEMPLATE.read_text()))
    assert len(loaded) == 2
    assert list(loaded[0]) == ["spec"]


@pytest.mark.parametrize("part", ["header", "jobs"])
def test_each_document_passes_the_gitlab_ci_schema(tmp_path, part):
    text = dict(zip(["header", "jobs"], documents(), strict=True))[part]
    path = tmp_path / f"{part}.gitlab-ci.yml"
    path.write_text(text)
    result = check_jsonschema(path)
    assert (result.returncode, result.stdout.strip()) == (0, "ok -- validation done"), (
        result.stdout + result.stderr
    )


def render(inputs: dict[str, str]) -> dict[str, Any]:
    """The jobs as GitLab builds them: the inputs' defaults, overridden, interpolated."""
    header, jobs = documents()
    spec = yaml.safe_load(header)["spec"]["inputs"]
    values = {name: str(decl.get("default", "")) for name, decl in spec.items()} | inputs
    used = set(re.findall(r"\$\[\[ inputs\.([a-z0-9-]+) \]\]", jobs))
    assert used <= set(spec), f"undeclared inputs: {used - set(spec)}"
    assert set(spec) <= used, f"unused inputs: {set(spec) - used}"
    text = re.sub(r"\$\[\[ inputs\.([a-z0-9-]+) \]\]", lambda m: values[m.group(1)], jobs)
    return yaml.safe_load(text)


def test_the_rendered_jobs_pass_the_schema(tmp_path):
    path = tmp_path / "rendered.gitlab-ci.yml"
    path.write_text(yaml.safe_dump(render({"environment-url": "https://ai.example.com"})))
    result = check_jsonschema(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_jobs_run_the_documented_commands():
    config = render({"job-prefix": "gw", "rollout": "chat-gpt4o-nov"})
    scripts = {name: " ".join(job.get("script", [])) for name, job in config.items()}
    assert sorted(n for n in config if not n.startswith(".")) == [
        "gw-apply",
        "gw-plan",
        "gw-rollout-abort",
        "gw-rollout-advance",
        "gw-rollout-promote",
        "gw-validate",
    ]
    assert scripts["gw-validate"] == (
        'gatewayctl validate "$GATEWAYCTL_ROOT" --report codequality=gl-code-quality-report.json '
        "--report junit=gatewayctl-junit.xml"
    )
    assert scripts["gw-plan"].startswith(
        'gatewayctl plan "$GATEWAYCTL_ROOT" --live "$GATEWAYCTL_LIVE"'
    )
    assert "--out plan.json" in scripts["gw-plan"]
    assert "${CI_MERGE_REQUEST_IID:+--gitlab-comment}" in scripts["gw-plan"]
    assert scripts["gw-apply"].startswith('gatewayctl apply plan.json --live "$GATEWAYCTL_LIVE"')
    assert scripts["gw-rollout-advance"] == (
        'gatewayctl rollout advance "$GATEWAYCTL_ROLLOUT" --root "$GATEWAYCTL_ROOT" --merge-request'
    )
    assert config[".gw-base"]["variables"]["GATEWAYCTL_ROLLOUT"] == "chat-gpt4o-nov"


def test_reports_environment_resource_group_and_rules():
    config = render(
        {"gateway": "ai-gateway", "environment": "staging", "deployment-tier": "staging"}
    )
    validate, plan, apply = (config[f"gatewayctl-{j}"] for j in ("validate", "plan", "apply"))
    assert validate["artifacts"]["reports"] == {
        "codequality": "gl-code-quality-report.json",
        "junit": "gatewayctl-junit.xml",
    }
    assert validate["artifacts"]["when"] == "always"
    assert plan["artifacts"]["paths"] == ["plan.json", "plan.md"]
    assert plan["environment"] == {"name": "staging", "action": "prepare"}
    assert apply["resource_group"] == "gatewayctl-ai-gateway-staging"
    assert apply["environment"] == {
        "name": "staging",
        "url": "$GATEWAYCTL_ENVIRONMENT_URL",
        "action": "start",
    }
    assert apply["extends"] == [".gatewayctl-base", ".gatewayctl-tier-staging"]
    assert config[".gatewayctl-tier-staging"]["environment"] == {"deployment_tier": "staging"}
    assert apply["needs"] == [{"job": "gatewayctl-plan", "artifacts": True}]
    assert apply["rules"] == [
        {"if": '$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH && $CI_PIPELINE_SOURCE != "schedule"'}
    ]
    assert config["gatewayctl-rollout-promote"]["rules"][0]["when"] == "manual"
    assert config["gatewayctl-rollout-advance"]["rules"] == [
        {
            "if": '$GATEWAYCTL_ROLLOUT && $CI_PIPELINE_SOURCE == "schedule" && '
            "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"
        }
    ]


def test_every_deployment_tier_option_has_its_hidden_job():
    header, _ = documents()
    options = yaml.safe_load(header)["spec"]["inputs"]["deployment-tier"]["options"]
    config = render({})
    assert sorted(options) == sorted(
        n.removeprefix(".gatewayctl-tier-") for n in config if n.startswith(".gatewayctl-tier-")
    )
