"""Running cases through the local gateway (`gatewayctl up`): real HTTP to its Envoy.

Each request carries its case's consumer key (read from the local gateway's own copy of the
secrets, never printed) and an `x-request-id` of its own. The status and `x-gateway-model` /
`x-gateway-prompt-version` come from the response; the route from the access log line with
that request id; what reached the provider from the mock provider's record of the request
(Envoy forwards `x-request-id`). The gateway must serve exactly the root's IR: otherwise the
cases would test another configuration.
"""

from __future__ import annotations

import http.client
import json
import shlex
import time
import uuid
from dataclasses import dataclass
from typing import Any

from gatewayctl.errors import GatewayctlError
from gatewayctl.ir import GatewayIR, to_json
from gatewayctl.local.gateway import is_running
from gatewayctl.local.state import LocalState, StateDir
from gatewayctl.request_tests.cases import Case, Observed, Result, check, provider_texts

LOG_WAIT_S = 5.0
TIMEOUT_S = 60.0


@dataclass(frozen=True)
class _Sent:
    case: Case
    request_id: str
    status: int
    headers: dict[str, str]
    error: str | None = None


def _state(state_dir: StateDir, ir: GatewayIR, root: str) -> LocalState:
    current = state_dir.read_state()
    if current is None or not is_running(state_dir=state_dir.path):
        raise GatewayctlError("no local gateway is running",
                              hint=f"start it with `gatewayctl up {root}`, then run the tests "
                              "again")
    served = state_dir.read_ir()
    if served is None or to_json(served) != to_json(ir):
        raise GatewayctlError(
            f"the local gateway serves another configuration than this root (it serves "
            f"{current.root})",
            hint=f"apply this root first: `gatewayctl apply {root} --live local`")
    return current


def _consumer_key(state_dir: StateDir, ir: GatewayIR, name: str) -> str:
    consumer = next(c for c in ir.consumers if c.name == name)
    if consumer.api_key is None:
        raise GatewayctlError(f"consumer {name} has no API key: it authenticates with JWTs",
                              hint="give the case the token in headers: "
                              "{authorization: Bearer <token>} instead of consumer")
    path = state_dir.secrets_dir / consumer.api_key.name / consumer.api_key.key
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        raise GatewayctlError(f"the local gateway has no key for consumer {name}",
                              hint="restart it with `gatewayctl up ROOT`") from None


def _send(port: int, case: Case, key: str | None) -> _Sent:
    request_id = f"gatewayctl-test-{uuid.uuid4().hex}"
    headers = {k: v for k, v in case.headers}
    if key is not None:
        headers = {k: v for k, v in headers.items() if k != "authorization"}
        headers["authorization"] = f"Bearer {key}"
    headers.setdefault("content-type", "application/json")
    headers["x-request-id"] = request_id
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    try:
        conn.request("POST", case.path, body=case.body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return _Sent(case, request_id, resp.status,
                     {k.lower(): v for k, v in resp.getheaders()})
    except (OSError, http.client.HTTPException) as err:
        return _Sent(case, request_id, 0, {}, f"the request failed: {err}")
    finally:
        conn.close()


def _log_lines(state_dir: StateDir, ids: set[str]) -> dict[str, dict[str, Any]]:
    """Access-log lines by request id, once every id is there (bounded wait: Envoy flushes
    the log every 200 ms)."""
    deadline = time.monotonic() + LOG_WAIT_S
    while True:
        found: dict[str, dict[str, Any]] = {}
        try:
            text = state_dir.access_log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
        for line in text.splitlines():
            if not any(i in line for i in ids):
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("request_id") in ids:
                found[entry["request_id"]] = entry
        if len(found) == len(ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _mock_records(port: int) -> list[dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    try:
        conn.request("GET", "/_mock/requests")
        data = json.loads(conn.getresponse().read())
    except (OSError, http.client.HTTPException, ValueError):
        return []
    finally:
        conn.close()
    records = data.get("requests") if isinstance(data, dict) else None
    return records if isinstance(records, list) else []


def _observed(sent: _Sent, line: dict[str, Any] | None, ir: GatewayIR,
              records: dict[str, dict[str, Any]]) -> Observed:
    gateway = (line or {}).get("gateway") or {}
    route = gateway.get("route") if isinstance(gateway, dict) else None
    if route is None and "x-gateway-route" in sent.headers:
        public = sent.headers["x-gateway-route"]
        route = next((r.name for r in ir.routes if r.public_model == public), None)
    model = sent.headers.get("x-gateway-model")
    version = sent.headers.get("x-gateway-prompt-version")
    record = records.get(sent.request_id)
    texts: tuple[str, ...] | None
    if record is not None:
        body = record.get("body")
        texts = provider_texts(body, json.dumps(body, ensure_ascii=False))
    elif line is not None and line.get("upstream_host") is None:
        texts = ()  # the gateway answered itself: nothing reached a provider
    else:
        texts = None
    return Observed(
        status=sent.status,
        route=route if isinstance(route, str) else None,
        models=(model,) if model and 200 <= sent.status < 300 else (),
        prompt_versions=(int(version),) if version and version.isdigit() else (),
        provider_texts=texts,
    )


def run_live(ir: GatewayIR, cases: list[Case], state_dir: StateDir | None = None,
             root: str = "ROOT") -> list[Result]:
    """Send the cases through the local gateway; `root` is the root as the user named it (for
    the commands the hints print)."""
    for case in cases:
        if case.jwt_issuer is not None:
            raise GatewayctlError(
                f"{case.where}: case {case.title!r} names a JWT issuer, which only an offline "
                "run can stand in for (gatewayctl holds no issuer's signing key)",
                hint="for --live local, send the token itself: "
                "headers: {authorization: Bearer <token>}")
        if case.used:
            raise GatewayctlError(
                f"{case.where}: case {case.title!r} gives limit counts (used), which only an "
                "offline run can stand in for (the local gateway keeps its own counts)",
                hint="run it offline (gatewayctl test without --live); for --live local, "
                "send the requests that use the limit up in earlier cases")
    state_dir = state_dir or StateDir()
    current = _state(state_dir, ir, shlex.quote(root))
    keys = {c: _consumer_key(state_dir, ir, c) for c in {x.consumer for x in cases} if c}
    sent = [_send(current.listener_port, case, keys.get(case.consumer or ""))
            for case in cases]
    lines = _log_lines(state_dir, {s.request_id for s in sent if s.error is None})
    records: dict[str, dict[str, Any]] = {}
    for record in _mock_records(current.mock_port):
        headers = record.get("headers") if isinstance(record, dict) else None
        rid = headers.get("x-request-id") if isinstance(headers, dict) else None
        if isinstance(rid, str):
            records[rid] = record
    results = []
    for s in sent:
        if s.error is not None:
            results.append(Result(s.case, None, (), s.error))
            continue
        observed = _observed(s, lines.get(s.request_id), ir, records)
        results.append(Result(s.case, observed, check(s.case.expect, observed)))
    return results
