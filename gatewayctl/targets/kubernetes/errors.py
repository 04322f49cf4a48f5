"""Typed errors for everything that can go wrong talking to a Kubernetes API server.

Pure: builds errors from an HTTP status code and the server's `Status` body; it imports
no Kubernetes client. `kube.py` calls `error_from_status` once per failed request, so no
other layer ever sees an `ApiException` or a urllib3 error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gatewayctl.errors import GatewayctlError


class KubeError(GatewayctlError):
    """A failed Kubernetes API call; `server_message` keeps the server's own words."""

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        code: int | None = None,
        reason: str | None = None,
        server_message: str | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.code = code
        self.reason = reason
        self.server_message = server_message


class KubeConfigError(KubeError):
    """No usable kubeconfig, context or in-cluster configuration."""


class KubeUnauthorized(KubeError):
    """401: the server did not accept the credentials."""


class KubeForbidden(KubeError):
    """403: authenticated, but RBAC does not allow `verb` on `resource`."""

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        user: str | None = None,
        verb: str | None = None,
        resource: str | None = None,
        api_group: str | None = None,
        namespace: str | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, hint, **kw)
        self.user = user
        self.verb = verb
        self.resource = resource
        self.api_group = api_group
        self.namespace = namespace


class KubeNotFound(KubeError):
    """404: the object (or its namespace, or its resource type) does not exist."""

    def __init__(
        self, message: str, hint: str | None = None, *, kind: str | None = None,
        name: str | None = None, **kw: Any,
    ) -> None:
        super().__init__(message, hint, **kw)
        self.kind = kind
        self.name = name


@dataclass(frozen=True)
class FieldConflict:
    manager: str
    field: str


class KubeConflict(KubeError):
    """409: a field owned by another manager, an existing object, or a stale resourceVersion."""

    def __init__(
        self, message: str, hint: str | None = None, *,
        conflicts: tuple[FieldConflict, ...] = (), **kw: Any,
    ) -> None:
        super().__init__(message, hint, **kw)
        self.conflicts = conflicts

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(c.field for c in self.conflicts)


class KubeInvalid(KubeError):
    """422 (and 400): the server rejected the object; `fields` are the offending paths."""

    def __init__(
        self, message: str, hint: str | None = None, *, fields: tuple[str, ...] = (), **kw: Any,
    ) -> None:
        super().__init__(message, hint, **kw)
        self.fields = fields


class KubeServerError(KubeError):
    """5xx or 429 that persisted through every retry."""


class KubeTimeout(KubeError):
    """The server did not answer within the request timeout."""


class KubeUnreachable(KubeError):
    """No connection to the server (refused, reset, DNS, TLS)."""


class LockHeldError(GatewayctlError):
    """Another apply holds this gateway's lease."""

    def __init__(self, name: str, namespace: str, holder: str, since: str | None,
                 expires: str | None) -> None:
        since_text = f" since {since}" if since else ""
        super().__init__(
            f'another apply is in progress: lease {namespace}/{name} is held by "{holder}"'
            f"{since_text}",
            hint=f"wait for it to finish (the lease expires at {expires or 'its TTL'}), "
                 "or check that job",
        )
        self.name = name
        self.namespace = namespace
        self.holder = holder
        self.since = since
        self.expires = expires


class RolloutTimeoutError(GatewayctlError):
    """The Deployment did not finish rolling out in time."""

    def __init__(self, name: str, namespace: str, timeout: float, last_status: str) -> None:
        super().__init__(
            f"deployment {namespace}/{name} did not finish rolling out within "
            f"{timeout:g}s: {last_status}",
            hint=f"inspect it with `kubectl -n {namespace} rollout status deployment/{name}`",
        )
        self.name = name
        self.namespace = namespace
        self.last_status = last_status


class RolloutFailedError(GatewayctlError):
    """The Deployment reported ProgressDeadlineExceeded."""

    def __init__(self, name: str, namespace: str, message: str) -> None:
        super().__init__(
            f"deployment {namespace}/{name} failed to roll out: {message}",
            hint=f"look at its pods: `kubectl -n {namespace} describe deployment/{name}`",
        )
        self.name = name
        self.namespace = namespace


class KubeApplyError(GatewayctlError):
    """An apply stopped part-way; says which objects were applied and which were not."""

    def __init__(
        self, failed: str, cause: KubeError, applied: tuple[str, ...],
        not_applied: tuple[str, ...],
    ) -> None:
        done = ", ".join(applied) if applied else "none"
        todo = ", ".join(not_applied) if not_applied else "none"
        super().__init__(
            f"apply stopped at {failed}: {cause.message} "
            f"(applied {len(applied)}: {done}; not applied {len(not_applied)}: {todo})",
            hint=cause.hint or "fix the cause and run apply again; applying is idempotent",
        )
        self.failed = failed
        self.cause = cause
        self.applied = applied
        self.not_applied = not_applied


_FORBIDDEN_RE = re.compile(
    r'User "(?P<user>[^"]*)" cannot (?P<verb>\S+) resource "(?P<resource>[^"]*)"'
    r'(?: in API group "(?P<group>[^"]*)")?'
    r'(?: in the namespace "(?P<namespace>[^"]*)")?'
)


def error_from_status(
    code: int, status: dict[str, Any] | None, raw_text: str, what: str
) -> KubeError:
    """Turn a failed response into the matching error. `what` names the request."""
    status = status if isinstance(status, dict) and status.get("kind") == "Status" else None
    server_message = (status or {}).get("message") or raw_text.strip() or f"HTTP {code}"
    reason = (status or {}).get("reason")
    details = (status or {}).get("details") or {}
    causes = details.get("causes") or []
    kw: dict[str, Any] = {"code": code, "reason": reason, "server_message": server_message}
    if code == 401:
        return KubeUnauthorized(
            f"{what}: the Kubernetes API server rejected the credentials (401 Unauthorized): "
            f"{server_message}",
            hint="check the kubeconfig user and that its token or certificate is still valid",
            **kw)
    if code == 403:
        m = _FORBIDDEN_RE.search(server_message)
        if m:
            group = m["group"] or ""
            scope = f' in namespace "{m["namespace"]}"' if m["namespace"] else ""
            return KubeForbidden(
                f'{what}: forbidden: "{m["user"]}" may not {m["verb"]} {m["resource"]}'
                f"{scope}: {server_message}",
                hint=f'grant RBAC verb "{m["verb"]}" on resource "{m["resource"]}" '
                     f'(apiGroup "{group}"){scope} to "{m["user"]}"',
                user=m["user"], verb=m["verb"], resource=m["resource"], api_group=group,
                namespace=m["namespace"], **kw)
        return KubeForbidden(f"{what}: forbidden: {server_message}", **kw)
    if code == 404:
        return KubeNotFound(f"{what}: not found: {server_message}",
                            kind=details.get("kind"), name=details.get("name"), **kw)
    if code == 409:
        conflicts = tuple(
            FieldConflict(_conflict_manager(c.get("message", "")), c.get("field", ""))
            for c in causes if c.get("reason") == "FieldManagerConflict")
        if conflicts:
            listed = ", ".join(f'{c.field} (owned by "{c.manager}")' for c in conflicts)
            return KubeConflict(
                f"{what}: field ownership conflict: {listed}: {server_message}",
                hint="another field manager owns these fields; re-run with --force-conflicts "
                     "to take them over, or drop them from the manifests",
                conflicts=conflicts, **kw)
        return KubeConflict(
            f"{what}: conflict: {server_message}",
            hint="the object changed while gatewayctl was working; run plan again", **kw)
    if code in (400, 422):
        fields = tuple(c["field"] for c in causes if c.get("field"))
        return KubeInvalid(f"{what}: rejected as invalid: {server_message}", fields=fields, **kw)
    if code == 429 or code >= 500:
        return KubeServerError(
            f"{what}: the Kubernetes API server failed ({code} {reason or 'error'}): "
            f"{server_message}",
            hint="the server may be overloaded or restarting; try again later", **kw)
    return KubeError(f"{what}: HTTP {code}: {server_message}", **kw)


def _conflict_manager(message: str) -> str:
    m = re.search(r'conflict with "([^"]*)"', message)
    return m.group(1) if m else "unknown"
