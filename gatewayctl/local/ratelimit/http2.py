"""A unary gRPC server over HTTP/2 (RFC 9113), cleartext, for the stand-in's one method.

What a gRPC client over h2c needs and nothing more: the connection preface, SETTINGS, PING,
WINDOW_UPDATE, HEADERS (+ CONTINUATION) decoded with HPACK (the `hpack` package), DATA, RST_STREAM
and GOAWAY; one unary call per stream, answered with response headers, one length-prefixed
message and the `grpc-status` trailer. Written for the rate limit stand-in because grpcio's
server spent about 300 µs of CPU per call on this machine, several times the work of the call
itself (docs/performance.md); this one runs on asyncio's protocol callbacks in one thread.

The handler is `handle(path, message) -> (grpc status, response message or error text)`;
responses are encoded with literal header fields that never touch the HPACK dynamic table, so
only the decoder keeps state.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import cast

import hpack

log = logging.getLogger("gatewayctl.ratelimit")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
# What this side lets the client send before a WINDOW_UPDATE: per stream and, raised once at
# the start and topped up as calls arrive, per connection.
RECEIVE_WINDOW = 1 << 30
DEFAULT_WINDOW = 65535
GRPC_OK, GRPC_UNIMPLEMENTED, GRPC_INTERNAL, GRPC_UNAVAILABLE = 0, 12, 13, 14

Handler = Callable[[str, bytes], tuple[int, bytes]]

_HEADER = struct.Struct(">IBI")  # 24-bit length is split off by hand: (length << 8 | type)


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return _HEADER.pack(len(payload) << 8 | kind, flags, stream) + payload


def _literal(name: bytes, value: bytes) -> bytes:
    """A header field as 'literal without indexing, new name', no Huffman (RFC 7541 6.2.2)."""
    return b"\x00" + _length(name) + name + _length(value) + value


def _length(text: bytes) -> bytes:
    n = len(text)
    if n < 127:
        return bytes([n])
    out, n = bytearray([127]), n - 127
    while n >= 128:
        out.append(n % 128 + 128)
        n //= 128
    out.append(n)
    return bytes(out)


# ":status: 200" is entry 8 of HPACK's static table; content-type is entry 31 (4-bit prefix).
_RESPONSE_HEADERS = b"\x88" + b"\x0f\x10" + _length(b"application/grpc") + b"application/grpc"


def _status(code: int, message: bytes = b"") -> bytes:
    out = _literal(b"grpc-status", b"%d" % code)
    return out + _literal(b"grpc-message", message) if message else out


class _Stream:
    __slots__ = ("blocks", "data", "path", "send_window")

    def __init__(self, send_window: int) -> None:
        self.blocks: list[bytes] = []
        self.data = bytearray()
        self.path = ""
        self.send_window = send_window


class Connection(asyncio.Protocol):
    def __init__(self, handler: Handler, open_connections: set[Connection]) -> None:
        self.handler = handler
        self.open_connections = open_connections
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.preface = False
        self.decoder = hpack.Decoder()
        self.paths: dict[bytes, str] = {}  # blocks that left the table as it was -> :path
        self.streams: dict[int, _Stream] = {}
        self.headers_stream = 0  # a header block continues in CONTINUATION frames
        self.peer_stream_window = DEFAULT_WINDOW
        self.send_window = DEFAULT_WINDOW
        self.received = 0
        self.pending: list[tuple[int, bytes, bytes]] = []  # answers waiting for window
        self.block_ends_stream = 0  # END_STREAM of the HEADERS frame the block started in

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's does not subclass asyncio.Transport)
        self.transport = cast(asyncio.Transport, transport)
        self.open_connections.add(self)
        settings = struct.pack(">HI", SETTINGS_INITIAL_WINDOW_SIZE, RECEIVE_WINDOW)
        window = struct.pack(">I", RECEIVE_WINDOW - 65535)
        self.transport.write(frame(SETTINGS, 0, 0, settings) + frame(WINDOW_UPDATE, 0, 0, window))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            self._frames()
        except (ValueError, hpack.HPACKError, struct.error) as exc:
            log.error("closing a connection that broke HTTP/2: %s", exc)
            self._close(1)  # PROTOCOL_ERROR

    def _close(self, code: int) -> None:
        if self.transport is not None:
            self.transport.write(frame(GOAWAY, 0, 0, struct.pack(">II", 0, code)))
            self.transport.close()

    def _frames(self) -> None:
        buf = self.buffer
        if not self.preface:
            if len(buf) < len(PREFACE):
                return
            if bytes(buf[: len(PREFACE)]) != PREFACE:
                raise ValueError("no HTTP/2 connection preface")
            del buf[: len(PREFACE)]
            self.preface = True
        pos, out = 0, bytearray()
        while len(buf) - pos >= 9:
            word, flags, stream = _HEADER.unpack_from(buf, pos)
            length, kind = word >> 8, word & 0xFF
            end = pos + 9 + length
            if len(buf) < end:
                break
            self._frame(kind, flags, stream & 0x7FFFFFFF, bytes(buf[pos + 9 : end]), out)
            pos = end
        del buf[:pos]
        if self.received > RECEIVE_WINDOW // 2:
            out += frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self.received))
            self.received = 0
        if out and self.transport is not None:
            self.transport.write(bytes(out))

    def _frame(self, kind: int, flags: int, sid: int, payload: bytes, out: bytearray) -> None:
        if self.headers_stream and kind != CONTINUATION:
            raise ValueError("a header block was interrupted")
        if kind == DATA:
            self.received += len(payload)
            stream = self.streams.get(sid)
            if stream is not None:
                stream.data += _unpad(payload, flags)
                if flags & END_STREAM:
                    self._answer(sid, out)
        elif kind in (HEADERS, CONTINUATION):
            self._header_block(kind, flags, sid, payload, out)
        elif kind == SETTINGS:
            if not flags & ACK:
                for i in range(0, len(payload) - len(payload) % 6, 6):
                    ident, value = struct.unpack_from(">HI", payload, i)
                    if ident == SETTINGS_INITIAL_WINDOW_SIZE:
                        for s in self.streams.values():
                            s.send_window += value - self.peer_stream_window
                        self.peer_stream_window = value
                out += frame(SETTINGS, ACK, 0)
        elif kind == PING:
            if not flags & ACK:
                out += frame(PING, ACK, 0, payload)
        elif kind == WINDOW_UPDATE:
            (increment,) = struct.unpack(">I", payload[:4])
            if sid == 0:
                self.send_window += increment & 0x7FFFFFFF
            elif sid in self.streams:
                self.streams[sid].send_window += increment & 0x7FFFFFFF
            self._flush(out)
        elif kind == RST_STREAM:
            self.streams.pop(sid, None)
        elif kind == GOAWAY and self.transport is not None:
            self.transport.close()
        # PRIORITY, PUSH_PROMISE (never from a client) and unknown types: ignored

    def _header_block(self, kind: int, flags: int, sid: int, payload: bytes,
                      out: bytearray) -> None:
        if kind == HEADERS:
            payload = _unpad(payload, flags)
            if flags & PRIORITY_FLAG:
                payload = payload[5:]
            stream = self.streams.get(sid)
            if stream is None:  # a new call; else trailers, which a unary request never has
                stream = self.streams[sid] = _Stream(self.peer_stream_window)
            stream.blocks = [payload]
            self.headers_stream = sid
            self.block_ends_stream = flags & END_STREAM
        else:
            if sid != self.headers_stream:
                raise ValueError("CONTINUATION on another stream")
            self.streams[sid].blocks.append(payload)
        if flags & END_HEADERS:
            self.headers_stream = 0
            stream = self.streams[sid]
            stream.path = self._path(b"".join(stream.blocks))
            stream.blocks = []
            if self.block_ends_stream:
                self._answer(sid, out)

    def _path(self, block: bytes) -> str:
        """The block's :path. A client repeating its calls sends the same few blocks: Envoy's
        are indexed fields plus :path as a literal that is never indexed, so they leave the
        HPACK table as it was. A block decoded without changing the table is remembered, and
        the same bytes mean the same headers until a block that changes the table comes (a
        literal with indexing, a size update): then every remembered block is forgotten."""
        path = self.paths.get(block)
        if path is not None:
            return path
        before = _table_state(self.decoder)
        path = ""
        for name, value in self.decoder.decode(block, raw=True):
            if name == b":path":
                path = value.decode("latin-1")
        if _same_table(before, _table_state(self.decoder)):
            if len(self.paths) < 64:
                self.paths[block] = path
        else:
            self.paths.clear()
        return path

    def _answer(self, sid: int, out: bytearray) -> None:
        stream = self.streams[sid]
        body = bytes(stream.data)
        if len(body) < 5 or body[0] != 0 or int.from_bytes(body[1:5], "big") != len(body) - 5:
            code, reply = GRPC_INTERNAL, b"expected one uncompressed gRPC message"
        else:
            try:
                code, reply = self.handler(stream.path, body[5:])
            except Exception as exc:  # a bug must not take the connection's other calls down
                log.exception("call failed")
                code, reply = GRPC_INTERNAL, str(exc).encode()
        if code != GRPC_OK:
            del self.streams[sid]
            block = _RESPONSE_HEADERS + _status(code, reply.replace(b"\n", b" ")[:200])
            out += frame(HEADERS, END_HEADERS | END_STREAM, sid, block)
            return
        message = b"\x00" + len(reply).to_bytes(4, "big") + reply
        out += frame(HEADERS, END_HEADERS, sid, _RESPONSE_HEADERS)
        self.pending.append((sid, message, _status(GRPC_OK)))
        self._flush(out)

    def _flush(self, out: bytearray) -> None:
        """Send the answers the flow-control windows allow, in order."""
        while self.pending:
            sid, message, trailers = self.pending[0]
            stream = self.streams.get(sid)
            if stream is None:  # reset meanwhile
                self.pending.pop(0)
                continue
            if len(message) > min(self.send_window, stream.send_window):
                return
            self.send_window -= len(message)
            self.pending.pop(0)
            del self.streams[sid]
            out += frame(DATA, 0, sid, message)
            out += frame(HEADERS, END_HEADERS | END_STREAM, sid, trailers)

    def connection_lost(self, exc: Exception | None) -> None:
        self.open_connections.discard(self)
        self.transport = None
        self.streams.clear()
        self.pending.clear()


_TableState = tuple[int, object, int]


def _table_state(decoder: hpack.Decoder) -> _TableState:
    """What tells whether a header block changed the decoder's dynamic table: its length, its
    newest entry (every insertion is a new tuple) and its size limit."""
    table = decoder.header_table
    entries = table.dynamic_entries
    return len(entries), entries[0] if entries else None, table.maxsize


def _same_table(a: _TableState, b: _TableState) -> bool:
    return a[0] == b[0] and a[1] is b[1] and a[2] == b[2]


def _unpad(payload: bytes, flags: int) -> bytes:
    if not flags & PADDED:
        return payload
    pad = payload[0]
    if pad >= len(payload):
        raise ValueError("padding longer than the frame")
    return payload[1 : len(payload) - pad]


class Server:
    """Listens (asyncio sets TCP_NODELAY on every accepted connection) until closed."""

    def __init__(self) -> None:
        self.connections: set[Connection] = set()
        self.listener: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.listener is not None
        return int(self.listener.sockets[0].getsockname()[1])

    async def start(self, handler: Handler, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.listener = await loop.create_server(
            lambda: Connection(handler, self.connections), host, port)

    async def close(self) -> None:
        """Stop listening and drop every open connection (its calls fail at the client)."""
        if self.listener is not None:
            self.listener.close()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        if self.listener is not None:
            await self.listener.wait_closed()
