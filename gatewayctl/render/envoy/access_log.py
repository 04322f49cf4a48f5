"""The access log: one JSON line per request, from Envoy's formatter and the Lua metadata.

Keys come out sorted (Envoy's json_format sorts them). Values the Lua filter did not set, for
example tokens of a failed request, are null.
"""

from __future__ import annotations

from typing import Any

from gatewayctl.render.envoy.names import FILE_LOG_TYPE, METADATA_NS, STDOUT_LOG_TYPE


def _md(key: str) -> str:
    return f"%DYNAMIC_METADATA({METADATA_NS}:{key})%"


LOG_FORMAT: dict[str, str] = {
    "start_time": "%START_TIME%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "status": "%RESPONSE_CODE%",
    "flags": "%RESPONSE_FLAGS%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "duration_ms": "%DURATION%",
    "upstream_ms": "%RESPONSE_DURATION%",
    "route": _md("route"),
    "requested_model": _md("requested_model"),
    "model": "%UPSTREAM_METADATA(gw:model)%",
    "backend_cluster": "%UPSTREAM_CLUSTER%",
    "upstream_host": "%UPSTREAM_HOST%",
    "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
    "consumer": _md("consumer"),
    "prompt_tokens": _md("prompt_tokens"),
    "completion_tokens": _md("completion_tokens"),
    "cost_usd": _md("cost_usd"),
    "prompt": _md("prompt"),
    "prompt_version": _md("prompt_version"),
    "guardrail": _md("guardrail"),
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
}


def render_access_log(path: str) -> list[dict[str, Any]]:
    log_format = {"json_format": dict(LOG_FORMAT)}
    if path == "/dev/stdout":
        config: dict[str, Any] = {"@type": STDOUT_LOG_TYPE, "log_format": log_format}
        name = "envoy.access_loggers.stdout"
    else:
        config = {"@type": FILE_LOG_TYPE, "path": path, "log_format": log_format}
        name = "envoy.access_loggers.file"
    return [{"name": name, "typed_config": config}]
