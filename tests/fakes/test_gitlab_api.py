"""The local GitLab API server answers as GitLab documents: bodies, statuses, headers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.fakes.gitlab_api import (
    DEVELOPER_TOKEN,
    JOB_TOKEN,
    READ_API_TOKEN,
    REPORTER_TOKEN,
    GitLabAPIServer,
)

AUTH = {"PRIVATE-TOKEN": DEVELOPER_TOKEN}


@pytest.fixture
def gl() -> Iterator[GitLabAPIServer]:
    with GitLabAPIServer(note_max_chars=50) as srv:
        project = srv.add_project("platform/gateway-config", files={"a.yaml": "a: 1\n"})
        srv.add_merge_request(project.id, source_branch="feature")
        yield srv


def call(gl: GitLabAPIServer, method: str, path: str, headers=AUTH, **kw) -> requests.Response:
    return requests.request(method, gl.api_url + path, headers=headers, timeout=5, **kw)


def test_user_version_and_project_by_id_or_encoded_path(gl):
    assert call(gl, "GET", "/user").json()["username"] == "gatewayctl-bot"
    assert call(gl, "GET", "/version").json() == {"version": "17.5.0", "revision": "0123abcd"}
    by_id = call(gl, "GET", "/projects/1").json()
    by_path = call(gl, "GET", "/projects/platform%2Fgateway-config").json()
    assert by_id == by_path
    assert (by_id["path_with_namespace"], by_id["default_branch"]) == (
        "platform/gateway-config",
        "main",
    )


@pytest.mark.parametrize(
    "headers",
    [{}, {"PRIVATE-TOKEN": "nope"}, {"JOB-TOKEN": DEVELOPER_TOKEN}, {"PRIVATE-TOKEN": JOB_TOKEN}],
)
def test_missing_or_wrong_token_is_401(gl, headers):
    response = call(gl, "GET", "/projects/1", headers=headers)
    assert (response.status_code, response.json()) == (401, {"message": "401 Unauthorized"})


def test_every_token_header_is_accepted(gl):
    for headers in (
        {"PRIVATE-TOKEN": DEVELOPER_TOKEN},
        {"JOB-TOKEN": JOB_TOKEN},
        {"Authorization": f"Bearer {DEVELOPER_TOKEN}"},
    ):
        assert call(gl, "GET", "/projects/1", headers=headers).status_code == 200
    assert [r.auth_header for r in gl.requests] == ["PRIVATE-TOKEN", "JOB-TOKEN", "Authorization"]


def test_permissions_403(gl):
    body = {"source_branch": "feature", "target_branch": "main", "title": "t"}
    reporter = call(
        gl, "POST", "/projects/1/merge_requests", {"PRIVATE-TOKEN": REPORTER_TOKEN}, json=body
    )
    assert (reporter.status_code, reporter.json()) == (403, {"message": "403 Forbidden"})
    reader = call(
        gl,
        "POST",
        "/projects/1/merge_requests/1/notes",
        {"PRIVATE-TOKEN": READ_API_TOKEN},
        json={"body": "x"},
    )
    assert reader.status_code == 403
    assert reader.json()["error"] == "insufficient_scope"


def test_404_bodies(gl):
    assert call(gl, "GET", "/projects/9").json() == {"message": "404 Project Not Found"}
    assert call(gl, "GET", "/projects/1/merge_requests/9").json() == {"message": "404 Not found"}
    missing = call(gl, "GET", "/projects/1/repository/branches/nope")
    assert (missing.status_code, missing.json()) == (404, {"message": "404 Branch Not Found"})
    assert call(gl, "GET", "/projects/1/repository/files/b.yaml/raw").json() == {
        "message": "404 File Not Found"
    }
    assert call(gl, "GET", "/nothing").json() == {"error": "404 Not Found"}


def test_notes_pagination_headers(gl):
    for i in range(5):
        gl.add_note(1, 1, f"n{i}")
    response = call(
        gl,
        "GET",
        "/projects/1/merge_requests/1/notes",
        params={"page": 2, "per_page": 2, "sort": "asc"},
    )
    assert [n["body"] for n in response.json()] == ["n2", "n3"]
    base = f"{gl.api_url}/projects/1/merge_requests/1/notes"
    headers = {
        k: response.headers[k]
        for k in ("X-Page", "X-Per-Page", "X-Next-Page", "X-Prev-Page", "X-Total", "X-Total-Pages")
    }
    assert headers == {
        "X-Page": "2",
        "X-Per-Page": "2",
        "X-Next-Page": "3",
        "X-Prev-Page": "1",
        "X-Total": "5",
        "X-Total-Pages": "3",
    }
    assert response.headers["Link"] == (
        f'<{base}?page=1&per_page=2&sort=asc>; rel="prev", '
        f'<{base}?page=3&per_page=2&sort=asc>; rel="next", '
        f'<{base}?page=1&per_page=2&sort=asc>; rel="first", '
        f'<{base}?page=3&per_page=2&sort=asc>; rel="last"'
    )
    last = call(gl, "GET", "/projects/1/merge_requests/1/notes", params={"page": 3, "per_page": 2})
    assert last.headers["X-Next-Page"] == ""
    newest_first = call(gl, "GET", "/projects/1/merge_requests/1/notes").json()
    assert [n["body"] for n in newest_first] == ["n4", "n3", "n2", "n1", "n0"]


def test_note_crud_and_size_limit(gl):
    created = call(gl, "POST", "/projects/1/merge_requests/1/notes", json={"body": "hi"})
    assert created.status_code == 201
    nid = created.json()["id"]
    path = f"/projects/1/merge_requests/1/notes/{nid}"
    assert call(gl, "PUT", path, json={"body": "edited"}).json()["body"] == "edited"
    assert call(gl, "GET", path).json()["body"] == "edited"
    too_long = call(gl, "PUT", path, json={"body": "x" * 51})
    assert (too_long.status_code, too_long.json()) == (
        400,
        {"message": {"note": ["is too long (maximum is 50 characters)"]}},
    )
    missing = call(gl, "POST", "/projects/1/merge_requests/1/notes", json={})
    assert (missing.status_code, missing.json()) == (400, {"error": "body is missing"})
    assert call(gl, "DELETE", path).status_code == 204
    assert gl.notes(1, 1) == []


def test_merge_request_create_conflict_and_update(gl):
    body = {"source_branch": "nope", "target_branch": "main", "title": "t"}
    bad = call(gl, "POST", "/projects/1/merge_requests", json=body)
    assert (bad.status_code, bad.json()) == (
        400,
        {"message": {"source_branch": ["does not exist"]}},
    )
    body["source_branch"] = "feature"
    conflict = call(gl, "POST", "/projects/1/merge_requests", json=body)
    assert (conflict.status_code, conflict.json()) == (
        409,
        {"message": ["Another open merge request already exists for this source branch: !1"]},
    )
    listed = call(
        gl,
        "GET",
        "/projects/1/merge_requests",
        params={"source_branch": "feature", "state": "opened"},
    ).json()
    assert [m["iid"] for m in listed] == [1]
    updated = call(gl, "PUT", "/projects/1/merge_requests/1", json={"title": "new"}).json()
    assert updated["title"] == "new"


def test_branches_commits_and_raw_files(gl):
    created = call(
        gl, "POST", "/projects/1/repository/branches", json={"branch": "work", "ref": "main"}
    )
    assert created.status_code == 201
    again = call(
        gl, "POST", "/projects/1/repository/branches", json={"branch": "work", "ref": "main"}
    )
    assert (again.status_code, again.json()) == (400, {"message": "Branch already exists"})
    commit = call(
        gl,
        "POST",
        "/projects/1/repository/commits",
        json={
            "branch": "work",
            "commit_message": "edit",
            "actions": [
                {"action": "update", "file_path": "a.yaml", "content": "a: 2\n"},
                {"action": "create", "file_path": "dir/b.yaml", "content": "b: 1\n"},
            ],
        },
    )
    assert commit.status_code == 201
    raw = call(gl, "GET", "/projects/1/repository/files/dir%2Fb.yaml/raw", params={"ref": "work"})
    assert (raw.status_code, raw.text) == (200, "b: 1\n")
    assert call(gl, "GET", "/projects/1/repository/files/a.yaml/raw").text == "a: 1\n"
    dup = call(
        gl,
        "POST",
        "/projects/1/repository/commits",
        json={
            "branch": "work",
            "commit_message": "again",
            "actions": [{"action": "create", "file_path": "a.yaml", "content": ""}],
        },
    )
    assert (dup.status_code, dup.json()) == (
        400,
        {"message": "A file with this name already exists"},
    )


def test_faults_answer_the_next_matching_requests_then_stop(gl):
    gl.inject_fault(429, times=2, method="GET", path=r"/notes$", retry_after=7)
    statuses = []
    for _ in range(3):
        response = call(gl, "GET", "/projects/1/merge_requests/1/notes")
        statuses.append((response.status_code, response.headers.get("Retry-After")))
    assert statuses == [(429, "7"), (429, "7"), (200, None)]
    assert call(gl, "GET", "/projects/1").status_code == 200


def test_a_hanging_fault_stalls_until_the_client_gives_up(gl):
    gl.inject_fault(hang=2.0)
    with pytest.raises(requests.Timeout):
        requests.get(gl.api_url + "/projects/1", headers=AUTH, timeout=0.2)
