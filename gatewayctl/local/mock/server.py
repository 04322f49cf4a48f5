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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from gatewayctl.local.mock import (
    anthropic_api,
    bedrock_api,
    escapes,
    gemini_api,
    openai_api,
    replies,
    sigv4,
)
from gatewayctl.local.mock.config import (
    FaultConfig,
    FaultRule,
    FaultSpecError,
    MockProviderConfig,
    fault_config_from_json,
)
from gatewayctl.local.mock.conversation import answer
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
    if openai_api.uses_tools(body):
        ans = answer(model, openai_api.read(body))
        reply_id = f"chatcmpl-mock-{replies.digest(body)}"
        if body.get("stream") is True:
            return Outcome(events=openai_api.stream(reply_id, model, ans, _wants_usage(body)))
        return Outcome(openai_api.completion(reply_id, model, ans))
    reply = replies.chat_reply(model, body)
    if body.get("stream") is True:
        return Outcome(events=replies.chat_stream(reply, _wants_usage(body)))
    return Outcome(replies.chat_completion(reply))


def _completions(model: str, body: dict[str, Any]) -> Outcome:
    reply = replies.completion_reply(model, body)
    if body.get("stream") is True:
        return Outcome(events=replies.completion_stream(reply, _wants_usage(body)))
    return Outcome(replies.completion(reply))


_EVENTSTREAM = ("content-type", "application/vnd.amazon.eventstream")
NativeError = (anthropic_api.AnthropicError, bedrock_api.BedrockError, gemini_api.GeminiError,
               sigv4.SignatureError)


@dataclass(frozen=True, slots=True)
class NativeCall:
    """A request to one of the native APIs: which, the model its path names, the operation."""

    api: str  # "anthropic" | "bedrock" | "gemini"
    model: str | None
    op: str


def native_call(path: str) -> NativeCall | None:
    if path == "/v1/messages":
        return NativeCall("anthropic", None, "messages")
    for api, pattern in (("bedrock", bedrock_api.PATH), ("gemini", gemini_api.PATH)):
        found = pattern.match(path)
        if found is not None:
            return NativeCall(api, unquote(found["model"]), found["op"])
    return None


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
        native = native_call(request.path)
        if native is not None:
            return await self._respond_native(native, request, record, valid_json, writer)
        keep = request.keep_alive

        def fail(status: int, message: str, code: str | None = None,
                 extra: list[tuple[str, str]] | None = None) -> tuple[int, bool]:
            self._write_json(writer, status, replies.error_body(status, message, code),
                             extra or [], keep)
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
        model_header = [("x-mock-model", model)]
        fault = await self._fault(model, writer)
        if fault == "reset":
            return "reset", False
        if isinstance(fault, int):
            return fail(fault, f"injected fault for model {model}", None,
                        self._fault_headers(model, fault))
        try:
            outcome = handler(model, body)
        except RequestError as exc:
            return fail(exc.status, exc.message, exc.code, model_header)
        chat = request.path == "/v1/chat/completions"
        escaped = chat and request.headers.get("x-mock-json-escapes") == "letters"
        newline = request.headers.get("x-mock-newline", "") if chat else ""
        if outcome.events is None:
            reply = outcome.body
            if len(newline) > 1 and reply is not None:
                reply = escapes.newlines_reply(reply, newline)
            if escaped and reply is not None:
                writer.write(format_response(200, [_JSON, *self._base_headers, *model_header],
                                             escapes.escape_reply(reply), keep))
            else:
                self._write_json(writer, 200, reply, model_header, keep)
            return 200, keep
        events = outcome.events
        piece = request.headers.get("x-mock-stream-piece-chars", "") if chat else ""
        if piece.isdigit() and int(piece) > 0:
            events = escapes.content_pieces(events, int(piece))
        if len(newline) > 1:
            events = escapes.newlines_events(events, newline)
        if escaped:
            events = escapes.escape_events(events)
        await self._send_stream(writer, events, model_header, request.headers)
        return 200, keep

    async def _fault(self, model: str, writer: asyncio.StreamWriter) -> int | str | None:
        """Count the request; its injected failure (a status, or "reset" after resetting the
        connection), or None. Latency is added either way."""
        rule = self._faults.rule_for(model)
        failing = self._count(model, rule)
        if rule.latency_ms:
            await asyncio.sleep(rule.latency_ms / 1000.0)
        if not failing:
            return None
        if rule.error_status == "reset":
            self._reset(writer)
            return "reset"
        return int(rule.error_status)

    @staticmethod
    def _fault_headers(model: str, status: int) -> list[tuple[str, str]]:
        extra = [("x-mock-model", model), ("x-mock-fault", "error")]
        if status == 429:
            extra.append(("retry-after", "1"))
        return extra

    async def _respond_native(
        self,
        call: NativeCall,
        request: Request,
        record: dict[str, Any],
        valid_json: bool,
        writer: asyncio.StreamWriter,
    ) -> tuple[int | str, bool]:
        """Anthropic, Bedrock and Gemini, each strictly as the real API (their modules)."""
        keep = request.keep_alive

        def fail(status: int, message: str, extra: list[tuple[str, str]] | None = None,
                 reason: str | None = None, name: str | None = None) -> tuple[int, bool]:
            headers = list(extra or [])
            if call.api == "anthropic":
                body: dict[str, Any] = anthropic_api.error_body(status, message)
            elif call.api == "bedrock":
                body = bedrock_api.error_body(status, message)
                headers += bedrock_api.error_headers(status, name)
            else:
                body = gemini_api.error_body(status, message, reason)
            self._write_json(writer, status, body, headers, keep)
            return status, keep

        if request.method != "POST":
            return fail(405, f"{request.path} only accepts POST", [("allow", "POST")])
        query = request.target.split("?", 1)[1] if "?" in request.target else ""
        try:
            self._authorize_native(call, request, query)
        except NativeError as exc:
            status = 403 if isinstance(exc, sigv4.SignatureError) else int(exc.status)
            return fail(status, exc.message, reason=getattr(exc, "reason", None),
                        name=getattr(exc, "kind", None))
        body = record["body"]
        if not valid_json or not isinstance(body, dict):
            return fail(400, "the request body is not a JSON object")
        model = call.model or body.get("model")
        if not isinstance(model, str) or not model:
            return fail(400, "model: Field required")
        record["model"] = model
        fault = await self._fault(model, writer)
        if fault == "reset":
            return "reset", False
        if isinstance(fault, int):
            return fail(fault, f"injected fault for model {model}",
                        self._fault_headers(model, fault))
        headers = [("x-mock-model", model)]
        try:
            if call.api == "anthropic":
                msg_id = f"msg_mock_{replies.digest(body)}"
                json_body, events = anthropic_api.reply(model, body, msg_id)
                kind = _SSE
            elif call.api == "bedrock":
                rid = bedrock_api.request_id(request.body)
                headers.append(("x-amzn-requestid", rid))
                ans = answer(model, bedrock_api.read(body))
                stream = call.op == "converse-stream"
                json_body = None if stream else bedrock_api.converse(rid, ans)
                events = bedrock_api.converse_stream(rid, ans) if stream else None
                kind = _EVENTSTREAM
            else:
                ans, count = gemini_api.generate_reply(model, body)
                response_id = replies.digest(body)
                json_body, events, kind = None, None, _SSE
                if call.op == "generateContent":
                    json_body = gemini_api.generate(response_id, model, ans, count)
                else:
                    chunks = gemini_api.stream_chunks(response_id, model, ans, count)
                    sse = "alt=sse" in query.split("&")
                    events = gemini_api.sse(chunks) if sse else gemini_api.json_array(chunks)
                    kind = _SSE if sse else _JSON
        except NativeError as exc:
            return fail(getattr(exc, "status", 400), exc.message, headers)
        if events is None:
            self._write_json(writer, 200, json_body, headers, keep)
        else:
            await self._send_stream(writer, events, headers, request.headers, kind)
        return 200, keep

    def _authorize_native(self, call: NativeCall, request: Request, query: str) -> None:
        if call.api == "anthropic":
            anthropic_api.check_headers(request.headers, self.config.require_key)
        elif call.api == "gemini":
            gemini_api.check_key(request.headers, query, self.config.require_key)
        else:
            host = request.headers.get("host", "localhost")
            sigv4.verify(request.method, f"http://{host}{request.target}", request.headers,
                         request.body, self.config.aws_credentials, "bedrock")

    async def _send_stream(
        self, writer: asyncio.StreamWriter, events: list[bytes], headers: list[tuple[str, str]],
        request_headers: Mapping[str, str], kind: tuple[str, str] = _SSE,
    ) -> None:
        """The stream's head and events. One HTTP chunk per event, handed to the socket in one
        write: the client still parses the stream event by event, and the mock stays cheap
        under load. A request with `x-mock-stream-pace-ms: D` gets each event in writes of its
        own, D ms apart (with `x-mock-stream-write-bytes: N`, writes of at most N bytes, so an
        event is cut in the middle), the way a model's tokens arrive."""
        writer.write(format_head(200, [
            kind, ("cache-control", "no-cache"), ("transfer-encoding", "chunked"),
            *self._base_headers, *headers]))
        pace = request_headers.get("x-mock-stream-pace-ms")
        if pace is None or not pace.isdigit():
            writer.write(b"".join([*map(format_chunk, events), LAST_CHUNK]))
            return
        size = request_headers.get("x-mock-stream-write-bytes", "")
        step = int(size) if size.isdigit() and int(size) > 0 else None
        for data in map(format_chunk, events):
            for at in range(0, len(data), step or len(data)):
                writer.write(data[at:at + (step or len(data))])
                await writer.drain()
                await asyncio.sleep(int(pace) / 1000.0)
        writer.write(LAST_CHUNK)

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
