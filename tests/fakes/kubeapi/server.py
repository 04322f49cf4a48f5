"""HTTP front of the fake API server: routing, authentication, RBAC, faults, request log.

Talks the documented Kubernetes REST API over real HTTP on 127.0.0.1; all state lives in
`Store`. No pytest import: usable from any test runner or a REPL.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.fakes.http import HTTPFake

from .resources import (
    VERSION_DOC,
    ResourceType,
    api_group_list_doc,
    api_resource_list_doc,
    api_versions_doc,
    find_type,
    find_type_by_kind,
    group_versions,
)
from .status import APIError, forbidden, invalid, status_body
from .store import RolloutSimulation, Store

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"


@dataclass
class FaultRule:
    """Make the `nth` request matching `method` and `path` (a regex searched in the URL path)
    misbehave, and the `times - 1` matching requests after it (`times=None`: all of them).

    `sleep` delays the answer; then `close` drops the connection without an answer, `status`
    answers with that code and a Status body, and neither processes the request normally.
    `dry_run` restricts the rule to requests with (True) or without (False) `dryRun=All`.
    """

    method: str
    path: str
    nth: int = 1
    times: int | None = 1
    status: int | None = None
    message: str | None = None
    reason: str | None = None
    sleep: float = 0.0
    close: bool = False
    dry_run: bool | None = None
    seen: int = 0
    fired: int = 0

    def matches(self, method: str, path: str, dry_run: bool) -> bool:
        if method != self.method.upper() or not re.search(self.path, path):
            return False
        return self.dry_run is None or self.dry_run == dry_run

    def take(self) -> bool:
        self.seen += 1
        last = None if self.times is None else self.nth + self.times - 1
        if self.seen >= self.nth and (last is None or self.seen <= last):
            self.fired += 1
            return True
        return False


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str | None
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    user: str = ""  # who sent it (the authenticated identity)
    answer: list[int] = field(default_factory=list)  # the status code, once answered

    @property
    def dry_run(self) -> bool:
        return self.query.get("dryRun") == ["All"]

    @property
    def status(self) -> int | None:
        return self.answer[0] if self.answer else None

    @property
    def is_write(self) -> bool:
        """A request that asks to change state (dry runs included: RBAC authorises them as
        the write they preview)."""
        return self.method in ("POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class Rule:
    """One RBAC PolicyRule: verbs on resources (plural names; "*" for all)."""

    verbs: tuple[str, ...]
    resources: tuple[str, ...]

    def allows(self, verb: str, resource: str) -> bool:
        return (verb in self.verbs or "*" in self.verbs) and (
            resource in self.resources or "*" in self.resources)


@dataclass(frozen=True)
class Identity:
    """A bearer token, the user it authenticates as, and the rules bound to that user."""

    token: str
    user: str
    rules: tuple[Rule, ...]


class KubeAPIServer(HTTPFake):
    """A local, stateful Kubernetes API server for tests."""

    def __init__(
        self,
        *,
        token: str | None = None,
        user: str = "kubernetes-admin",
        namespaces: tuple[str, ...] = (),
        rollout_delay: float = 0.0,
        rollout_mode: str = "complete",
    ) -> None:
        self.token = token
        self.user = user
        self.store = Store(namespaces)
        self.store.rollout = RolloutSimulation(rollout_delay, rollout_mode)  # type: ignore[arg-type]
        self.permissions: dict[tuple[str, str], bool] = {}
        self.default_allow = True
        self.identities: dict[str, Identity] = {}
        self._faults: list[FaultRule] = []
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    def write_kubeconfig(
        self,
        path: str | Path,
        context: str = "test",
        namespace: str = "ai-gateway",
        token: str | None = None,
    ) -> Path:
        user: dict[str, Any] = {"token": token} if token else {}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": f"{context}-cluster",
                          "cluster": {"server": self.url, "insecure-skip-tls-verify": True}}],
            "users": [{"name": f"{context}-user", "user": user}],
            "contexts": [{"name": context, "context": {
                "cluster": f"{context}-cluster", "user": f"{context}-user",
                "namespace": namespace}}],
            "current-context": context,
        }
        target = Path(path)
        target.write_text(yaml.safe_dump(config, sort_keys=False))
        return target

    # -- test knobs ----------------------------------------------------------------------

    @property
    def rollout(self) -> RolloutSimulation:
        return self.store.rollout

    def set_permission(self, verb: str, resource: str, allowed: bool) -> None:
        """RBAC: allow or deny `verb` on `resource` (plural, e.g. "configmaps"; "*" for all)."""
        with self._lock:
            self.permissions[(verb, resource)] = allowed

    def deny(self, verb: str, resource: str) -> None:
        self.set_permission(verb, resource, False)

    def add_identity(self, token: str, user: str, rules: list[Rule]) -> Identity:
        """Another user, authenticated by `token` and allowed exactly what `rules` say (RBAC
        is additive: anything not granted is forbidden with the documented 403 Status)."""
        identity = Identity(token, user, tuple(rules))
        with self._lock:
            self.identities[token] = identity
        return identity

    def writes(self, user: str | None = None) -> list[RecordedRequest]:
        """Write requests the server carried out (answered 2xx, dry runs excluded)."""
        return [r for r in self.requests
                if r.is_write and not r.dry_run and r.status is not None
                and 200 <= r.status < 300 and (user is None or r.user == user)]

    def allowed(self, verb: str, resource: str, identity: Identity | None = None) -> bool:
        if identity is not None:
            return any(rule.allows(verb, resource) for rule in identity.rules)
        with self._lock:
            for key in ((verb, resource), (verb, "*"), ("*", resource), ("*", "*")):
                if key in self.permissions:
                    return self.permissions[key]
            return self.default_allow

    def inject(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self._faults.append(rule)
        return rule

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_matching(
        self, method: str | None = None, path: str | None = None, dry_run: bool | None = None
    ) -> list[RecordedRequest]:
        return [
            r for r in self.requests
            if (method is None or r.method == method.upper())
            and (path is None or re.search(path, r.path))
            and (dry_run is None or r.dry_run == dry_run)
        ]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        return self.store.dump()

    def get_object(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        rt = _type_for(api_version, kind)
        try:
            return self.store.get(rt, namespace, name)
        except APIError:
            return None

    def seed(self, obj: dict[str, Any], field_manager: str = "kubectl-client-side-apply"
             ) -> dict[str, Any]:
        """Create an object directly, as another client with `field_manager` would."""
        rt = _type_for(obj["apiVersion"], obj["kind"])
        return self.store.create(rt, obj["metadata"].get("namespace"), obj, field_manager)

    def replace(self, obj: dict[str, Any], field_manager: str = "kubectl-edit"
                ) -> dict[str, Any]:
        """Update an object directly (as `kubectl edit` would), keeping its resourceVersion."""
        rt = _type_for(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        return self.store.update(rt, meta.get("namespace"), meta["name"], obj, field_manager)

    # -- request handling (called from handler threads) ---------------------------------

    def _record(self, request: RecordedRequest) -> FaultRule | None:
        with self._lock:
            self._requests.append(request)
            chosen = None
            for rule in self._faults:
                if rule.matches(request.method, request.path, request.dry_run) and rule.take() \
                        and chosen is None:
                    chosen = rule
            return chosen

    def _authenticate(self, headers: dict[str, str]) -> Identity | None:
        """The identity a request authenticates as; None: the default user."""
        auth = headers.get("authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        with self._lock:
            identity = self.identities.get(token or "")
        if identity is not None:
            return identity
        if self.token is not None and token != self.token:
            raise APIError(401, "Unauthorized", "Unauthorized")
        return None

    def _dispatch(
        self, method: str, path: str, query: dict[str, list[str]], content_type: str,
        raw: bytes, headers: dict[str, str], identity: Identity | None = None,
    ) -> tuple[int, dict[str, Any]]:
        parts = [p for p in path.split("/") if p]
        discovery = _discovery(parts, self.url)
        if discovery is not None:
            if method != "GET":
                raise APIError(405, "the server does not allow this method on the requested "
                                    "resource", "MethodNotAllowed")
            return 200, discovery
        rt, namespace, name, subresource = _route(parts)
        if subresource:
            raise APIError(404, "the server could not find the requested resource", "NotFound")
        verb = _verb(method, name)
        if not self.allowed(verb, rt.plural, identity):
            user = identity.user if identity else self.user
            raise forbidden(rt, name or "", user, verb, namespace)
        dry_run = _dry_run(query)
        one = (lambda k: query.get(k, [None])[0])  # noqa: E731
        manager = one("fieldManager") or headers.get("user-agent", "unknown").split("/")[0]
        store = self.store
        if verb == "get":
            return 200, store.get(rt, namespace, name or "")
        if verb == "list":
            return 200, store.list(rt, namespace, one("labelSelector"))
        if verb == "create":
            return 201, store.create(rt, namespace, _json(raw), manager, dry_run)
        if verb == "update":
            return 200, store.update(rt, namespace, name or "", _json(raw), manager, dry_run)
        if verb == "delete":
            return 200, store.delete(rt, namespace, name or "", dry_run)
        if verb == "deletecollection":
            listed = store.list(rt, namespace, one("labelSelector"))
            for item in listed["items"]:
                store.delete(rt, namespace, item["metadata"]["name"], dry_run)
            return 200, listed
        # patch
        media = content_type.split(";")[0].strip()
        if media == APPLY:
            if not one("fieldManager"):
                raise APIError(
                    422, 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required '
                         "value: is required for apply patch", "Invalid",
                    {"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [{
                        "reason": "FieldValueRequired",
                        "message": "Required value: is required for apply patch",
                        "field": "fieldManager"}]})
            body = _yaml(raw)
            force = one("force") == "true"
            existed = store.get_or_none(rt, namespace, name or "")
            obj = store.apply(rt, namespace, name or "", body, manager, force, dry_run)
            return (200 if existed else 201), obj
        if media in (MERGE, STRATEGIC):
            if one("force") is not None:
                raise invalid(rt, name or "", [(
                    "FieldValueForbidden", "force",
                    "Forbidden: may not be specified for non-apply patch")])
            return 200, store.merge_patch(rt, namespace, name or "", _json(raw), manager,
                                          dry_run)
        raise APIError(
            415, f"the body of the request was in an unknown format - accepted media types "
                 f"include: application/json-patch+json, {MERGE}, {APPLY}, {STRATEGIC}",
            "UnsupportedMediaType")


def _type_for(api_version: str, kind: str) -> ResourceType:
    rt = find_type_by_kind(api_version, kind)
    if rt is None:
        raise KeyError(f"{api_version} {kind} is not served by the fake API server")
    return rt


def _discovery(parts: list[str], url: str) -> dict[str, Any] | None:
    if parts == ["version"]:
        return dict(VERSION_DOC)
    if parts == ["api"]:
        return api_versions_doc(url.removeprefix("http://"))
    if parts == ["api", "v1"]:
        return api_resource_list_doc("", "v1")
    if parts == ["apis"]:
        return api_group_list_doc()
    if len(parts) == 2 and parts[0] == "apis":
        versions = group_versions().get(parts[1])
        if versions is None:
            raise APIError(404, "the server could not find the requested resource", "NotFound")
        gvs = [{"groupVersion": f"{parts[1]}/{v}", "version": v} for v in versions]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": parts[1], "versions": gvs,
                "preferredVersion": gvs[0]}
    if len(parts) == 3 and parts[0] == "apis":
        doc = api_resource_list_doc(parts[1], parts[2])
        if doc is None:
            raise APIError(404, "the server could not find the requested resource", "NotFound")
        return doc
    return None


def _route(parts: list[str]) -> tuple[ResourceType, str | None, str | None, str | None]:
    not_found = APIError(404, "the server could not find the requested resource", "NotFound")
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise not_found
    namespace: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        raise not_found
    rt = find_type(group, version, rest[0])
    if rt is None or (namespace is not None and not rt.namespaced):
        raise not_found
    name = rest[1] if len(rest) >= 2 else None
    if rt.namespaced and namespace is None and name is not None:
        raise not_found
    return rt, namespace, name, rest[2] if len(rest) == 3 else None


def _verb(method: str, name: str | None) -> str:
    if method == "GET":
        return "get" if name else "list"
    if method == "POST" and not name:
        return "create"
    if method == "DELETE":
        return "delete" if name else "deletecollection"
    if name and method in ("PUT", "PATCH"):
        return "update" if method == "PUT" else "patch"
    raise APIError(405, "the server does not allow this method on the requested resource",
                   "MethodNotAllowed")


def _dry_run(query: dict[str, list[str]]) -> bool:
    values = query.get("dryRun", [])
    for v in values:
        if v != "All":
            raise APIError(
                400, f'dryRun: Unsupported value: "{v}": supported values: "All"', "BadRequest")
    return bool(values)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError as e:
        raise APIError(400, f"error decoding request body: {e}", "BadRequest") from None


def _yaml(raw: bytes) -> Any:
    try:
        return yaml.safe_load(raw.decode() or "null")
    except yaml.YAMLError as e:
        raise APIError(400, f"error decoding YAML: {e}", "BadRequest") from None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are written separately: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    api: KubeAPIServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        query = parse_qs(split.query, keep_blank_values=True)
        headers = {k.lower(): v for k, v in self.headers.items()}
        content_type = headers.get("content-type", "")
        try:
            body: Any = _yaml(raw) if content_type.startswith(APPLY) else _json(raw) if raw \
                else None
        except APIError:
            body = raw.decode(errors="replace")
        with self.api._lock:
            known = self.api.identities.get(
                headers.get("authorization", "").removeprefix("Bearer "))
        recorded = RecordedRequest(self.command, split.path, query, content_type or None, body,
                                   headers, known.user if known else self.api.user)
        self._recorded = recorded
        rule = self.api._record(recorded)
        if rule is not None:
            if rule.sleep and self.api.stopping.wait(rule.sleep):
                return self._drop()
            if rule.close:
                return self._drop()
            if rule.status is not None:
                message = rule.message or f"injected failure ({rule.status})"
                return self._send(rule.status, status_body(rule.status, message, rule.reason))
        try:
            identity = self.api._authenticate(headers)
            code, payload = self.api._dispatch(
                self.command, split.path, query, content_type, raw, headers, identity)
        except APIError as e:
            code, payload = e.code, e.body()
        self._send(code, payload)

    def _send(self, code: int, payload: dict[str, Any]) -> None:
        recorded = getattr(self, "_recorded", None)
        if recorded is not None and not recorded.answer:
            recorded.answer.append(code)
        data = json.dumps(payload).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Audit-Id", "00000000-0000-0000-0000-000000000000")
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
