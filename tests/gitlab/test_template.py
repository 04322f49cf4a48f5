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


def test_jobs_and_their_rules():
    config = render({"job-prefix": "gw", "rollouts": "chat-gpt4o-nov"})
    assert sorted(n for n in config if not n.startswith(".")) == [
        "gw-apply",
        "gw-apply-skipped",
        "gw-plan",
        "gw-rollout-abort",
        "gw-rollout-advance",
        "gw-rollout-promote",
        "gw-validate",
    ]
    assert config[".gw-base"]["variables"]["GATEWAYCTL_ROLLOUTS"] == "chat-gpt4o-nov"
    mr = '$CI_PIPELINE_SOURCE == "merge_request_event"'
    assert config["gw-plan"]["rules"][0] == {"if": mr}
    assert "$GATEWAYCTL_PLAN_KUBECONFIG" in config["gw-plan"]["rules"][1]["if"]
    assert config["gw-apply-skipped"]["rules"][0] == {
        "if": "$GATEWAYCTL_PLAN_KUBECONFIG", "when": "never"}


def test_merge_request_jobs_declare_no_environment():
    """An environment on a merge-request job would hand it environment-scoped variables."""
    config = render({"rollouts": "r"})
    for name in ("gatewayctl-validate", "gatewayctl-plan"):
        assert "environment" not in config[name], name
        assert "GATEWAYCTL_APPLY_KUBECONFIG" not in " ".join(config[name]["script"])
        assert "GATEWAYCTL_ROLLOUT_TOKEN" not in " ".join(config[name]["script"])


def test_apply_and_rollout_jobs_are_not_interruptible():
    config = render({"rollouts": "r"})
    for name in ("apply", "rollout-advance"):
        assert config[f"gatewayctl-{name}"]["interruptible"] is False
    assert config[".gatewayctl-rollout"]["interruptible"] is False
    for name in ("validate", "plan"):
        assert config[f"gatewayctl-{name}"]["interruptible"] is True


def test_reports_environment_resource_group_and_artifacts():
    config = render(
        {"gateway": "ai-gateway", "environment": "staging", "deployment-tier": "staging",
         "root": "gateway"}
    )
    validate, plan, apply = (config[f"gatewayctl-{j}"] for j in ("validate", "plan", "apply"))
    assert validate["artifacts"]["reports"] == {
        "codequality": "gl-code-quality-report.json",
        "junit": ["gatewayctl-junit.xml", "gatewayctl-test-junit.xml"],
    }
    assert any(line.startswith("gatewayctl test ") for line in validate["script"])
    assert validate["artifacts"]["when"] == "always"
    assert plan["artifacts"]["paths"] == ["plan.json", "plan.md"]
    assert plan["artifacts"]["when"] == "on_success"
    assert apply["resource_group"] == "gatewayctl-ai-gateway-staging"
    assert config["gatewayctl-rollout-advance"]["resource_group"] == apply["resource_group"]
    assert apply["environment"] == {
        "name": "staging",
        "url": "$GATEWAYCTL_ENVIRONMENT_URL",
        "action": "start",
    }
    assert apply["extends"] == [".gatewayctl-base", ".gatewayctl-tier-staging"]
    assert config[".gatewayctl-tier-staging"]["environment"] == {"deployment_tier": "staging"}
    assert apply["needs"] == [{"job": "gatewayctl-plan", "artifacts": True}]
    advance = config["gatewayctl-rollout-advance"]
    assert advance["artifacts"]["paths"] == ["gatewayctl-analysis/"]
    assert advance["environment"] == {"name": "staging", "action": "prepare"}


def test_the_template_pins_the_gatewayctl_version_it_belongs_to():
    """The default version and image are this release's: bump them with pyproject's version."""
    import tomllib

    from tests.conftest import REPO

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    header, _ = documents()
    inputs = yaml.safe_load(header)["spec"]["inputs"]
    assert inputs["version"]["default"] == version
    assert inputs["image"]["default"] == f"$CI_REGISTRY/platform/gatewayctl:{version}"
    assert re.fullmatch(inputs["image"]["regex"], "registry.example.com/gatewayctl@sha256:" +
                        "0" * 64)
    assert not re.fullmatch(inputs["image"]["regex"], "registry.example.com/gatewayctl")
    config = render({})
    install = " ".join(config[".gatewayctl-base"]["before_script"])
    assert '"gatewayctl==$GATEWAYCTL_VERSION"' in install
    assert "--index-url \"$CI_API_V4_URL/projects/$project_id/packages/pypi/simple\"" in install


def test_every_deployment_tier_option_has_its_hidden_job():
    header, _ = documents()
    options = yaml.safe_load(header)["spec"]["inputs"]["deployment-tier"]["options"]
    config = render({})
    assert sorted(options) == sorted(
        n.removeprefix(".gatewayctl-tier-") for n in config if n.startswith(".gatewayctl-tier-")
    )


def test_code_quality_fingerprints_differ_between_two_roots(tmp_path):
    """Two roots with the same problem are two findings: GitLab merges equal fingerprints."""
    import json
    import shutil

    from tests.conftest import REPO

    case = REPO / "tests" / "validate" / "cases" / "weights-not-100.yaml"
    reports = []
    for name in ("eu", "us"):
        root = tmp_path / name
        root.mkdir()
        shutil.copy(case, root / "routes.yaml")
        report = tmp_path / f"{name}.json"
        subprocess.run([sys.executable, "-m", "gatewayctl", "validate", name, "--report",
                        f"codequality={report}"], cwd=tmp_path, capture_output=True,
                       timeout=120)
        reports.append(json.loads(report.read_text()))
    (eu,), (us,) = reports
    assert (eu["check_name"], us["check_name"]) == ("GW204", "GW204")
    assert (eu["location"]["path"], us["location"]["path"]) == ("eu/routes.yaml",
                                                                "us/routes.yaml")
    assert eu["fingerprint"] != us["fingerprint"]


def documented_roles() -> dict[str, dict[str, set[str]]]:
    """docs/gitlab-workflow.md's Roles: name -> resource -> verbs."""
    from tests.conftest import REPO

    doc = (REPO / "docs" / "gitlab-workflow.md").read_text()
    blocks = re.findall(r"```yaml\n(apiVersion: rbac.authorization.k8s.io/v1\n.*?)```", doc,
                        re.S)
    roles: dict[str, dict[str, set[str]]] = {}
    for role in (r for block in blocks for r in yaml.safe_load_all(block)):
        grants = roles.setdefault(role["metadata"]["name"], {})
        for rule in role["rules"]:
            for resource in rule["resources"]:
                grants.setdefault(resource, set()).update(rule["verbs"])
    return roles


def test_the_documented_roles_cover_every_kind_gatewayctl_owns():
    """Plan: get and list only; apply: the writes of server-side apply and prune, and the
    Lease that serialises applies. A kind added to gatewayctl must be added to the Roles."""
    from gatewayctl.targets.kubernetes.kinds import LEASE, PRUNABLE_KINDS

    roles = documented_roles()
    owned = {k.plural for k in PRUNABLE_KINDS}
    assert roles["gatewayctl-plan"] == {plural: {"get", "list"} for plural in owned}
    apply = roles["gatewayctl-apply"]
    assert {p: v for p, v in apply.items() if p != LEASE.plural} == {
        plural: {"get", "list", "create", "patch", "delete"} for plural in owned}
    assert apply[LEASE.plural] == {"get", "create", "update", "delete"}
