"""`Status` bodies the real API server returns for failures, as an exception type."""

from __future__ import annotations

from typing import Any

from .resources import ResourceType

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class APIError(Exception):
    """A failure answered with a `Status` body."""

    def __init__(
        self,
        code: int,
        message: str,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details

    def body(self) -> dict[str, Any]:
        return status_body(self.code, self.message, self.reason, self.details)


def status_body(
    code: int, message: str, reason: str | None = None, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or REASONS.get(code, "Unknown"),
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


def _details(rt: ResourceType, name: str) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name, "kind": rt.plural}
    if rt.group:
        d["group"] = rt.group
    return d


def not_found(rt: ResourceType, name: str) -> APIError:
    return APIError(404, f'{rt.qualified_resource} "{name}" not found', "NotFound",
                    _details(rt, name))


def namespace_not_found(namespace: str) -> APIError:
    return APIError(404, f'namespaces "{namespace}" not found', "NotFound",
                    {"name": namespace, "kind": "namespaces"})


def already_exists(rt: ResourceType, name: str) -> APIError:
    return APIError(409, f'{rt.qualified_resource} "{name}" already exists', "AlreadyExists",
                    _details(rt, name))


def update_conflict(rt: ResourceType, name: str) -> APIError:
    return APIError(
        409,
        f'Operation cannot be fulfilled on {rt.qualified_resource} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        "Conflict",
        _details(rt, name),
    )


def invalid(rt: ResourceType, name: str, causes: list[tuple[str, str, str]]) -> APIError:
    """causes: (reason, field, message-after-field) as field.ErrorList renders them."""
    rendered = [f"{field}: {msg}" for _, field, msg in causes]
    joined = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    details = _details(rt, name)
    details["kind"] = rt.kind
    details["causes"] = [
        {"reason": reason, "message": msg, "field": field} for reason, field, msg in causes
    ]
    return APIError(422, f'{rt.qualified_kind} "{name}" is invalid: {joined}', "Invalid", details)


def forbidden(
    rt: ResourceType, name: str, user: str, verb: str, namespace: str | None
) -> APIError:
    subject = f'{rt.qualified_resource} "{name}"' if name else rt.qualified_resource
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    message = (
        f'{subject} is forbidden: User "{user}" cannot {verb} resource "{rt.plural}" '
        f'in API group "{rt.group}"{where}'
    )
    return APIError(403, message, "Forbidden", _details(rt, name))


def apply_conflicts(conflicts: list[tuple[str, str]], api_version: str) -> APIError:
    """conflicts: (manager, field path) pairs, as the real field manager reports them."""
    causes = [
        {"reason": "FieldManagerConflict",
         "message": f'conflict with "{manager}" using {api_version}',
         "field": field}
        for manager, field in conflicts
    ]
    n = len(conflicts)
    if n == 1:
        manager, field = conflicts[0]
        message = (f'Apply failed with 1 conflict: conflict with "{manager}" '
                   f"using {api_version}: {field}")
    else:
        by_manager: dict[str, list[str]] = {}
        for manager, field in conflicts:
            by_manager.setdefault(manager, []).append(field)
        parts = []
        for manager, fields in by_manager.items():
            noun = "conflict" if len(fields) == 1 else "conflicts"
            lines = "\n".join(f"- {f}" for f in fields)
            parts.append(f'{noun} with "{manager}" using {api_version}:\n{lines}')
        message = f"Apply failed with {n} conflicts: " + "\n".join(parts)
    return APIError(409, message, "Conflict", {"causes": causes})
