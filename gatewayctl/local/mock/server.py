"""The mock provider's asyncio server: routing, credential check, fault injection, recording.

State (fault config, per-model counters, recorded requests) lives on one `MockProviderServer`
and is touched only from its event loop, so two servers never share anything.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gatewayctl.local.mock import replies
from gatewayctl.local.mock.config import (
    FaultConfig,
    FaultRule,
    FaultSpecError,
    MockProviderConfig,
    fault_config_from_json,
)
from gatewayctl.local.mock.replies import RequestError
from gatewayctl.local.mock.wire import (
    HEAD_LIMIT,
    LAST_CHUNK,
    ProtocolError,
    Request,
    format_chunk,
    format_head,
    format_response,
)
from gatewayctl.local.mock.wire import read_request as read_http_request

log = logging.getLogger(__name__)

_JSON = ("content-type", "application/json")
_SSE = ("content-type", "text/event-stream")
_WRITE_HIGH_WATER = 64 * 1024

Handler = Callable[[str, dict[str, Any]], "Outcome"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """A generation result: a JSON body, or SSE events to send chunked."""

    body: dict[str, Any] | None = None
    events: list[bytes] | None = None


def _wants_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _chat(model: str, body: dict[str, Any]) -> Outcome:
    reply = replies.chat_reply(model, body)
    if body.get("stream") is True:
        return Outcome(events=replies.chat_stream(reply, _wants_usage(body)))
    return Outcome(replies.chat_completion(reply))


def _completions(model: str, body: dict[str, Any]) -> Outcome:
    reply = replies.completion_reply(model, body)
    if body.get("stream") is True:
        return Outcome(events=replies.completion_stream(reply, _wants_usage(body)))
    return Outcome(replies.completion(reply))


def _messages(model: str, body: dict[str, Any]) -> Outcome:
    reply = replies.message_reply(model, body)
    if body.get("stream") is True:
        return Outcome(events=replies.message_stream(reply))
    return Outcome(replies.message(reply))


class MockProviderServer:
    """One mock upstream. Create, `await start(host, port)`, `await close()`."""

    def __init__(self, config: MockProviderConfig) -> None:
        self.config = config
        self._faults = config.faults
        self._counters: dict[str, int] = {}
        self._records: deque[dict[str, Any]] = deque(maxlen=config.record_limit)
        self._seq = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._closing = False
        self._base_headers = [("x-mock-name", config.name)]
        self._routes: dict[str, Handler] = {
            "/v1/chat/completions": _chat,
            "/v1/completions": _completions,
            "/v1/embeddings": self._embeddings,
            "/v1/messages": _messages,
        }

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> int:
        """Listen and return the bound port (useful with port 0)."""
        self._server = await asyncio.start_server(
            self._serve_connection, host, port, limit=HEAD_LIMIT, backlog=1024
        )
        sockname: tuple[Any, ...] = self._server.sockets[0].getsockname()
        return int(sockname[1])

    async def close(self) -> None:
        """Stop listening, drop every open connection, and let their sockets close."""
        self._closing = True
        # Python 3.11 leaks a connection accepted just before Server.close() (its transport
        # cannot attach to a closed server), so first let accepts in flight reach the handler,
        # which now aborts them, and only then close the listener.
        for _ in range(3):
            await asyncio.sleep(0)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # A transport closes on the loop iteration after abort(): let that happen.
        await asyncio.sleep(0)

    # -- state, for the in-process handle ------------------------------------------------------

    @property
    def faults(self) -> FaultConfig:
        return self._faults

    def set_faults(self, faults: FaultConfig) -> None:
        """Replace the fault config and restart every model's counter at zero."""
        self._faults = faults
        self._counters.clear()

    def recorded_requests(self) -> list[dict[str, Any]]:
        return list(self._records)

    def clear_requests(self) -> int:
        count = len(self._records)
        self._records.clear()
        return count

    # -- connection loop -----------------------------------------------------------------------

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self._closing:
            writer.transport.abort()
            return
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while True:
                try:
                    request = await read_http_request(reader, writer, self.config.max_body_bytes)
                except ProtocolError as exc:
                    body = replies.error_body(exc.status, exc.message)
                    self._write_json(writer, exc.status, body, [], keep_alive=False)
                    break
                if request is None or not await self._respond(request, writer):
                    break
                if writer.transport.get_write_buffer_size() > _WRITE_HIGH_WATER:
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Only close() cancels; ending quietly keeps asyncio from logging the cancellation.
            pass
        except Exception:  # a bug must cost one connection, never the server
            log.exception("mock provider: unexpected error")
        finally:
            if task is not None:
                self._tasks.discard(task)
            if self._closing:
                writer.transport.abort()  # do not wait for a slow reader at shutdown
            else:
                writer.close()

    def _write_json(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: object,
        headers: list[tuple[str, str]],
        keep_alive: bool,
    ) -> None:
        writer.write(format_response(status, [_JSON, *self._base_headers, *headers],
                                     replies.dumps(body), keep_alive))

    async def _respond(self, request: Request, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must close afterwards."""
        path = request.path
        if path.startswith("/_mock/"):
            status, body = self._admin(request)
            self._write_json(writer, status, body, [], request.keep_alive)
            return request.keep_alive
        if path == "/healthz":
            self._write_json(writer, 200, {"status": "ok", "name": self.config.name}, [],
                             request.keep_alive)
            return request.keep_alive
        record, valid_json = self._record(request)
        outcome, keep = await self._respond_api(request, record, valid_json, writer)
        record["status"] = outcome
        return keep

    async def _respond_api(
        self,
        request: Request,
        record: dict[str, Any],
        valid_json: bool,
        writer: asyncio.StreamWriter,
    ) -> tuple[int | str, bool]:
        anthropic = request.path == "/v1/messages"
        keep = request.keep_alive

        def fail(status: int, message: str, code: str | None = None,
                 extra: list[tuple[str, str]] | None = None) -> tuple[int, bool]:
            body = (replies.anthropic_error_body(status, message) if anthropic
                    else replies.error_body(status, message, code))
            self._write_json(writer, status, body, extra or [], keep)
            return status, keep

        if not self._authorized(request.headers):
            return fail(401, "missing or invalid API key for the mock provider")
        handler = self._routes.get(request.path)
        if handler is None:
            if request.path == "/v1/models" or request.path.startswith("/v1/models/"):
                return self._models(request, writer)
            return fail(404, f"no such endpoint: {request.method} {request.path}")
        if request.method != "POST":
            return fail(405, f"{request.path} only accepts POST", None, [("allow", "POST")])
        body = record["body"]
        if not valid_json:
            return fail(400, "the request body is not valid JSON", "invalid_json")
        if not isinstance(body, dict):
            return fail(400, "the request body must be a JSON object", "invalid_json")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return fail(400, "'model' is required and must be a non-empty string", "invalid_model")
        record["model"] = model
        rule = self._faults.rule_for(model)
        failing = self._count(model, rule)
        if rule.latency_ms:
            await asyncio.sleep(rule.latency_ms / 1000.0)
        model_header = [("x-mock-model", model)]
        if failing:
            if rule.error_status == "reset":
                self._reset(writer)
                return "reset", False
            extra = [*model_header, ("x-mock-fault", "error")]
            if rule.error_status == 429:
                extra.append(("retry-after", "1"))
            return fail(int(rule.error_status), f"injected fault for model {model}",
                        None, extra)
        try:
            outcome = handler(model, body)
        except RequestError as exc:
            return fail(exc.status, exc.message, exc.code, model_header)
        if outcome.events is None:
            self._write_json(writer, 200, outcome.body, model_header, keep)
            return 200, keep
        self._write_stream(writer, outcome.events, model_header)
        return 200, keep

    def _write_stream(
        self, writer: asyncio.StreamWriter, events: list[bytes], headers: list[tuple[str, str]]
    ) -> None:
        writer.write(format_head(200, [
            _SSE, ("cache-control", "no-cache"), ("transfer-encoding", "chunked"),
            *self._base_headers, *headers]))
        # One HTTP chunk per event, handed to the socket in one write: the client still parses
        # the stream event by event, and the mock stays cheap under load.
        writer.write(b"".join([*map(format_chunk, events), LAST_CHUNK]))

    def _models(self, request: Request, writer: asyncio.StreamWriter) -> tuple[int, bool]:
        keep = request.keep_alive
        if request.method != "GET":
            body = replies.error_body(405, f"{request.path} only accepts GET")
            self._write_json(writer, 405, body, [("allow", "GET")], keep)
            return 405, keep
        if request.path == "/v1/models":
            names = sorted({*self.config.models, *self._faults.models, *self._counters})
            self._write_json(writer, 200, replies.model_list(names), [], keep)
        else:
            name = request.path[len("/v1/models/"):]
            self._write_json(writer, 200, replies.model_object(name), [], keep)
        return 200, keep

    def _embeddings(self, model: str, body: dict[str, Any]) -> Outcome:
        return Outcome(replies.embeddings(model, body, self.config.embedding_dims))

    # -- pieces --------------------------------------------------------------------------------

    def _authorized(self, headers: dict[str, str]) -> bool:
        key = self.config.require_key
        if key is None:
            return True
        return (headers.get("authorization") == f"Bearer {key}"
                or headers.get("x-api-key") == key or headers.get("api-key") == key)

    def _count(self, model: str, rule: FaultRule) -> bool:
        """Advance the model's counter; True when this request is one of the failing ones."""
        n = self._counters.get(model, 0) + 1
        self._counters[model] = n
        if not rule.error_rate:
            return False
        rate = rule.rate_fraction
        return (n * rate.numerator) // rate.denominator > (
            (n - 1) * rate.numerator) // rate.denominator

    def _record(self, request: Request) -> tuple[dict[str, Any], bool]:
        """Record the request; the flag says whether its body parsed as JSON."""
        body: object = None
        valid_json = False
        if request.body:
            try:
                body = json.loads(request.body)
                valid_json = True
            except ValueError:
                body = request.body.decode("utf-8", "replace")
        self._seq += 1
        target = request.target
        record: dict[str, Any] = {
            "seq": self._seq,
            "method": request.method,
            "path": request.path,
            "query": target.split("?", 1)[1] if "?" in target else "",
            "headers": request.headers,
            "body": body,
            "model": None,
            "status": None,
        }
        self._records.append(record)
        return record, valid_json

    @staticmethod
    def _reset(writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER 0 turns close into a TCP RST, which is what "reset" promises.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    def _admin(self, request: Request) -> tuple[int, object]:
        method, path = request.method, request.path
        if path == "/_mock/requests":
            if method == "GET":
                return 200, {"requests": self.recorded_requests()}
            if method == "DELETE":
                return 200, {"cleared": self.clear_requests()}
            return 405, replies.error_body(405, "/_mock/requests accepts GET and DELETE")
        if path == "/_mock/config":
            if method == "GET":
                return 200, self._faults.to_json()
            if method == "PUT":
                try:
                    faults = fault_config_from_json(json.loads(request.body or b"null"))
                except ValueError as exc:  # FaultSpecError and JSONDecodeError alike
                    code = "invalid_config" if isinstance(exc, FaultSpecError) else "invalid_json"
                    return 400, replies.error_body(400, str(exc), code)
                self.set_faults(faults)
                return 200, faults.to_json()
            return 405, replies.error_body(405, "/_mock/config accepts GET and PUT")
        return 404, replies.error_body(404, f"no such endpoint: {method} {path}")
