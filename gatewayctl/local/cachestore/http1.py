"""A small HTTP/1.1 server on asyncio: what Envoy's `httpCall` sends, and no more.

Keep-alive connections; requests with a body carry `content-length` (the cache filter always
sets it; chunked bodies are refused with 411); one request at a time per connection (Envoy's
HTTP/1.1 connection pool never pipelines). A request larger than `max_body` is refused with
413 and the connection closed. The handler is a plain function: (method, path, headers, body)
-> (status, headers, body); it runs on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

Headers = dict[str, str]
Response = tuple[int, Headers, bytes]
Handler = Callable[[str, str, Headers, bytes], Response]

REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 404: "Not Found",
           405: "Method Not Allowed", 411: "Length Required", 413: "Content Too Large",
           503: "Service Unavailable"}
MAX_HEAD = 16 * 1024


def encode_response(status: int, headers: Headers, body: bytes, close: bool = False) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"content-length: {len(body)}")
    if close:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def parse_head(head: bytes) -> tuple[str, str, Headers]:
    """Method, path and lower-cased headers of a request head (without its blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1.1 request line: {lines[0][:80]!r}")
    headers: Headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"not a header line: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], headers


class Server:
    """Listens until closed; `port` is the one it got."""

    def __init__(self, handler: Handler, max_body: int) -> None:
        self.handler = handler
        self.max_body = max_body
        self.listener: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self.listener is not None
        return int(self.listener.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> None:
        self.listener = await asyncio.start_server(self._serve, host, port)

    async def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
        for writer in list(self.writers):
            writer.transport.abort()
        if self.listener is not None:
            await self.listener.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self.writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; whether the connection stays open."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            return False  # closed between requests
        if len(head) > MAX_HEAD:
            writer.write(encode_response(400, {}, b"request head too large", close=True))
            return False
        try:
            method, path, headers = parse_head(head[:-4])
        except ValueError as exc:
            writer.write(encode_response(400, {}, str(exc).encode(), close=True))
            return False
        if "transfer-encoding" in headers:
            writer.write(encode_response(411, {}, b"send content-length", close=True))
            return False
        try:
            size = int(headers.get("content-length", "0"))
        except ValueError:
            size = -1
        if size < 0 or size > self.max_body:
            writer.write(encode_response(413, {}, b"request body too large", close=True))
            return False
        body = await reader.readexactly(size) if size else b""
        status, out_headers, out_body = self.handler(method, path, headers, body)
        close = headers.get("connection", "").lower() == "close"
        writer.write(encode_response(status, out_headers, out_body, close=close))
        await writer.drain()
        return not close
