"""The plan note, with python-gitlab over real HTTP against the local GitLab API server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from gatewayctl.gitlab.client import GitLabContext, RetryPolicy
from gatewayctl.gitlab.errors import GitLabAuthError, GitLabNotFound, GitLabUnavailable
from gatewayctl.gitlab.notes import compose_note_body, plan_marker_key, upsert_plan_note
from tests.fakes.gitlab_api import (
    DEVELOPER_TOKEN,
    READ_API_TOKEN,
    REPORTER_TOKEN,
    GitLabAPIServer,
    Project,
)

FAST = RetryPolicy(attempts=3, backoff=0.0, max_delay=0.05)
PROD = plan_marker_key("ai-gateway", "production")
MARKER = "<!-- gatewayctl:plan gateway=ai-gateway env=production -->"


@pytest.fixture
def server() -> Iterator[GitLabAPIServer]:
    with GitLabAPIServer(note_max_chars=2_000) as srv:
        yield srv


@pytest.fixture
def project(server: GitLabAPIServer) -> Project:
    project = server.add_project("platform/gateway-config")
    server.add_merge_request(project.id, source_branch="feature", title="Raise chat limits")
    return project


def context(server: GitLabAPIServer, project: Project, **changes: object) -> GitLabContext:
    ctx = GitLabContext(
        api_url=server.api_url,
        project=project.path_with_namespace,
        token=DEVELOPER_TOKEN,
        merge_request_iid=1,
        retry=FAST,
        note_max_chars=server.note_max_chars,
    )
    return replace(ctx, **changes)  # type: ignore[arg-type]


def test_first_pipeline_creates_the_note_and_the_second_updates_it(server, project):
    ctx = context(server, project)
    first = upsert_plan_note(ctx, "# Plan\n\n~ route chat: weights 90/10\n", PROD)
    second = upsert_plan_note(ctx, "# Plan\n\n~ route chat: weights 75/25\n", PROD)

    notes = server.notes(project.id, 1)
    assert [n["id"] for n in notes] == [first.note_id]
    assert (first.action, second.action) == ("created", "updated")
    assert second.note_id == first.note_id
    assert notes[0]["body"] == f"{MARKER}\n# Plan\n\n~ route chat: weights 75/25\n"
    assert (
        second.url
        == f"{server.url}/platform/gateway-config/-/merge_requests/1#note_{first.note_id}"
    )
    assert second.truncated is False


def test_an_identical_plan_leaves_the_note_untouched(server, project):
    ctx = context(server, project)
    upsert_plan_note(ctx, "# Plan\nno changes\n", PROD)
    again = upsert_plan_note(ctx, "# Plan\nno changes\n", PROD)

    assert again.action == "unchanged"
    assert server.requests_to("PUT", r"/notes/") == []


def test_two_gateways_keep_two_notes(server, project):
    ctx = context(server, project)
    upsert_plan_note(ctx, "plan A\n", plan_marker_key("ai-gateway", "production"))
    upsert_plan_note(ctx, "plan B\n", plan_marker_key("ai-gateway-eu", "production"))
    upsert_plan_note(ctx, "plan A2\n", plan_marker_key("ai-gateway", "production"))

    bodies = [n["body"] for n in server.notes(project.id, 1)]
    assert bodies == [
        f"{MARKER}\nplan A2\n",
        "<!-- gatewayctl:plan gateway=ai-gateway-eu env=production -->\nplan B\n",
    ]


def test_a_quoted_marker_or_a_system_note_is_not_the_plan_note(server, project):
    # a reviewer quoting the marker inside a line, and a system note carrying it, come first
    server.add_note(project.id, 1, f"quote: {MARKER} end", author="reviewer")
    server.add_note(project.id, 1, f"{MARKER}\nsystem", author="gatewayctl-bot", system=True)

    result = upsert_plan_note(context(server, project), "new plan\n", PROD)

    assert (result.action, result.note_id) == ("created", 3)
    assert [n["body"] for n in server.notes(project.id, 1)] == [
        f"quote: {MARKER} end",
        f"{MARKER}\nsystem",
        f"{MARKER}\nnew plan\n",
    ]


def test_search_follows_pagination_to_page_three(server, project):
    for i in range(230):
        server.add_note(project.id, 1, f"comment {i}", author="reviewer")
    server.add_note(project.id, 1, f"{MARKER}\nold plan\n", author="gatewayctl-bot")
    server.requests.clear()

    result = upsert_plan_note(context(server, project), "new plan\n", PROD)

    assert result.action == "updated"
    assert result.note_id == 231
    listing = server.requests_to("GET", r"/merge_requests/1/notes$")
    assert [(r.query["page"], r.query["per_page"], r.query["sort"]) for r in listing] == [
        ("1", "100", "asc"),
        ("2", "100", "asc"),
        ("3", "100", "asc"),
    ]
    assert len(server.notes(project.id, 1)) == 231


def test_an_oversized_plan_is_cut_at_a_line_and_links_the_artifact(server, project):
    url = f"{server.url}/platform/gateway-config/-/jobs/42/artifacts/file/plan.md"
    lines = [f"~ resource ConfigMap/ai-gateway-envoy line {i:04d}" for i in range(200)]
    plan = "# Plan\n```diff\n" + "\n".join(lines) + "\n```\n"

    result = upsert_plan_note(context(server, project), plan, PROD, artifact_url=url)

    body = server.notes(project.id, 1)[0]["body"]
    assert result.truncated is True
    assert len(body) <= 2_000
    assert body.startswith(f"{MARKER}\n# Plan\n```diff\n~ resource")
    kept = [line for line in body.splitlines() if line.startswith("~ resource")]
    assert all(line in lines for line in kept)  # whole lines only
    assert body.endswith(
        f"```\n\n---\n**This plan is too long for a GitLab comment** ({len(kept) + 2} of 203 "
        f"lines shown). See [the full plan]({url}).\n"
    )


def test_compose_keeps_a_plan_that_fits_unchanged():
    body, truncated = compose_note_body("# Plan\n", PROD, max_chars=1_000_000)
    assert (body, truncated) == (f"{MARKER}\n# Plan\n", False)


def test_api_outage_raises_unavailable_after_bounded_retries(server, project):
    server.inject_fault(500, times=10, path=r"/merge_requests/1$")

    with pytest.raises(GitLabUnavailable) as caught:
        upsert_plan_note(context(server, project), "plan\n", PROD)

    assert caught.value.status == 500
    assert caught.value.message == (
        "reading merge request !1 failed: GitLab answered 500 Internal Server Error "
        "(gave up after 3 attempts)"
    )
    assert len(server.requests_to("GET", r"/merge_requests/1$")) == 3
    assert server.notes(project.id, 1) == []


def test_429_with_retry_after_is_retried_after_the_wait(server, project):
    server.inject_fault(429, times=1, method="POST", path=r"/notes$", retry_after="0.3")
    ctx = context(server, project, retry=RetryPolicy(attempts=3, backoff=0.0, max_delay=1.0))

    result = upsert_plan_note(ctx, "plan\n", PROD)

    posts = server.requests_to("POST", r"/notes$")
    assert [r.status for r in posts] == [429, 201]
    # the retry re-reads the merge request first: the wait comes before that
    after = [r for r in server.requests if r.at > posts[0].at]
    assert after[0].at - posts[0].at >= 0.3
    assert result.action == "created"
    assert len(server.notes(project.id, 1)) == 1


def test_a_retried_write_never_posts_a_second_note(server, project):
    # the POST is applied, but the answer is lost: the retry must find the note, not add one
    ctx = context(server, project)
    upsert_plan_note(ctx, "plan v1\n", PROD)
    server.inject_fault(502, times=1, method="PUT")

    result = upsert_plan_note(ctx, "plan v2\n", PROD)

    assert result.action == "updated"
    assert [n["body"] for n in server.notes(project.id, 1)] == [f"{MARKER}\nplan v2\n"]


def test_a_wrong_token_is_an_auth_error_with_a_hint(server, project):
    with pytest.raises(GitLabAuthError) as caught:
        upsert_plan_note(context(server, project, token="glpat-wrong"), "plan\n", PROD)

    err = caught.value
    assert err.status == 401
    assert err.message == "reading merge request !1 failed: GitLab answered 401 Unauthorized"
    assert err.hint == (
        "GITLAB_TOKEN was rejected (wrong, expired or revoked); set GITLAB_TOKEN (a masked "
        "CI/CD variable) to a project or personal access token with the `api` scope"
    )
    assert "glpat-wrong" not in f"{err.message} {err.hint} {err!r}"


def test_a_read_api_token_is_forbidden_to_comment(server, project):
    with pytest.raises(GitLabAuthError) as caught:
        upsert_plan_note(context(server, project, token=READ_API_TOKEN), "plan\n", PROD)

    assert caught.value.status == 403
    assert caught.value.message == (
        "creating the plan note on merge request !1 failed: GitLab answered 403: "
        "insufficient_scope: The request requires higher privileges than provided by the "
        "access token."
    )
    assert "`api` scope" in (caught.value.hint or "")


def test_someone_elses_note_cannot_be_edited(server, project):
    server.add_note(project.id, 1, f"{MARKER}\nplan\n", author="reporter")

    with pytest.raises(GitLabAuthError) as caught:
        upsert_plan_note(context(server, project), "new plan\n", PROD)

    assert caught.value.status == 403
    assert caught.value.message == (
        "updating plan note 1 on merge request !1 failed: GitLab answered 403 Forbidden"
    )


def test_a_reporter_may_comment(server, project):
    result = upsert_plan_note(context(server, project, token=REPORTER_TOKEN), "plan\n", PROD)
    assert result.action == "created"


def test_a_missing_merge_request_is_not_found(server, project):
    with pytest.raises(GitLabNotFound) as caught:
        upsert_plan_note(context(server, project, merge_request_iid=99), "plan\n", PROD)

    assert caught.value.message == "reading merge request !99 failed: GitLab answered 404 Not found"
    assert caught.value.hint == (
        "check the project (platform/gateway-config) and merge request number; GitLab also "
        "answers 404 when GITLAB_TOKEN cannot see a private project"
    )


def test_a_project_the_token_cannot_see_is_not_found(server, project):
    server.add_token("glpat-other", "outsider", projects=set())
    with pytest.raises(GitLabNotFound) as caught:
        upsert_plan_note(context(server, project, token="glpat-other"), "plan\n", PROD)
    assert caught.value.message == (
        "reading merge request !1 failed: GitLab answered 404 Project Not Found"
    )


def test_the_job_token_is_sent_in_the_job_token_header_and_may_not_comment(server, project):
    """GitLab does not accept CI_JOB_TOKEN on the notes API: it is no way to post the plan."""
    from tests.fakes.gitlab_api import JOB_TOKEN

    with pytest.raises(GitLabAuthError) as caught:
        upsert_plan_note(context(server, project, token=JOB_TOKEN, token_kind="job"), "p\n",
                         PROD)
    assert caught.value.status == 401
    assert "CI_JOB_TOKEN may not call this API" in (caught.value.hint or "")
    assert {r.auth_header for r in server.requests} == {"JOB-TOKEN"}


def test_marker_keys():
    assert plan_marker_key("ai-gateway") == "gateway=ai-gateway"
    assert plan_marker_key("ai-gateway", "review/feature x") == (
        "gateway=ai-gateway env=review/feature%20x"
    )
    assert plan_marker_key("gw", "a--b") == "gateway=gw env=a-%2Db"


def test_retry_waits_honour_retry_after_up_to_the_cap():
    from gatewayctl.gitlab.client import parse_retry_after

    policy = RetryPolicy(attempts=4, backoff=1.0, max_delay=10.0)
    assert [policy.delay(n, None) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert policy.delay(1, 3.0) == 3.0
    assert policy.delay(1, 3600.0) == 10.0
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert parse_retry_after("soon") is None


def test_a_long_plan_keeps_its_tables_and_leaves_the_diffs_out():
    """Summarised, not just cut: the change tables stay, the folded diffs go first."""
    table = "| `~` | ConfigMap `gw/gw-config` | data changed |\n"
    diff = ("<details><summary>diff</summary>\n\n```diff\n" + "-a\n+b\n" * 4_000
            + "```\n\n</details>\n")
    plan = "### gatewayctl plan\n\n" + table + diff + "\n<sub>Live state fingerprint</sub>\n"

    body, truncated = compose_note_body(plan, PROD, max_chars=10_000, artifact_url="U")

    assert truncated and len(body) <= 10_000
    assert table in body and "<sub>Live state fingerprint</sub>" in body
    assert "<details" not in body and "-a\n+b" not in body
    assert body.endswith("(1 diff left out). See [the full plan](U).\n")


def test_no_line_of_a_note_is_longer_than_the_cap():
    from gatewayctl.gitlab.notes import MAX_LINE_CHARS

    plan = "### plan\n\n```diff\n-" + "x" * 30_417 + "\n+y\n```\n"

    body, truncated = compose_note_body(plan, PROD, max_chars=50_000)

    assert truncated
    assert max(len(line) for line in body.splitlines()) < MAX_LINE_CHARS + 60
    assert f"… ({30_418 - MAX_LINE_CHARS:,} more characters on this line)" in body
    assert "(1 long line cut)" in body
