"""A local, stateful GitLab REST v4 server for tests.

Serves the part of GitLab's documented API that gatewayctl uses (current user, version,
projects, merge requests and their notes, branches, commits with file actions, raw files) over
real HTTP on 127.0.0.1, with GitLab's status codes, error bodies and offset-pagination headers.
python-gitlab talks to it exactly as it talks to gitlab.com; nothing in the client is patched.

Owns the fake's state and its HTTP handling only; it knows nothing about gatewayctl.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from tests.fakes.http import HTTPFake

NOTE_MAX_CHARS = 1_000_000
DEVELOPER_TOKEN = "glpat-developer-token"
REPORTER_TOKEN = "glpat-reporter-token"
READ_API_TOKEN = "glpat-read-api-token"
JOB_TOKEN = "glcbt-job-token"
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_ROLES = {"guest": 10, "reporter": 20, "developer": 30, "maintainer": 40, "owner": 50}


class APIError(Exception):
    """A failure answered with GitLab's JSON error body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body


def not_found(what: str = "Not found") -> APIError:
    # GitLab: {"message": "404 Project Not Found"}, and "404 Not found" for a missing record
    return APIError(404, {"message": f"404 {what}"})


@dataclass
class Token:
    """One access token: which header carries it, whose it is, and what it may do."""

    value: str
    username: str
    role: str = "developer"
    scopes: frozenset[str] = frozenset({"api"})
    kind: str = "private"  # private (PRIVATE-TOKEN or Bearer) | job (JOB-TOKEN) | oauth (Bearer)
    projects: frozenset[int] | None = None  # None: every project


@dataclass
class Fault:
    """The next `times` requests matching method and path get this failure instead."""

    status: int = 500
    times: int = 1
    method: str | None = None
    path: str | None = None  # regular expression searched in the request path
    retry_after: str | None = None
    hang: float | None = None  # seconds to stall, then drop the connection without answering
    body: dict[str, Any] | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.times <= 0:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path is None or re.search(self.path, path) is not None


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    auth_header: str | None  # which header authenticated the request (never its value)
    status: int
    at: float  # time.monotonic() when the request arrived


@dataclass(frozen=True)
class PyPIFile:
    """One file of the project's PyPI package registry."""

    name: str  # the package name as uploaded
    version: str
    filename: str
    sha256: str
    data: bytes
    requires_python: str = ""


def normalize_package_name(name: str) -> str:
    """PEP 503: runs of -, _ and . become one -, lower case."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Project:
    id: int
    path_with_namespace: str
    default_branch: str
    web_url: str
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit sha
    commits: dict[str, dict[str, Any]] = field(default_factory=dict)  # sha -> commit
    trees: dict[str, dict[str, str]] = field(default_factory=dict)  # sha -> {path: text}
    merge_requests: dict[int, dict[str, Any]] = field(default_factory=dict)
    notes: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # mr iid -> notes
    pypi_files: dict[str, PyPIFile] = field(default_factory=dict)  # sha256 -> file

    def to_json(self) -> dict[str, Any]:
        namespace, _, path = self.path_with_namespace.rpartition("/")
        return {
            "id": self.id,
            "name": path,
            "path": path,
            "path_with_namespace": self.path_with_namespace,
            "namespace": {"full_path": namespace},
            "default_branch": self.default_branch,
            "web_url": self.web_url,
            "visibility": "private",
        }


class GitLabAPIServer(HTTPFake):
    """`with GitLabAPIServer() as gl:` serves the API at `gl.url` until the block ends."""

    def __init__(self, *, note_max_chars: int = NOTE_MAX_CHARS, version: str = "17.5.0") -> None:
        self.note_max_chars = note_max_chars
        self.version = version
        self.projects: dict[int, Project] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, Token] = {}
        self.faults: list[Fault] = []
        self.requests: list[RecordedRequest] = []
        self.lock = threading.RLock()
        self._ids: dict[str, int] = {}
        self._clock = 0
        self.add_token(DEVELOPER_TOKEN, "gatewayctl-bot", role="developer")
        self.add_token(REPORTER_TOKEN, "reporter", role="reporter")
        self.add_token(READ_API_TOKEN, "reader", role="developer", scopes={"read_api"})
        self.add_token(JOB_TOKEN, "gatewayctl-bot", role="developer", kind="job")

    # --- lifecycle ---------------------------------------------------------------------------

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v4"

    # --- state set-up and inspection ---------------------------------------------------------

    def add_token(
        self,
        value: str,
        username: str,
        *,
        role: str = "developer",
        scopes: set[str] | frozenset[str] = frozenset({"api"}),
        kind: str = "private",
        projects: set[int] | None = None,
    ) -> Token:
        with self.lock:
            self._user(username)
            token = Token(
                value,
                username,
                role,
                frozenset(scopes),
                kind,
                None if projects is None else frozenset(projects),
            )
            self.tokens[value] = token
            return token

    def add_project(
        self,
        path_with_namespace: str = "platform/gateway-config",
        *,
        default_branch: str = "main",
        files: dict[str, str] | None = None,
    ) -> Project:
        with self.lock:
            pid = self._next("project")
            base = self.url if self._served is not None else "http://gitlab.invalid"
            web_url = f"{base}/{path_with_namespace}"
            project = Project(pid, path_with_namespace, default_branch, web_url)
            self.projects[pid] = project
            sha = self._commit(project, None, dict(files or {}), "Initial commit", "root")
            project.branches[default_branch] = sha
            return project

    def add_branch(self, project_id: int, name: str, ref: str | None = None) -> str:
        with self.lock:
            project = self.projects[project_id]
            sha = project.branches[ref or project.default_branch]
            project.branches[name] = sha
            return sha

    def add_merge_request(
        self,
        project_id: int,
        *,
        source_branch: str = "feature",
        target_branch: str | None = None,
        title: str = "Change the gateway",
        description: str = "",
        author: str = "developer",
        state: str = "opened",
    ) -> dict[str, Any]:
        with self.lock:
            project = self.projects[project_id]
            if source_branch not in project.branches:
                self.add_branch(project_id, source_branch)
            return self._create_mr(
                project,
                {
                    "source_branch": source_branch,
                    "target_branch": target_branch or project.default_branch,
                    "title": title,
                    "description": description,
                },
                author,
                state,
            )

    def add_note(
        self,
        project_id: int,
        mr_iid: int,
        body: str,
        *,
        author: str = "developer",
        system: bool = False,
    ) -> dict[str, Any]:
        with self.lock:
            project = self.projects[project_id]
            return self._create_note(project, project.merge_requests[mr_iid], body, author, system)

    def merge(self, project_id: int, mr_iid: int, *, sha: str | None = None) -> str:
        """Merge the request into its target with a merge commit (as a person would); `sha`
        names that commit as a test's own Git repository has it."""
        with self.lock:
            project = self.projects[project_id]
            mr = project.merge_requests[mr_iid]
            target, source = mr["target_branch"], mr["source_branch"]
            tree = {**project.trees[project.branches[target]],
                    **project.trees[project.branches[source]]}
            made = self._commit(project, project.branches[target], tree,
                                f"Merge branch '{source}' into '{target}'\n\nSee merge request "
                                f"{mr['references']['full']}", "maintainer")
            if sha is not None:
                project.commits[sha] = {**project.commits.pop(made), "id": sha}
                project.trees[sha] = project.trees.pop(made)
            sha = sha or made
            project.commits[sha]["parent_ids"].append(project.branches[source])
            project.branches[target] = sha
            mr.update(state="merged", merge_commit_sha=sha, merged_at=self._now())
            return sha

    def notes(self, project_id: int, mr_iid: int) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(n) for n in self.projects[project_id].notes.get(mr_iid, [])]

    def file_text(self, project_id: int, branch: str, path: str) -> str | None:
        with self.lock:
            project = self.projects[project_id]
            return project.trees[project.branches[branch]].get(path)

    def inject_fault(
        self,
        status: int = 500,
        *,
        times: int = 1,
        method: str | None = None,
        path: str | None = None,
        retry_after: str | int | None = None,
        hang: float | None = None,
    ) -> Fault:
        fault = Fault(
            status, times, method, path, None if retry_after is None else str(retry_after), hang
        )
        with self.lock:
            self.faults.append(fault)
        return fault

    def requests_to(self, method: str, path_pattern: str) -> list[RecordedRequest]:
        with self.lock:
            return [
                r for r in self.requests if r.method == method and re.search(path_pattern, r.path)
            ]

    # --- internals shared by set-up and handlers ---------------------------------------------

    def _next(self, kind: str) -> int:
        self._ids[kind] = self._ids.get(kind, 0) + 1
        return self._ids[kind]

    def _now(self) -> str:
        # a deterministic clock: every write is one second after the previous one
        self._clock += 1
        return (_EPOCH + timedelta(seconds=self._clock)).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def _user(self, username: str) -> dict[str, Any]:
        if username not in self.users:
            uid = self._next("user")
            self.users[username] = {
                "id": uid,
                "username": username,
                "name": username.replace("-", " ").title(),
                "state": "active",
                "web_url": f"http://127.0.0.1/{username}",
            }
        return self.users[username]

    def _commit(
        self, project: Project, parent: str | None, tree: dict[str, str], message: str, author: str
    ) -> str:
        seed = json.dumps([parent, sorted(tree.items()), message, self._clock])
        sha = hashlib.sha1(seed.encode()).hexdigest()
        created = self._now()
        project.trees[sha] = tree
        project.commits[sha] = {
            "id": sha,
            "short_id": sha[:8],
            "title": message.splitlines()[0] if message else "",
            "message": message,
            "parent_ids": [parent] if parent else [],
            "author_name": author,
            "author_email": f"{author}@example.com",
            "authored_date": created,
            "committer_name": author,
            "committer_email": f"{author}@example.com",
            "committed_date": created,
            "created_at": created,
            "web_url": f"{project.web_url}/-/commit/{sha}",
        }
        return sha

    def _create_mr(
        self, project: Project, params: dict[str, Any], author: str, state: str = "opened"
    ) -> dict[str, Any]:
        iid = len(project.merge_requests) + 1
        now = self._now()
        mr = {
            "id": self._next("merge_request"),
            "iid": iid,
            "project_id": project.id,
            "title": params["title"],
            "description": params.get("description") or "",
            "state": state,
            "source_branch": params["source_branch"],
            "target_branch": params["target_branch"],
            "source_project_id": project.id,
            "target_project_id": project.id,
            "author": self._user(author),
            "draft": False,
            "sha": project.branches.get(params["source_branch"]),
            "merge_commit_sha": None,
            "squash_commit_sha": None,
            "created_at": now,
            "updated_at": now,
            "references": {"short": f"!{iid}", "full": f"{project.path_with_namespace}!{iid}"},
            "web_url": f"{project.web_url}/-/merge_requests/{iid}",
        }
        project.merge_requests[iid] = mr
        project.notes[iid] = []
        return mr

    def _create_note(
        self, project: Project, mr: dict[str, Any], body: str, author: str, system: bool = False
    ) -> dict[str, Any]:
        now = self._now()
        note = {
            "id": self._next("note"),
            "type": None,
            "body": body,
            "author": self._user(author),
            "created_at": now,
            "updated_at": now,
            "system": system,
            "noteable_id": mr["id"],
            "noteable_type": "MergeRequest",
            "noteable_iid": mr["iid"],
            "project_id": project.id,
            "resolvable": False,
            "confidential": False,
            "internal": False,
        }
        project.notes[mr["iid"]].append(note)
        return note


# --- HTTP handling ----------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    api: GitLabAPIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        api = self.api
        arrived = time.monotonic()
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = self._parse_body(raw)
        auth_header = next(
            (h for h in ("PRIVATE-TOKEN", "JOB-TOKEN", "Authorization") if self.headers.get(h)),
            None,
        )
        headers: dict[str, str] = {}
        with api.lock:
            fault = next((f for f in api.faults if f.matches(method, split.path)), None)
            if fault is not None:
                fault.times -= 1

        def record(status: int) -> None:
            # Before the response goes out: a client that has its answer finds it recorded.
            with api.lock:
                api.requests.append(
                    RecordedRequest(
                        method, unquote(split.path), query, body, auth_header, status, arrived
                    )
                )

        if fault is not None and fault.hang is not None:
            record(0)
            api.stopping.wait(fault.hang)
            self.close_connection = True
            return
        if fault is not None:
            payload = fault.body or _fault_body(fault.status)
            if fault.retry_after is not None:
                headers["Retry-After"] = fault.retry_after
            record(fault.status)
            return self._send(fault.status, payload, headers)
        try:
            token = self._authenticate()
            params = {**query, **(body if isinstance(body, dict) else {})}
            with api.lock:
                status, payload, headers = _route(api, token, method, split.path, params)
        except APIError as err:
            status, payload, headers = err.status, err.body, {}
        record(status)
        self._send(status, payload, headers, base=split.path, query=query)

    def _parse_body(self, raw: bytes) -> Any:
        if not raw:
            return None
        ctype = self.headers.get("Content-Type") or ""
        if ctype.startswith("multipart/form-data"):
            return _parse_multipart(ctype, raw)
        try:
            return json.loads(raw)
        except ValueError:
            return {k: v[-1] for k, v in parse_qs(raw.decode()).items()}

    def _authenticate(self) -> Token:
        headers = self.headers
        candidates: list[tuple[str, tuple[str, ...]]] = []
        if headers.get("PRIVATE-TOKEN"):
            candidates.append((headers["PRIVATE-TOKEN"], ("private",)))
        if headers.get("JOB-TOKEN"):
            candidates.append((headers["JOB-TOKEN"], ("job",)))
        auth = headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            candidates.append((auth[len("Bearer ") :], ("private", "oauth")))
        if auth.startswith("Basic "):
            # package registries: gitlab-ci-token + CI_JOB_TOKEN, or any user + an access token
            try:
                user, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user, secret = "", ""
            kinds = ("job",) if user == "gitlab-ci-token" else ("private",)
            candidates.append((secret, kinds))
        for value, kinds in candidates:
            token = self.api.tokens.get(value)
            if token is not None and token.kind in kinds:
                return token
        raise APIError(401, {"message": "401 Unauthorized"})

    def _send(
        self,
        status: int,
        payload: Any,
        headers: dict[str, str],
        *,
        base: str = "",
        query: dict[str, str] | None = None,
    ) -> None:
        if isinstance(payload, _Page):
            headers = {**headers, **payload.headers(self.api.url + base, query or {})}
            payload = payload.items
        if isinstance(payload, _Raw):
            data, ctype = payload.data, payload.content_type
        elif isinstance(payload, str):
            data, ctype = payload.encode(), "text/plain; charset=utf-8"
        elif payload is None:
            data, ctype = b"", "application/json"
        else:
            data, ctype = json.dumps(payload).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _fault_body(status: int) -> dict[str, Any]:
    if status == 429:
        return {"message": "This endpoint has been requested too many times. Try again later."}
    return {"message": f"{status} {_REASONS.get(status, 'Error')}"}


_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass
class _Page:
    """One page of a list, with GitLab's offset-pagination headers."""

    items: list[dict[str, Any]]
    page: int
    per_page: int
    total: int

    def headers(self, url: str, query: dict[str, str]) -> dict[str, str]:
        pages = max(1, -(-self.total // self.per_page))
        nxt = self.page + 1 if self.page < pages else None
        prev = self.page - 1 if self.page > 1 else None

        def link(page: int) -> str:
            return f"{url}?{urlencode({**query, 'page': page, 'per_page': self.per_page})}"

        links = [
            f'<{link(p)}>; rel="{rel}"'
            for rel, p in (("prev", prev), ("next", nxt), ("first", 1), ("last", pages))
            if p
        ]
        return {
            "X-Page": str(self.page),
            "X-Per-Page": str(self.per_page),
            "X-Next-Page": str(nxt or ""),
            "X-Prev-Page": str(prev or ""),
            "X-Total": str(self.total),
            "X-Total-Pages": str(pages),
            "Link": ", ".join(links),
        }


def _paginate(items: list[dict[str, Any]], params: dict[str, Any]) -> _Page:
    try:
        page = max(1, int(params.get("page") or 1))
        per_page = min(100, max(1, int(params.get("per_page") or 20)))
    except ValueError as err:
        raise APIError(400, {"error": "page is invalid, per_page is invalid"}) from err
    start = (page - 1) * per_page
    return _Page(items[start : start + per_page], page, per_page, len(items))


def _route(
    api: GitLabAPIServer, token: Token, method: str, path: str, params: dict[str, Any]
) -> tuple[int, Any, dict[str, str]]:
    segments = [unquote(s) for s in path.split("/")]
    if segments[:3] != ["", "api", "v4"]:
        raise APIError(404, {"error": "404 Not Found"})
    rest = segments[3:]
    if rest == ["user"] and method == "GET":
        return 200, {**api._user(token.username), "web_url": f"{api.url}/{token.username}"}, {}
    if rest == ["version"] and method == "GET":
        return 200, {"version": api.version, "revision": "0123abcd"}, {}
    if len(rest) >= 2 and rest[0] == "projects":
        project = _find_project(api, token, rest[1])
        return _route_project(api, token, project, method, rest[2:], params)
    raise APIError(404, {"error": "404 Not Found"})


def _find_project(api: GitLabAPIServer, token: Token, ref: str) -> Project:
    project = (
        api.projects.get(int(ref))
        if ref.isdigit()
        else next((p for p in api.projects.values() if p.path_with_namespace == ref), None)
    )
    # GitLab hides projects the token cannot see behind the same 404 as missing ones
    if project is None or (token.projects is not None and project.id not in token.projects):
        raise not_found("Project Not Found")
    return project


def _require_write(token: Token, role: str = "developer") -> None:
    if "api" not in token.scopes:
        raise APIError(
            403,
            {
                "error": "insufficient_scope",
                "error_description": "The request requires higher privileges than provided by "
                "the access token.",
                "scope": "api",
            },
        )
    if _ROLES.get(token.role, 0) < _ROLES[role]:
        raise APIError(403, {"message": "403 Forbidden"})


def _required(params: dict[str, Any], *names: str) -> None:
    missing = [n for n in names if params.get(n) in (None, "")]
    if missing:
        # Grape's parameter validation answers 400 with "error", not "message"
        raise APIError(400, {"error": ", ".join(f"{n} is missing" for n in missing)})


def _route_project(
    api: GitLabAPIServer,
    token: Token,
    project: Project,
    method: str,
    rest: list[str],
    params: dict[str, Any],
) -> tuple[int, Any, dict[str, str]]:
    if token.kind == "job" and not _job_token_allowed(method, rest):
        # GitLab ignores a job token on endpoints that do not take one: unauthenticated
        raise APIError(401, {"message": "401 Unauthorized"})
    if not rest:
        if method == "GET":
            return 200, project.to_json(), {}
    elif rest[:2] == ["packages", "pypi"]:
        return _route_pypi(api, token, project, method, rest[2:], params)
    elif rest[0] == "merge_requests":
        return _route_merge_requests(api, token, project, method, rest[1:], params)
    elif rest[:2] == ["repository", "branches"]:
        return _route_branches(api, token, project, method, rest[2:], params)
    elif rest[:2] == ["repository", "commits"] and len(rest) == 2 and method == "POST":
        return _create_commit(api, token, project, params)
    elif rest[:2] == ["repository", "commits"] and rest[3:] == ["merge_requests"] and \
            method == "GET":
        sha = project.branches.get(rest[2], rest[2])
        if sha not in project.commits:
            raise not_found("Commit Not Found")
        related = [mr for mr in project.merge_requests.values()
                   if sha in (mr.get("merge_commit_sha"), mr.get("sha"))]
        return 200, _paginate(related, params), {}
    elif rest[:2] == ["repository", "commits"] and len(rest) == 3 and method == "GET":
        commit = project.commits.get(project.branches.get(rest[2], rest[2]))
        if commit is None:
            raise not_found("Commit Not Found")
        return 200, commit, {}
    elif rest[:2] == ["repository", "tree"] and len(rest) == 2 and method == "GET":
        return _list_tree(project, params)
    elif rest[:2] == ["repository", "files"] and len(rest) in (3, 4) and method == "GET":
        return _get_file(project, rest[2], raw=len(rest) == 4 and rest[3] == "raw", params=params)
    raise APIError(404, {"error": "404 Not Found"})


def _job_token_allowed(method: str, rest: list[str]) -> bool:
    """The endpoints GitLab documents for CI_JOB_TOKEN (of those this fake serves): the
    project, reading branches, commits and files, and the package registry. Notes, merge
    requests and commits are not among them."""
    if rest[:1] == ["packages"]:
        return True
    return method == "GET" and (not rest or rest[0] == "repository")


def _route_merge_requests(
    api: GitLabAPIServer,
    token: Token,
    project: Project,
    method: str,
    rest: list[str],
    params: dict[str, Any],
) -> tuple[int, Any, dict[str, str]]:
    if not rest:
        if method == "GET":
            mrs = sorted(project.merge_requests.values(), key=lambda m: m["id"], reverse=True)
            state = params.get("state") or "all"
            mrs = [m for m in mrs if state == "all" or m["state"] == state]
            for key in ("source_branch", "target_branch"):
                if params.get(key):
                    mrs = [m for m in mrs if m[key] == params[key]]
            return 200, _paginate(mrs, params), {}
        if method == "POST":
            _require_write(token)
            _required(params, "source_branch", "target_branch", "title")
            for key in ("source_branch", "target_branch"):
                if params[key] not in project.branches:
                    raise APIError(400, {"message": {key: ["does not exist"]}})
            if params["source_branch"] == params["target_branch"]:
                raise APIError(
                    422, {"message": ["You can't use same project/branch for source and target"]}
                )
            for other in project.merge_requests.values():
                if (
                    other["state"] == "opened"
                    and other["source_branch"] == params["source_branch"]
                    and other["target_branch"] == params["target_branch"]
                ):
                    raise APIError(
                        409,
                        {
                            "message": [
                                "Another open merge request already exists for this source branch: "
                                f"!{other['iid']}"
                            ]
                        },
                    )
            return 201, api._create_mr(project, params, token.username), {}
        raise APIError(405, {"message": "405 Method Not Allowed"})
    if not rest[0].isdigit() or int(rest[0]) not in project.merge_requests:
        raise not_found()
    mr = project.merge_requests[int(rest[0])]
    if len(rest) == 1:
        if method == "GET":
            return 200, mr, {}
        if method == "PUT":
            _require_write(token)
            for key in ("title", "description", "target_branch"):
                if key in params:
                    mr[key] = params[key]
            event = params.get("state_event")
            if event in ("close", "reopen"):
                mr["state"] = "closed" if event == "close" else "opened"
            mr["updated_at"] = api._now()
            return 200, mr, {}
    elif rest[1] == "notes":
        return _route_notes(api, token, project, mr, method, rest[2:], params)
    raise APIError(404, {"error": "404 Not Found"})


def _route_notes(
    api: GitLabAPIServer,
    token: Token,
    project: Project,
    mr: dict[str, Any],
    method: str,
    rest: list[str],
    params: dict[str, Any],
) -> tuple[int, Any, dict[str, str]]:
    notes = project.notes[mr["iid"]]
    if not rest:
        if method == "GET":
            order_by = params.get("order_by") or "created_at"
            if order_by not in ("created_at", "updated_at"):
                raise APIError(400, {"error": "order_by does not have a valid value"})
            sort = params.get("sort") or "desc"
            if sort not in ("asc", "desc"):
                raise APIError(400, {"error": "sort does not have a valid value"})
            ordered = sorted(notes, key=lambda n: (n[order_by], n["id"]), reverse=sort == "desc")
            return 200, _paginate(ordered, params), {}
        if method == "POST":
            _require_write(token, role="guest")
            _required(params, "body")
            _check_note_size(api, str(params["body"]))
            return 201, api._create_note(project, mr, str(params["body"]), token.username), {}
        raise APIError(405, {"message": "405 Method Not Allowed"})
    note = next((n for n in notes if rest[0].isdigit() and n["id"] == int(rest[0])), None)
    if note is None or len(rest) != 1:
        raise not_found("Note Not Found")
    if method == "GET":
        return 200, note, {}
    _require_write(token, role="guest")
    if note["author"]["username"] != token.username and token.role not in ("maintainer", "owner"):
        raise APIError(403, {"message": "403 Forbidden"})
    if method == "PUT":
        _required(params, "body")
        _check_note_size(api, str(params["body"]))
        note["body"] = str(params["body"])
        note["updated_at"] = api._now()
        return 200, note, {}
    if method == "DELETE":
        notes.remove(note)
        return 204, None, {}
    raise APIError(405, {"message": "405 Method Not Allowed"})


def _check_note_size(api: GitLabAPIServer, body: str) -> None:
    if len(body) > api.note_max_chars:
        raise APIError(
            400,
            {"message": {"note": [f"is too long (maximum is {api.note_max_chars} characters)"]}},
        )


def _route_branches(
    api: GitLabAPIServer,
    token: Token,
    project: Project,
    method: str,
    rest: list[str],
    params: dict[str, Any],
) -> tuple[int, Any, dict[str, str]]:
    if not rest and method == "POST":
        _require_write(token)
        _required(params, "branch", "ref")
        name, ref = str(params["branch"]), str(params["ref"])
        if name in project.branches:
            raise APIError(400, {"message": "Branch already exists"})
        sha = project.branches.get(ref, ref if ref in project.commits else None)
        if sha is None:
            raise APIError(400, {"message": "Invalid reference name: " + ref})
        project.branches[name] = sha
        return 201, _branch_json(project, name), {}
    if not rest and method == "GET":
        names = sorted(project.branches)
        return 200, _paginate([_branch_json(project, n) for n in names], params), {}
    if len(rest) == 1 and method == "GET":
        if rest[0] not in project.branches:
            raise not_found("Branch Not Found")
        return 200, _branch_json(project, rest[0]), {}
    raise APIError(404, {"error": "404 Not Found"})


def _branch_json(project: Project, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "commit": project.commits[project.branches[name]],
        "merged": False,
        "protected": name == project.default_branch,
        "default": name == project.default_branch,
        "developers_can_push": False,
        "developers_can_merge": False,
        "can_push": True,
        "web_url": f"{project.web_url}/-/tree/{quote(name, safe='')}",
    }


def _create_commit(
    api: GitLabAPIServer, token: Token, project: Project, params: dict[str, Any]
) -> tuple[int, Any, dict[str, str]]:
    _require_write(token)
    _required(params, "branch", "commit_message", "actions")
    branch = str(params["branch"])
    start = params.get("start_branch")
    start_sha = params.get("start_sha")
    force = str(params.get("force")).lower() == "true"
    if start and start_sha:
        raise APIError(400, {"error": "start_branch, start_sha are mutually exclusive"})
    if start_sha is not None and start_sha not in project.commits:
        raise APIError(400, {"message": f"Invalid start_sha: {start_sha}"})
    start_commit = project.branches.get(start) if start else start_sha
    if branch in project.branches and not (force and start_commit):
        if start_commit and start_commit != project.branches[branch]:
            raise APIError(400, {"message": f"A branch called '{branch}' already exists. "
                                            "Switch to that branch in order to make changes"})
        parent = project.branches[branch]
    elif start_commit:
        parent = start_commit  # a new branch, or `force`: the branch restarts from there
    else:
        raise APIError(
            400, {"message": "You can only create or edit files when you are on a branch"}
        )
    tree = dict(project.trees[parent])
    for action in params["actions"]:
        kind, path = action.get("action"), action.get("file_path")
        if not path:
            raise APIError(400, {"error": "actions[file_path] is missing"})
        content = action.get("content") or ""
        if action.get("encoding") == "base64":
            content = base64.b64decode(content).decode()
        if kind == "create":
            if path in tree:
                raise APIError(400, {"message": "A file with this name already exists"})
            tree[path] = content
        elif kind == "update":
            if path not in tree:
                raise APIError(400, {"message": "A file with this name doesn't exist"})
            tree[path] = content
        elif kind == "delete":
            if path not in tree:
                raise APIError(400, {"message": "A file with this name doesn't exist"})
            del tree[path]
        else:
            raise APIError(400, {"error": "actions[action] does not have a valid value"})
    sha = api._commit(project, parent, tree, str(params["commit_message"]), token.username)
    project.branches[branch] = sha
    for mr in project.merge_requests.values():
        if mr["source_branch"] == branch:
            mr["sha"] = sha
    return (
        201,
        {
            **project.commits[sha],
            "stats": {"additions": 0, "deletions": 0, "total": 0},
            "status": None,
            "project_id": project.id,
        },
        {},
    )


def _parse_multipart(ctype: str, raw: bytes) -> dict[str, Any]:
    """A multipart/form-data body: text fields as str, file fields as (filename, bytes)."""
    import email.parser
    import email.policy

    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        payload = part.get_payload(decode=True) or b""
        if filename:
            fields[str(name)] = (filename, payload)
        else:
            fields[str(name)] = payload.decode("utf-8", "replace")
    return fields


def _route_pypi(
    api: GitLabAPIServer,
    token: Token,
    project: Project,
    method: str,
    rest: list[str],
    params: dict[str, Any],
) -> tuple[int, Any, dict[str, str]]:
    """GitLab's PyPI API: upload (what twine does), the simple index, file downloads."""
    if rest and rest[-1] == "":
        rest = rest[:-1]  # pip asks for .../simple/NAME/
    if not rest and method == "POST":
        _require_write(token)
        content = params.get("content")
        _required(params, "name", "version")
        if not isinstance(content, tuple):
            raise APIError(400, {"error": "content is missing"})
        filename, data = content
        digest = hashlib.sha256(data).hexdigest()
        if params.get("sha256_digest") and params["sha256_digest"] != digest:
            raise APIError(400, {"message": "400 Bad request - sha256_digest does not match"})
        if any(f.filename == filename for f in project.pypi_files.values()):
            raise APIError(400, {"message": "Validation failed: File name has already been taken"})
        project.pypi_files[digest] = PyPIFile(
            str(params["name"]), str(params["version"]), filename, digest, data,
            str(params.get("requires_python") or ""))
        return 201, {"message": "201 Created"}, {}
    if len(rest) == 2 and rest[0] == "simple" and method == "GET":
        wanted = normalize_package_name(rest[1])
        files = [f for f in project.pypi_files.values()
                 if normalize_package_name(f.name) == wanted]
        if not files:
            raise not_found("Package Not Found")
        base = f"{api.api_url}/projects/{project.id}/packages/pypi/files"
        links = "".join(
            f'<a href="{base}/{f.sha256}/{quote(f.filename)}#sha256={f.sha256}"'
            + (f' data-requires-python="{html.escape(f.requires_python)}"'
               if f.requires_python else "")
            + f">{html.escape(f.filename)}</a><br>\n"
            for f in sorted(files, key=lambda f: f.filename))
        page = (f"<!DOCTYPE html>\n<html><head><title>Links for {wanted}</title></head>"
                f"<body><h1>Links for {wanted}</h1>{links}</body></html>\n")
        return 200, _Raw(page.encode(), "text/html"), {}
    if len(rest) == 3 and rest[0] == "files" and method == "GET":
        found = project.pypi_files.get(rest[1])
        if found is None or found.filename != rest[2]:
            raise not_found("Package Not Found")
        return 200, _Raw(found.data, "application/octet-stream"), {}
    raise APIError(404, {"error": "404 Not Found"})


@dataclass(frozen=True)
class _Raw:
    data: bytes
    content_type: str


def _list_tree(project: Project, params: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
    ref = str(params.get("ref") or project.default_branch)
    sha = project.branches.get(ref, ref if ref in project.commits else None)
    if sha is None:
        raise not_found("Tree Not Found")
    base = str(params.get("path") or "").strip("/")
    recursive = str(params.get("recursive")).lower() == "true"
    entries: dict[str, str] = {}  # path -> "blob" | "tree"
    for path in project.trees[sha]:
        if base and not path.startswith(base + "/"):
            continue
        inside = path[len(base) + 1 :] if base else path
        parts = inside.split("/")
        for depth in range(1, len(parts) + 1):
            if not recursive and depth > 1:
                break
            kind = "blob" if depth == len(parts) else "tree"
            entries["/".join(filter(None, [base, *parts[:depth]]))] = kind
    if base and not entries:
        raise not_found("Tree Not Found")
    items = [
        {
            "id": hashlib.sha1(f"{sha}:{path}".encode()).hexdigest(),
            "name": path.rsplit("/", 1)[-1],
            "type": kind,
            "path": path,
            "mode": "100644" if kind == "blob" else "040000",
        }
        for path, kind in sorted(entries.items(), key=lambda e: (e[1] != "tree", e[0]))
    ]
    return 200, _paginate(items, params), {}


def _get_file(
    project: Project, path: str, *, raw: bool, params: dict[str, Any]
) -> tuple[int, Any, dict[str, str]]:
    ref = str(params.get("ref") or project.default_branch)
    sha = project.branches.get(ref, ref if ref in project.commits else None)
    if sha is None or path not in project.trees[sha]:
        raise not_found("File Not Found")
    text = project.trees[sha][path]
    headers = {"X-Gitlab-File-Path": path, "X-Gitlab-Ref": ref, "X-Gitlab-Commit-Id": sha}
    if raw:
        return 200, text, headers
    return (
        200,
        {
            "file_name": path.rsplit("/", 1)[-1],
            "file_path": path,
            "size": len(text.encode()),
            "encoding": "base64",
            "content": base64.b64encode(text.encode()).decode(),
            "ref": ref,
            "blob_id": hashlib.sha1(text.encode()).hexdigest(),
            "commit_id": sha,
            "last_commit_id": sha,
        },
        headers,
    )
