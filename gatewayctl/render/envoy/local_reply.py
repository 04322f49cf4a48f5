"""OpenAI-style JSON bodies for the replies Envoy itself generates.

Envoy's own local replies (RBAC 403, rate-limit 429, buffer 413, no-route 404, no healthy
upstream 503, timeouts) are plain text; each mapper here rewrites one status to
`{"error": {"message", "type", "code"}}`. The Lua filter writes its replies in that form
already and marks them with the request header x-gw-reply, which the mappers skip (a
metadata_filter on the Lua filter's dynamic metadata did not match in this Envoy build).
Upstream responses are never local replies and pass through untouched. Statuses without a
mapper of their own (HTTP/1.0's 426, say) get a generic one per class, so no local reply is
ever plain text. No mapper echoes client input: Envoy cannot mark a value it cuts.
"""

from __future__ import annotations

from typing import Any

from gatewayctl.render.envoy.names import (
    GUARDRAIL_RESPONSE_HEADER,
    LIMIT_RESPONSE_HEADER,
    LUA_REPLY_HEADER,
)

# status -> (message, type, code)
REPLIES: dict[int, tuple[str, str, str]] = {
    400: ("Bad request: %LOCAL_REPLY_BODY%", "invalid_request_error", "bad_request"),
    403: (
        "The request was blocked by a guardrail of this route.",
        "invalid_request_error",
        "content_blocked",
    ),
    404: (
        "No such path: the gateway serves POST /v1/chat/completions, /v1/completions, "
        "/v1/embeddings and GET /v1/models.",
        "invalid_request_error",
        "not_found",
    ),
    408: ("The request timed out.", "invalid_request_error", "request_timeout"),
    413: ("The request body is too large.", "invalid_request_error", "request_too_large"),
    429: (
        "Rate limit exceeded: too many %RESP(" + LIMIT_RESPONSE_HEADER + ")% for this route.",
        "rate_limit_error",
        "rate_limit_exceeded",
    ),
    426: (
        "HTTP/1.0 is not supported: use HTTP/1.1 or HTTP/2.",
        "invalid_request_error",
        "http_version_not_supported",
    ),
    431: ("The request headers are too large.", "invalid_request_error", "headers_too_large"),
    500: ("Internal gateway error: %LOCAL_REPLY_BODY%", "server_error", "internal_error"),
    502: ("Bad gateway: %LOCAL_REPLY_BODY%", "server_error", "bad_gateway"),
    503: ("No upstream available: %LOCAL_REPLY_BODY%", "server_error", "upstream_unavailable"),
    504: ("The upstream timed out.", "server_error", "upstream_timeout"),
}


# Statuses without a mapper of their own, by class: (lowest, highest, message, type, code).
GENERIC_REPLIES: tuple[tuple[int, int, str, str, str], ...] = (
    (
        400,
        499,
        "The request was rejected: %LOCAL_REPLY_BODY%",
        "invalid_request_error",
        "bad_request",
    ),
    (500, 599, "Gateway error: %LOCAL_REPLY_BODY%", "server_error", "gateway_error"),
)


def _status_is(op: str, status: int, key: str) -> dict[str, Any]:
    return {
        "status_code_filter": {
            "comparison": {
                "op": op,
                "value": {"default_value": status, "runtime_key": f"gatewayctl.local_reply.{key}"},
            }
        }
    }


def _not_from_lua() -> dict[str, Any]:
    return {
        "header_filter": {
            "header": {"name": LUA_REPLY_HEADER, "present_match": True, "invert_match": True}
        }
    }


def _body(message: str, err_type: str, code: str) -> dict[str, Any]:
    return {"json_format": {"error": {"message": message, "type": err_type, "code": code}}}


def _generic_mapper(low: int, high: int, message: str, err_type: str, code: str) -> dict[str, Any]:
    return {
        "filter": {
            "and_filter": {
                "filters": [
                    _status_is("GE", low, f"{low // 100}xx.low"),
                    _status_is("LE", high, f"{low // 100}xx.high"),
                    _not_from_lua(),
                ]
            }
        },
        "body_format_override": _body(message, err_type, code),
    }


def _mapper(status: int, message: str, err_type: str, code: str) -> dict[str, Any]:
    mapper: dict[str, Any] = {
        "filter": {
            "and_filter": {
                "filters": [
                    _status_is("EQ", status, str(status)),
                    _not_from_lua(),
                ]
            }
        },
        "body_format_override": _body(message, err_type, code),
    }
    if status == 403:
        mapper["headers_to_add"] = [
            {
                "header": {"key": GUARDRAIL_RESPONSE_HEADER, "value": "blocked"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ]
    return mapper


# GET /v1/models/{model} for an id no route serves (routes.model_routes): the error an unknown
# `model` in a POST body gets, without the id (the path is client input, cut unmarked).
MODEL_NOT_FOUND = (
    "The model does not exist: GET /v1/models lists the models of this gateway.",
    "invalid_request_error",
    "model_not_found",
)


def _model_not_found_mapper() -> dict[str, Any]:
    return {
        "filter": {
            "and_filter": {
                "filters": [
                    _status_is("EQ", 404, "404"),
                    {"header_filter": {"header": {"name": ":method",
                                                  "string_match": {"exact": "GET"}}}},
                    {"header_filter": {"header": {"name": ":path",
                                                  "string_match": {"prefix": "/v1/models/"}}}},
                    _not_from_lua(),
                ]
            }
        },
        "body_format_override": _body(*MODEL_NOT_FOUND),
    }


def _limit_service_mapper() -> dict[str, Any]:
    """Global limits with failureMode closed: the rate limit filter's own 500 when the service
    cannot answer (response flag RLSE) becomes 503, which clients retry."""
    return {
        "filter": {"response_flag_filter": {"flags": ["RLSE"]}},
        "status_code": 503,
        "body_format_override": _body(
            "The gateway could not check this request's limits; try again shortly.",
            "server_error",
            "limit_service_unavailable",
        ),
    }


def render_local_reply_config() -> dict[str, Any]:
    mappers = [_limit_service_mapper()]
    for status in sorted(REPLIES):
        if status == 404:
            # Ahead of the generic 404: the first mapper whose filter matches applies.
            mappers.append(_model_not_found_mapper())
        mappers.append(_mapper(status, *REPLIES[status]))
    mappers += [_generic_mapper(*generic) for generic in GENERIC_REPLIES]
    return {"mappers": mappers}
