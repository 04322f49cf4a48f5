"""The plan/apply/gitlab commands: exit codes, output formats, the merge-request note."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayctl.commands.plan import parse_duration
from gatewayctl.errors import UsageError
from tests.fakes.gitlab_api import DEVELOPER_TOKEN, GitLabAPIServer
from tests.plan.conftest import Cli, edit, set_rollout_step


@pytest.fixture
def gitlab() -> Iterator[GitLabAPIServer]:
    with GitLabAPIServer() as server:
        project = server.add_project("platform/gateway-config")
        server.add_merge_request(project.id, source_branch="feature")
        yield server


def ci_env(server: GitLabAPIServer) -> dict[str, str]:
    return {"CI_API_V4_URL": server.api_url, "CI_SERVER_URL": server.url,
            "CI_PROJECT_ID": "1", "CI_PROJECT_PATH": "platform/gateway-config",
            "CI_MERGE_REQUEST_IID": "1", "GITLAB_TOKEN": DEVELOPER_TOKEN,
            "CI_JOB_URL": f"{server.url}/platform/gateway-config/-/jobs/5"}


def test_markdown_plan_with_gitlab_comment_keeps_stdout_clean(
    cli: Cli, root: Path, tmp_path: Path, gitlab: GitLabAPIServer
) -> None:
    out = tmp_path / "bundle"
    assert cli("apply", str(root), "--live", f"dir:{out}", "--auto-approve").exit_code == 0
    set_rollout_step(root, 2)

    result = cli("plan", str(root), "--live", f"dir:{out}", "-o", "markdown",
                 "--gitlab-comment", "--detailed-exitcode", env=ci_env(gitlab))

    assert result.exit_code == 2, result.output
    assert result.stdout.startswith("### gatewayctl plan: `ai-gateway`")
    assert "Posted the plan on merge request !1" in result.stderr
    (note,) = gitlab.notes(1, 1)
    assert "| `~` | Route `chat` |" in note["body"]


def test_gitlab_comment_failure_warns_unless_required(
    cli: Cli, root: Path, tmp_path: Path
) -> None:
    saved = tmp_path / "plan.json"
    assert cli("plan", str(root), "--live", f"dir:{tmp_path / 'b'}", "--out",
               str(saved)).exit_code == 0
    no_ci = {"CI_MERGE_REQUEST_IID": "", "CI_API_V4_URL": "", "CI_PROJECT_ID": ""}

    soft = cli("gitlab", "comment", "--plan", str(saved), env=no_ci)
    hard = cli("gitlab", "comment", "--plan", str(saved), "--require", env=no_ci)

    assert soft.exit_code == 0 and soft.stderr.startswith("warning: the plan was not posted")
    assert hard.exit_code == 1 and hard.stderr.startswith("error: could not post the plan")


def test_gitlab_comment_posts_a_saved_plan(
    cli: Cli, root: Path, tmp_path: Path, gitlab: GitLabAPIServer
) -> None:
    saved = tmp_path / "plan.json"
    assert cli("plan", str(root), "--live", f"dir:{tmp_path / 'b'}", "--out",
               str(saved)).exit_code == 0

    result = cli("gitlab", "comment", "--plan", str(saved), env=ci_env(gitlab))

    assert result.exit_code == 0, result.output
    assert "### gatewayctl plan" in gitlab.notes(1, 1)[0]["body"]


def test_json_output_has_a_format_version_and_no_desired_state(
    cli: Cli, root: Path, tmp_path: Path
) -> None:
    result = cli("plan", str(root), "--live", f"dir:{tmp_path / 'empty'}", "-o", "json")

    data = json.loads(result.stdout)
    assert data["format_version"] == "2.0"
    assert "desired" not in data
    assert data["target"]["fingerprint"].startswith("sha256:")


def test_bad_options_are_one_clear_message(cli: Cli, root: Path) -> None:
    unknown_live = cli("plan", str(root), "--live", "s3:bucket")
    bad_output = cli("plan", str(root), "--live", "local", "-o", "yaml")
    missing_root = cli("plan", "/nonexistent/root", "--live", "local")

    assert unknown_live.exit_code == 1
    assert 'unknown live target "s3:bucket"' in unknown_live.stderr
    assert "kubernetes, dir:PATH, git:REF, local" in unknown_live.stderr
    assert bad_output.exit_code == 1 and 'unknown output format "yaml"' in bad_output.stderr
    assert missing_root.exit_code == 1 and "does not exist" in missing_root.stderr


@pytest.mark.parametrize("command", ["plan", "apply"])
@pytest.mark.parametrize("live", ["dir:", "git:", " dir: "])
def test_a_live_kind_without_its_path_or_ref_is_unknown(
    cli: Cli, root: Path, command: str, live: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`dir:` was read as the current folder (apply wrote a bundle there), `git:` as an
    empty ref."""
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    approve = ["--auto-approve"] if command == "apply" else []
    result = cli(command, str(root), "--live", live, *approve)

    assert result.exit_code == 1
    assert result.stderr.startswith(f'error: unknown live target "{live.strip()}"\n'), (
        result.stderr)
    assert "kubernetes, dir:PATH, git:REF, local" in result.stderr
    assert not list((tmp_path / "elsewhere").iterdir())


def test_manifest_errors_stop_the_plan(cli: Cli, root: Path, tmp_path: Path) -> None:
    (root / "routes.yaml").write_text((root / "routes.yaml").read_text()
                                      .replace("model: gpt-4o-mini", "model: gpt-5"))

    result = cli("plan", str(root), "--live", f"dir:{tmp_path / 'x'}")

    assert result.exit_code == 1
    assert "gpt-5" in result.stderr


def test_durations() -> None:
    assert parse_duration("5m") == 300
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90") == 90
    with pytest.raises(UsageError):
        parse_duration("five minutes")


def test_json_plan_of_bad_manifests_prints_json_diagnostics(
    cli: Cli, root: Path, tmp_path: Path
) -> None:
    (root / "routes.yaml").write_text((root / "routes.yaml").read_text()
                                      .replace("model: gpt-4o-mini", "model: gpt-5"))

    result = cli("plan", str(root), "--live", f"dir:{tmp_path / 'x'}", "-o", "json")

    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["valid"] is False and data["errors"] >= 1
    (found,) = [d for d in data["diagnostics"] if "gpt-5" in d["message"]]
    assert found["severity"] == "error" and found["line"] > 0
    assert found["path"].endswith("routes.yaml")


def test_the_merge_request_note_carries_the_traffic_cost(
    cli: Cli, root: Path, tmp_path: Path, gitlab: GitLabAPIServer
) -> None:
    """`plan --traffic ... --gitlab-comment`: the note is the plan and the cost section. The
    Prometheus here is the query API's stand-in; the counting and pricing against a real
    Prometheus scraping a real Envoy are tests/rollout/test_plan_traffic*.py."""
    from tests.rollout.fake_prometheus import FakePrometheus

    out = tmp_path / "bundle"
    assert cli("apply", str(root), "--live", f"dir:{out}", "--auto-approve").exit_code == 0
    edit(root, "policies.yaml", "usdPerMonth: 500", "usdPerMonth: 100")
    labels = {"consumer": "search-app", "route": "chat", "model": "gpt-4o-2024-08-06"}
    with FakePrometheus() as prom:
        prom.add("envoy_server_live", {}, [(1, 1), (2, 1)])
        # a week: 10,000 requests, 5M prompt and 2M completion tokens = $32.50 at $2.50/$10
        for kind, total in (("requests", 10_000), ("prompt_tokens", 5_000_000),
                            ("completion_tokens", 2_000_000)):
            prom.add(f"envoy_gatewayctl_consumer_{kind}", labels, [(1, 0), (2, total)])
        result = cli("plan", str(root), "--live", f"dir:{out}", "-o", "markdown",
                     "--traffic", f"prometheus={prom.url}", "--window", "7d",
                     "--gitlab-comment", env=ci_env(gitlab))
    assert result.exit_code == 0, result.output
    (note,) = gitlab.notes(1, 1)
    month = 32.5 * 30 / 7  # $139.29; the $100 budget lasts 100 / (month / 30) = 21.5 days
    assert "### Cost from measured traffic" in note["body"]
    assert f"${month:,.2f}" in note["body"]
    assert "**Budgets this change would exhaust:** search-app on day 22" in note["body"]
    # the note shows what the job's markdown output shows
    section = result.stdout[result.stdout.index("### Cost from measured traffic"):]
    assert section.strip() in note["body"]


def test_plan_traffic_errors_name_the_flag(cli: Cli, root: Path, tmp_path: Path) -> None:
    from gatewayctl.local.process import free_port

    live = ["plan", str(root), "--live", f"dir:{tmp_path / 'b'}"]
    closed = cli(*live, "--traffic", f"prometheus=http://127.0.0.1:{free_port()}")
    assert closed.exit_code == 1
    assert "cannot reach Prometheus" in closed.stderr
    assert "check --traffic prometheus=URL" in closed.stderr
    for args, said in ((["--traffic", "graphite=x"], 'invalid --traffic "graphite=x"'),
                       (["--traffic", "prometheus=http://p", "--window", "7"],
                        'invalid --window: "7" is not a duration'),
                       (["--traffic", "prometheus=http://p", "--window", "30s"],
                        "at least a minute")):
        result = cli(*live, *args)
        assert result.exit_code == 1 and said in result.stderr, result.stderr
    assert not (tmp_path / "b").exists()
