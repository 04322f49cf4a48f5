"""The mock provider over real HTTP on loopback: endpoints, determinism, streaming, faults,
credentials, recording, runtime config, keep-alive, and the option parsers."""

from __future__ import annotations

import hashlib
import http.client
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gatewayctl.local.mock_provider import (
    ErrorRateSpec,
    FaultConfig,
    FaultRule,
    FaultSpecError,
    LatencySpec,
    MockProviderConfig,
    MockProviderHandle,
    build_fault_config,
    fault_config_from_json,
    parse_fault_spec,
    parse_latency_spec,
    start_mock_provider,
)

ROOT = Path(__file__).resolve().parents[2]

CHAT = {
    "model": "gpt-a",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hello   there\nworld"},
    ],
}


class Response:
    def __init__(self, status: int, headers: dict[str, str], raw: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = raw

    def json(self) -> Any:
        return json.loads(self.raw)


def call(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: object = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> Response:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    conn.request(method, path, body=data, headers={"content-type": "application/json",
                                                    **(headers or {})})
    resp = conn.getresponse()
    payload = resp.read()
    return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload)


Connect = Callable[[MockProviderHandle], http.client.HTTPConnection]


@pytest.fixture
def connect() -> Iterator[Connect]:
    """Open client connections to a server; all are closed when the test ends."""
    opened: list[http.client.HTTPConnection] = []

    def open_connection(handle: MockProviderHandle) -> http.client.HTTPConnection:
        opened.append(http.client.HTTPConnection("127.0.0.1", handle.port, timeout=10))
        return opened[-1]

    yield open_connection
    for connection in opened:
        connection.close()


def chat(conn: http.client.HTTPConnection, model: str, text: str = "hi") -> Response:
    return call(conn, "POST", "/v1/chat/completions",
                {"model": model, "messages": [{"role": "user", "content": text}]})


def body_id(prefix: str, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return prefix + hashlib.sha256(canonical.encode()).hexdigest()[:24]


@pytest.fixture(scope="module")
def shared() -> Iterator[MockProviderHandle]:
    with start_mock_provider(config=MockProviderConfig(name="shared")) as handle:
        yield handle


@pytest.fixture
def conn(shared: MockProviderHandle, connect: Connect) -> http.client.HTTPConnection:
    return connect(shared)


# -- endpoints --------------------------------------------------------------------------------


def test_chat_completion_is_exact(conn: http.client.HTTPConnection) -> None:
    resp = call(conn, "POST", "/v1/chat/completions", CHAT)

    assert resp.status == 200
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers["x-mock-model"] == "gpt-a"
    assert resp.headers["x-mock-name"] == "shared"
    assert resp.json() == {
        "id": body_id("chatcmpl-mock-", CHAT),
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-a",
        "system_fingerprint": "fp_mock",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "[mock:gpt-a] Hello there world",
                        "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }],
        # prompt: 14 + 19 chars -> ceil(33 / 4) = 9; reply: 30 chars -> 8
        "usage": {"prompt_tokens": 9, "completion_tokens": 8, "total_tokens": 17},
    }


def test_chat_echo_uses_last_user_message_text_parts_and_is_capped(
    conn: http.client.HTTPConnection,
) -> None:
    body = {"model": "m", "messages": [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ignored"},
        {"role": "user", "content": [{"type": "text", "text": "x" * 70},
                                     {"type": "image_url", "image_url": {"url": "u"}}]},
    ]}
    data = call(conn, "POST", "/v1/chat/completions", body).json()

    assert data["choices"][0]["message"]["content"] == "[mock:m] " + "x" * 64
    assert data["usage"] == {"prompt_tokens": 21, "completion_tokens": 19, "total_tokens": 40}


def test_max_tokens_truncates_with_finish_reason_length(conn: http.client.HTTPConnection) -> None:
    body = {**CHAT, "max_tokens": 2}
    data = call(conn, "POST", "/v1/chat/completions", body).json()

    assert data["choices"][0]["message"]["content"] == "[mock:gp"
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 2


def test_completions(conn: http.client.HTTPConnection) -> None:
    body = {"model": "davinci-x", "prompt": "Say this is a test"}
    resp = call(conn, "POST", "/v1/completions", body)

    assert resp.status == 200
    assert resp.headers["x-mock-model"] == "davinci-x"
    assert resp.json() == {
        "id": body_id("cmpl-mock-", body),
        "object": "text_completion",
        "created": 1_700_000_000,
        "model": "davinci-x",
        "system_fingerprint": "fp_mock",
        "choices": [{"text": "[mock:davinci-x] Say this is a test", "index": 0,
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14},
    }


def test_embeddings_are_deterministic_unit_vectors(conn: http.client.HTTPConnection) -> None:
    resp = call(conn, "POST", "/v1/embeddings", {"model": "e", "input": ["a", "b"]})
    data = resp.json()

    assert resp.status == 200
    assert resp.headers["x-mock-model"] == "e"
    assert data["object"] == "list"
    assert data["model"] == "e"
    assert data["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    assert [item["index"] for item in data["data"]] == [0, 1]
    first = data["data"][0]["embedding"]
    assert first == [0.57679, 0.037564, -0.468119, -0.208206, 0.208635, 0.359257, -0.43544,
                     0.203015]
    assert data["data"][1]["embedding"] != first
    for item in data["data"]:
        assert len(item["embedding"]) == 8
        assert math.isclose(math.sqrt(sum(v * v for v in item["embedding"])), 1.0, abs_tol=1e-5)
    again = call(conn, "POST", "/v1/embeddings", {"model": "e", "input": "a"}).json()
    assert again["data"][0]["embedding"] == first
    other_model = call(conn, "POST", "/v1/embeddings", {"model": "f", "input": "a"}).json()
    assert other_model["data"][0]["embedding"] != first


def test_embedding_dimensions_from_request_and_config(connect: Connect) -> None:
    config = MockProviderConfig(embedding_dims=3)
    with start_mock_provider(config=config) as handle:
        conn = connect(handle)
        default = call(conn, "POST", "/v1/embeddings", {"model": "e", "input": "a"}).json()
        asked = call(conn, "POST", "/v1/embeddings",
                     {"model": "e", "input": "a", "dimensions": 5}).json()

    assert len(default["data"][0]["embedding"]) == 3
    assert len(asked["data"][0]["embedding"]) == 5


def test_models_lists_configured_fault_and_seen_models(connect: Connect) -> None:
    config = MockProviderConfig(models=("zeta", "alpha"),
                                faults=build_fault_config(["canary=0.5"]))
    with start_mock_provider(config=config) as handle:
        conn = connect(handle)
        chat(conn, "seen")
        resp = call(conn, "GET", "/v1/models")
        one = call(conn, "GET", "/v1/models/gpt-4o")

    assert resp.status == 200
    assert [m["id"] for m in resp.json()["data"]] == ["alpha", "canary", "seen", "zeta"]
    assert resp.json()["data"][0] == {"id": "alpha", "object": "model", "created": 1_700_000_000,
                                      "owned_by": "gatewayctl-mock"}
    assert one.json()["id"] == "gpt-4o"


def test_healthz(conn: http.client.HTTPConnection) -> None:
    resp = call(conn, "GET", "/healthz")

    assert resp.status == 200
    assert resp.json() == {"status": "ok", "name": "shared"}


def test_unknown_path_and_wrong_method(conn: http.client.HTTPConnection) -> None:
    missing = call(conn, "POST", "/v1/nope", {"model": "m"})
    wrong = call(conn, "GET", "/v1/chat/completions")

    assert missing.status == 404
    assert missing.json() == {"error": {"message": "no such endpoint: POST /v1/nope",
                                        "type": "invalid_request_error", "param": None,
                                        "code": "not_found"}}
    assert wrong.status == 405
    assert wrong.headers["allow"] == "POST"
    assert wrong.json()["error"]["message"] == "/v1/chat/completions only accepts POST"


# -- determinism ------------------------------------------------------------------------------


def test_same_body_same_reply_bytes(conn: http.client.HTTPConnection) -> None:
    first = call(conn, "POST", "/v1/chat/completions", CHAT)
    second = call(conn, "POST", "/v1/chat/completions", CHAT)
    reordered = call(conn, "POST", "/v1/chat/completions", dict(reversed(list(CHAT.items()))))
    different = call(conn, "POST", "/v1/chat/completions", {**CHAT, "temperature": 0})

    assert first.raw == second.raw
    assert reordered.raw == first.raw
    assert different.json()["id"] != first.json()["id"]
    assert different.json()["choices"] == first.json()["choices"]


# -- malformed requests -----------------------------------------------------------------------


def test_malformed_json_is_an_openai_style_400(conn: http.client.HTTPConnection) -> None:
    bad = call(conn, "POST", "/v1/chat/completions", raw=b'{"model": "m", ')
    not_object = call(conn, "POST", "/v1/chat/completions", [1, 2])
    no_model = call(conn, "POST", "/v1/chat/completions", {"messages": []})
    no_messages = call(conn, "POST", "/v1/chat/completions", {"model": "m"})

    assert bad.status == 400
    assert bad.json() == {"error": {"message": "the request body is not valid JSON",
                                    "type": "invalid_request_error", "param": None,
                                    "code": "invalid_json"}}
    assert not_object.json()["error"]["message"] == "the request body must be a JSON object"
    assert no_model.status == 400
    assert no_model.json()["error"]["code"] == "invalid_model"
    assert no_messages.status == 400
    assert no_messages.json()["error"] == {"message": "'messages' must be a non-empty array",
                                           "type": "invalid_request_error", "param": None,
                                           "code": "invalid_messages"}
    assert call(conn, "GET", "/healthz").status == 200  # the connection survived


# -- streaming --------------------------------------------------------------------------------


def read_raw_response(sock: socket.socket) -> tuple[bytes, list[bytes]]:
    """The head and the list of chunk payloads of one chunked response."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, buf = buf.split(b"\r\n\r\n", 1)
    chunks: list[bytes] = []
    while True:
        while b"\r\n" not in buf:
            buf += sock.recv(65536)
        size_line, buf = buf.split(b"\r\n", 1)
        size = int(size_line, 16)
        while len(buf) < size + 2:
            buf += sock.recv(65536)
        if size == 0:
            assert buf == b"\r\n"
            return head, chunks
        chunks.append(buf[:size])
        assert buf[size:size + 2] == b"\r\n"
        buf = buf[size + 2:]


def stream(handle: MockProviderHandle, path: str, body: dict[str, Any]) -> tuple[bytes,
                                                                                   list[bytes]]:
    data = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", handle.port), timeout=10) as sock:
        sock.sendall(b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n%s" % (path.encode(), len(data), data))
        return read_raw_response(sock)


def test_chat_streaming_chunk_by_chunk(shared: MockProviderHandle) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    head, chunks = stream(shared, "/v1/chat/completions", body)

    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\ncontent-type: text/event-stream\r\n" in head
    assert b"\r\ntransfer-encoding: chunked\r\n" in head
    assert b"\r\nx-mock-model: gpt-a" in head
    assert all(chunk.startswith(b"data: ") and chunk.endswith(b"\n\n") for chunk in chunks)
    assert chunks[-1] == b"data: [DONE]\n\n"
    events = [json.loads(chunk[6:]) for chunk in chunks[:-1]]
    expected_id = body_id("chatcmpl-mock-", body)
    assert {e["id"] for e in events} == {expected_id}
    assert {e["object"] for e in events} == {"chat.completion.chunk"}
    deltas = [e["choices"][0]["delta"] for e in events[:-1]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert [d.get("content") for d in deltas[1:-1]] == ["[mock:gpt-a] ", "Hello ", "there ",
                                                       "world"]
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert all(e["usage"] is None for e in events[:-1])
    assert events[-1]["choices"] == []
    assert events[-1]["usage"] == {"prompt_tokens": 9, "completion_tokens": 8,
                                   "total_tokens": 17}


def test_streamed_text_equals_unstreamed(conn: http.client.HTTPConnection) -> None:
    plain = call(conn, "POST", "/v1/chat/completions", CHAT).json()
    streamed = call(conn, "POST", "/v1/chat/completions", {**CHAT, "stream": True})
    lines = [line for line in streamed.raw.decode().split("\n\n") if line]
    events = [json.loads(line[6:]) for line in lines[:-1]]

    assert lines[-1] == "data: [DONE]"
    assert all("usage" not in e for e in events)
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
    assert text == plain["choices"][0]["message"]["content"]


def test_stream_in_pieces_of_n_characters(conn: http.client.HTTPConnection) -> None:
    """`x-mock-stream-piece-chars: N`: each content delta in pieces of N characters, an event
    each; the same text, finish and usage."""
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    whole = call(conn, "POST", "/v1/chat/completions", body)
    cut = call(conn, "POST", "/v1/chat/completions", body, {"x-mock-stream-piece-chars": "2"})

    def events(raw: bytes) -> list[Any]:
        return [json.loads(line[6:]) for line in raw.split(b"\n\n") if line.startswith(b"data: {")]

    def contents(raw: bytes) -> list[str]:
        return [e["choices"][0]["delta"].get("content") for e in events(raw) if e["choices"]]

    words = contents(whole.raw)[1:-1]
    assert "".join(words) == "[mock:gpt-a] Hello there world"
    assert contents(cut.raw)[1:-1] == [w[i:i + 2] for w in words for i in range(0, len(w), 2)]
    assert events(cut.raw)[-1] == events(whole.raw)[-1]  # the usage
    assert events(cut.raw)[-2] == events(whole.raw)[-2]  # the finish
    assert cut.raw.endswith(b"data: [DONE]\n\n")


def test_completions_streaming(shared: MockProviderHandle) -> None:
    body = {"model": "c", "prompt": "one two", "stream": True,
            "stream_options": {"include_usage": True}}
    _, chunks = stream(shared, "/v1/completions", body)
    events = [json.loads(chunk[6:]) for chunk in chunks[:-1]]

    assert chunks[-1] == b"data: [DONE]\n\n"
    assert [e["choices"][0]["text"] for e in events[:-1]] == ["[mock:c] ", "one ", "two", ""]
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert events[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 4,
                                   "total_tokens": 6}


# -- faults -----------------------------------------------------------------------------------


def test_error_rate_fails_exactly_every_fifth_request(connect: Connect) -> None:
    config = MockProviderConfig(faults=build_fault_config(["canary=0.2:503"]))
    with start_mock_provider(config=config) as handle:
        conn = connect(handle)
        statuses = [chat(conn, "canary").status for _ in range(50)]
        stable = [chat(conn, "stable").status for _ in range(20)]
        failing = chat(conn, "canary")
        for _ in range(3):
            chat(conn, "canary")
        failed = chat(conn, "canary")

    assert statuses.count(503) == 10
    assert [i + 1 for i, s in enumerate(statuses) if s == 503] == [5, 10, 15, 20, 25, 30, 35, 40,
                                                                  45, 50]
    assert set(statuses) == {200, 503}
    assert stable == [200] * 20
    assert failing.status == 200  # the 51st
    assert failed.status == 503  # the 55th
    assert failed.headers["x-mock-fault"] == "error"
    assert failed.headers["x-mock-model"] == "canary"
    assert failed.json() == {"error": {"message": "injected fault for model canary",
                                       "type": "server_error", "param": None,
                                       "code": "service_unavailable"}}


def test_default_rule_429_with_retry_after(connect: Connect) -> None:
    config = MockProviderConfig(faults=build_fault_config(["50%:429"]))
    with start_mock_provider(config=config) as handle:
        conn = connect(handle)
        statuses = [chat(conn, "any").status for _ in range(4)]
        limited = chat(conn, "other")
        limited = chat(conn, "other")

    assert statuses == [200, 429, 200, 429]
    assert limited.status == 429
    assert limited.headers["retry-after"] == "1"
    assert limited.json()["error"]["type"] == "rate_limit_error"


def test_reset_closes_the_connection_without_a_response(connect: Connect) -> None:
    config = MockProviderConfig(faults=build_fault_config(["broken=1:reset"]))
    with start_mock_provider(config=config) as handle:
        conn = connect(handle)
        with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
            chat(conn, "broken")
        healthy = chat(connect(handle), "fine")
        records = handle.requests()

    assert healthy.status == 200
    assert [(r["model"], r["status"]) for r in records] == [("broken", "reset"), ("fine", 200)]


def test_latency_injection_is_added_per_model(connect: Connect) -> None:
    config = MockProviderConfig(faults=build_fault_config(latency_specs=["slow=150ms"]))
    with start_mock_provider(config=config) as handle:
        conn = connect(handle)
        chat(conn, "fast")  # warm the connection
        started = time.perf_counter()
        slow = chat(conn, "slow")
        slow_seconds = time.perf_counter() - started
        started = time.perf_counter()
        chat(conn, "fast")
        fast_seconds = time.perf_counter() - started

    assert slow.status == 200
    assert 0.150 <= slow_seconds < 0.150 + 1.0
    assert fast_seconds < 0.100


# -- credentials ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"authorization": "Bearer wrong"}, 401),
        ({"authorization": "sk-upstream"}, 401),
        ({"authorization": "Bearer sk-upstream"}, 200),
        ({"x-api-key": "sk-upstream"}, 200),
        ({"api-key": "sk-upstream"}, 200),
    ],
)
def test_require_key(headers: dict[str, str], status: int, connect: Connect) -> None:
    with start_mock_provider(config=MockProviderConfig(require_key="sk-upstream")) as handle:
        conn = connect(handle)
        resp = call(conn, "POST", "/v1/chat/completions", CHAT, headers)
        health = call(conn, "GET", "/healthz")

    assert resp.status == status
    assert health.status == 200
    if status == 401:
        assert resp.json() == {"error": {
            "message": "missing or invalid API key for the mock provider",
            "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}


# -- recording and runtime config -------------------------------------------------------------


def test_requests_are_recorded_and_cleared(connect: Connect) -> None:
    with start_mock_provider(config=MockProviderConfig(record_limit=3)) as handle:
        conn = connect(handle)
        call(conn, "POST", "/v1/chat/completions?api-version=2024-06-01", CHAT,
             {"X-Custom-Header": "Yes", "Authorization": "Bearer injected"})
        call(conn, "POST", "/v1/chat/completions", raw=b"not json")
        call(conn, "GET", "/healthz")  # not recorded
        recorded = call(conn, "GET", "/_mock/requests").json()["requests"]
        for _ in range(3):
            chat(conn, "m")
        capped = call(conn, "GET", "/_mock/requests").json()["requests"]
        cleared = call(conn, "DELETE", "/_mock/requests").json()
        after = call(conn, "GET", "/_mock/requests").json()

    first = recorded[0]
    assert [r["seq"] for r in recorded] == [1, 2]
    assert first["method"] == "POST"
    assert first["path"] == "/v1/chat/completions"
    assert first["query"] == "api-version=2024-06-01"
    assert first["headers"]["x-custom-header"] == "Yes"
    assert first["headers"]["authorization"] == "Bearer injected"
    assert first["body"] == CHAT
    assert first["model"] == "gpt-a"
    assert first["status"] == 200
    assert recorded[1]["body"] == "not json"
    assert recorded[1]["status"] == 400
    assert [r["seq"] for r in capped] == [3, 4, 5]
    assert cleared == {"cleared": 3}
    assert after == {"requests": []}


def test_runtime_config_update_restarts_counters(connect: Connect) -> None:
    with start_mock_provider() as handle:
        conn = connect(handle)
        before = call(conn, "GET", "/_mock/config").json()
        assert chat(conn, "canary").status == 200
        document = {"default": {"latency_ms": 0},
                    "models": {"canary": {"error_rate": 0.5, "error_status": 429}}}
        put = call(conn, "PUT", "/_mock/config", document)
        after = call(conn, "GET", "/_mock/config").json()
        statuses = [chat(conn, "canary").status for _ in range(4)]
        invalid = call(conn, "PUT", "/_mock/config", {"models": {"x": {"error_rate": 2}}})
        unknown = call(conn, "PUT", "/_mock/config", {"default": {"rate": 1}})

    assert before == {"default": {"error_rate": 0.0, "error_status": 503, "latency_ms": 0.0},
                      "models": {}}
    assert put.status == 200
    assert after == {"default": {"error_rate": 0.0, "error_status": 503, "latency_ms": 0.0},
                     "models": {"canary": {"error_rate": 0.5, "error_status": 429,
                                           "latency_ms": 0.0}}}
    assert statuses == [200, 429, 200, 429]
    assert invalid.status == 400
    assert invalid.json()["error"]["message"] == "models.x: error rate 2.0 is not between 0 and 1"
    assert unknown.json()["error"]["message"] == (
        "default: unknown field(s) ['rate']; valid: ['error_rate', 'error_status', 'latency_ms']"
    )


def test_python_handle_api_and_isolation(connect: Connect) -> None:
    with start_mock_provider(config=MockProviderConfig(name="a")) as first, \
            start_mock_provider(config=MockProviderConfig(name="b")) as second:
        first.set_faults(FaultConfig(models={"m": FaultRule(error_rate=1.0)}))
        first_status = chat(connect(first), "m").status
        second_resp = chat(connect(second), "m")

        assert first.faults.models["m"].error_rate == 1.0
        assert second.faults == FaultConfig()
        assert first_status == 503
        assert second_resp.status == 200
        assert second_resp.headers["x-mock-name"] == "b"
        assert [r["status"] for r in first.requests()] == [503]
        assert first.clear_requests() == 1
        assert first.requests() == []
        assert len(second.requests()) == 1
        assert first.url == f"http://127.0.0.1:{first.port}"


def test_stop_closes_the_listener() -> None:
    handle = start_mock_provider()
    port = handle.port
    idle = socket.create_connection(("127.0.0.1", port), timeout=5)
    idle.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
    assert idle.recv(65536).startswith(b"HTTP/1.1 200 OK")  # accepted, now idle
    handle.stop()
    handle.stop()  # idempotent

    assert idle.recv(1) == b""  # open connections are closed too
    idle.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)


# -- HTTP/1.1 ---------------------------------------------------------------------------------


def test_keep_alive_serves_many_requests_on_one_connection(
    conn: http.client.HTTPConnection,
) -> None:
    assert chat(conn, "m", "one").status == 200
    sock = conn.sock
    replies = [chat(conn, "m", str(i)).json() for i in range(5)]

    assert conn.sock is sock
    assert [r["choices"][0]["message"]["content"] for r in replies] == [
        f"[mock:m] {i}" for i in range(5)]


def test_pipelined_and_chunked_requests(shared: MockProviderHandle) -> None:
    body = json.dumps({"model": "p", "messages": [{"role": "user", "content": "chunky"}]}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:]))
    requests = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
        + chunked + b"0\r\n\r\n"
        + b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", shared.port), timeout=10) as sock:
        sock.sendall(requests)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk

    first_head, rest = data.split(b"\r\n\r\n", 1)
    length = int(first_head.split(b"content-length: ")[1].split(b"\r\n")[0])
    first = json.loads(rest[:length])
    second_head, second_body = rest[length:].split(b"\r\n\r\n", 1)
    assert first_head.startswith(b"HTTP/1.1 200 OK")
    assert first["choices"][0]["message"]["content"] == "[mock:p] chunky"
    assert second_head.startswith(b"HTTP/1.1 200 OK")
    assert b"\r\nconnection: close" in second_head
    assert json.loads(second_body) == {"status": "ok", "name": "shared"}


def test_bad_request_line_gets_400_and_close(shared: MockProviderHandle) -> None:
    with socket.create_connection(("127.0.0.1", shared.port), timeout=10) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk

    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert data.endswith(b'"code":"invalid_request"}}')


# -- option parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("gpt-4o-2024-11-20=0.2:503", ErrorRateSpec("gpt-4o-2024-11-20", 0.2, 503)),
        ("gpt-4o=0.2", ErrorRateSpec("gpt-4o", 0.2, 503)),
        ("claude=1:reset", ErrorRateSpec("claude", 1.0, "reset")),
        ("5%:429", ErrorRateSpec(None, 0.05, 429)),
        ("*=0.5", ErrorRateSpec(None, 0.5, 503)),
        ("llama3:8b=0.25:500", ErrorRateSpec("llama3:8b", 0.25, 500)),
    ],
)
def test_parse_fault_spec(spec: str, expected: ErrorRateSpec) -> None:
    assert parse_fault_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("m=1.5", "error rate '1.5' is not between 0 and 1 (or 0% and 100%)"),
        ("m=abc", "error rate 'abc' is not a number like 0.2 or 20%"),
        ("m=0.2:200", "error status '200' is not valid: use 400-599 (e.g. 503) or reset"),
        ("=0.2", "--error-rate '=0.2': the model before '=' is empty, "
                 "e.g. 'gpt-4o-2024-11-20=0.2:503'"),
        ("m=", "--error-rate 'm=': the rate is missing, e.g. 'gpt-4o-2024-11-20=0.2:503'"),
    ],
)
def test_parse_fault_spec_errors(spec: str, message: str) -> None:
    with pytest.raises(FaultSpecError) as excinfo:
        parse_fault_spec(spec)
    assert str(excinfo.value) == message


def test_parse_latency_spec() -> None:
    assert parse_latency_spec("gpt-4o=150ms") == LatencySpec("gpt-4o", 150.0)
    assert parse_latency_spec("1.5s") == LatencySpec(None, 1500.0)
    assert parse_latency_spec("m=0") == LatencySpec("m", 0.0)
    with pytest.raises(FaultSpecError) as excinfo:
        parse_latency_spec("m=150")
    assert str(excinfo.value) == "duration '150' is not valid: use e.g. 150ms, 1.5s or 0"


def test_build_fault_config_merges_options() -> None:
    faults = build_fault_config(["0.1:429", "m=0.2", "m=0.3:reset"], ["50ms", "m=150ms"])

    assert faults.default == FaultRule(error_rate=0.1, error_status=429, latency_ms=50.0)
    assert dict(faults.models) == {"m": FaultRule(0.3, "reset", 150.0)}
    assert faults.rule_for("other") == faults.default
    only_latency = build_fault_config(["0.1"], ["x=5ms"])
    assert only_latency.models["x"] == FaultRule(0.1, 503, 5.0)


def test_fault_document_round_trips() -> None:
    faults = build_fault_config(["b=0.2:reset", "a=1:429"], ["a=10ms"])
    document = json.loads(json.dumps(faults.to_json()))

    assert list(document["models"]) == ["a", "b"]
    assert fault_config_from_json(document) == faults


# -- foreground server ------------------------------------------------------------------------


def test_run_mock_provider_stops_cleanly_on_sigterm() -> None:
    code = ("import sys\nfrom gatewayctl.local.mock_provider import MockProviderConfig, "
            "run_mock_provider\nsys.exit(run_mock_provider('127.0.0.1', 0, "
            "MockProviderConfig(name='fg')))\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env=env)
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()
        assert line.startswith("mock-provider fg listening on http://127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        assert call(conn, "GET", "/healthz").json() == {"status": "ok", "name": "fg"}
        conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
