"""The compiled auth filter against the Lua one, request by request: the same gateway served
both ways (dataPlaneFilters lua and module) gets the same seeded random requests (key headers
in every spelling, valid, unknown, blank, repeated; bodies under and over the bounds), and
each must answer the same: status, error body, and the consumer the access log names."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatewayctl.ir import GatewayIR
from gatewayctl.local.mock_provider import MockProviderConfig, start_mock_provider
from gatewayctl.render.envoy import render_envoy
from tests.render import irs
from tests.render.conftest import needs_envoy
from tests.render.harness import (
    RunningEnvoy,
    loopback_options,
    running_envoy,
    with_filters,
    write_secrets,
)

pytestmark = [needs_envoy, pytest.mark.envoy]

SEARCH, HELPDESK = irs.CONSUMER_KEYS["search-app"], irs.CONSUMER_KEYS["helpdesk"]
KEY_VALUES = [SEARCH, HELPDESK, "nope", "", "   ", f" {SEARCH}\t", f"{SEARCH}x", HELPDESK.upper()]
AUTH_SCHEMES = ["Bearer ", "bearer ", "BEARER\t", "Bearer  ", "Basic ", "Bearer", "Bearerx ", ""]


def _closed(base: GatewayIR) -> GatewayIR:
    """Only the api-key route `keys` (search-app only): no route is open to anonymous
    clients, none to helpdesk, so the auth filter itself answers 401 and 403."""
    return dataclasses.replace(base, routes=(base.route("keys"),))


def _requests(seed: int, count: int) -> list[tuple[str, list[tuple[str, str]], int]]:
    """(model, headers (repeats allowed), body padding) for each request."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        headers: list[tuple[str, str]] = []
        for _ in range(rng.randrange(0, 4)):
            name = rng.choice(["authorization", "x-api-key", "api-key"])
            value = rng.choice(KEY_VALUES)
            if name == "authorization":
                value = rng.choice(AUTH_SCHEMES) + value
            headers.append((name, value))
        padding = rng.choice([0, 0, 0, 2 * 1024 * 1024])  # over the 1 MiB bound of most
        out.append((rng.choice(["keys", "chat", "no-such-model"]), headers, padding))
    return out


def _send(envoy: RunningEnvoy, rid: str, model: str, headers: list[tuple[str, str]],
          padding: int) -> tuple[int, Any]:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "x" * padding}]})
    conn = http.client.HTTPConnection("127.0.0.1", envoy.listener_port, timeout=30)
    try:
        conn.putrequest("POST", "/v1/chat/completions")
        for name, value in [("content-type", "application/json"), ("x-request-id", rid),
                            ("content-length", str(len(body))), *headers]:
            conn.putheader(name, value)
        conn.endheaders()
        with contextlib.suppress(OSError):  # an early reply may close before the body is sent
            conn.send(body.encode())
        resp = conn.getresponse()
        data = resp.read()
        error = json.loads(data)["error"] if resp.status != 200 else None
        return resp.status, error
    finally:
        conn.close()


@contextlib.contextmanager
def _gateway(tmp_path: Path, ir: GatewayIR, mock_url: str) -> Iterator[RunningEnvoy]:
    secrets = tmp_path / "secrets"
    write_secrets(secrets, {("openai-credentials", "api-key"): irs.OPENAI_KEY,
                            **{(f"{n}-key", "key"): k for n, k in irs.CONSUMER_KEYS.items()}})
    options = loopback_options(tmp_path, secrets, provider_overrides={"openai": mock_url})
    with running_envoy(tmp_path / "envoy", render_envoy(ir, options),
                       listener_port=options.listener_port, admin_port=options.admin_port,
                       access_log=tmp_path / "access.log") as envoy:
        yield envoy


def _consumers(envoy: RunningEnvoy, count: int) -> dict[str, Any]:
    lines = envoy.access_log_lines(expected=count, timeout_s=10)
    return {line["request_id"]: (line.get("gateway") or {}).get("consumer") for line in lines}


@pytest.mark.parametrize("closed", [False, True], ids=["open-routes", "keys-only"])
def test_module_answers_as_the_lua_does(tmp_path: Path, closed: bool) -> None:
    base = irs.build_ir()
    ir = _closed(base) if closed else base
    mock = start_mock_provider(config=MockProviderConfig(name="openai",
                                                         require_key=irs.OPENAI_KEY))
    requests = _requests(21 + closed, 60)
    answers: dict[str, list[tuple[int, Any]]] = {}
    consumers: dict[str, dict[str, Any]] = {}
    try:
        for filters in ("lua", "module"):
            with _gateway(tmp_path / filters, with_filters(ir, filters), mock.url) as envoy:
                answers[filters] = [_send(envoy, f"r{i}", *request)
                                    for i, request in enumerate(requests)]
                consumers[filters] = _consumers(envoy, len(requests))
    finally:
        mock.stop()
    for i, request in enumerate(requests):
        assert answers["module"][i] == answers["lua"][i], (request, answers["lua"][i])
        assert consumers["module"].get(f"r{i}") == consumers["lua"].get(f"r{i}"), request
    statuses = {status for status, _ in answers["lua"]}
    # the corpus reaches every answer the auth filter can give (and some it lets through)
    assert {200, 401, 413} <= statuses, statuses
    if closed:
        assert 403 in statuses
