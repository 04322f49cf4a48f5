"""The stand-in's HTTP/2 gRPC server (local/ratelimit/http2.py) against a client written here
from RFC 9113 and the gRPC-over-HTTP/2 spec: header blocks split over CONTINUATION frames,
padding, PING, unknown methods, and answers held back by the client's flow-control window
until it grants more. Envoy, its real client, is in test_global.py."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager

import hpack
import pytest

from gatewayctl.local.ratelimit.http2 import Server

ECHO = "/test.Echo/Upper"


def upper(path: str, message: bytes) -> tuple[int, bytes]:
    if path != ECHO:
        return 12, f"unknown method {path}".encode()
    return 0, message.upper()


@contextmanager
def server() -> Iterator[int]:
    import asyncio
    import threading

    loop = asyncio.new_event_loop()
    srv = Server()
    loop.run_until_complete(srv.start(upper, "127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield srv.port
    finally:
        asyncio.run_coroutine_threadsafe(srv.close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


class Client:
    def __init__(self, port: int, initial_window: int | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buffer = b""
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        settings = struct.pack(">HI", 4, initial_window) if initial_window is not None else b""
        self.sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + self.frame(4, 0, 0, settings))

    @staticmethod
    def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
        return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(
            ">I", stream) + payload

    def read_frame(self) -> tuple[int, int, int, bytes]:
        while True:
            if len(self.buffer) >= 9:
                length = int.from_bytes(self.buffer[:3], "big")
                if len(self.buffer) >= 9 + length:
                    kind, flags = self.buffer[3], self.buffer[4]
                    stream = int.from_bytes(self.buffer[5:9], "big")
                    payload = self.buffer[9 : 9 + length]
                    self.buffer = self.buffer[9 + length :]
                    return kind, flags, stream, payload
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the connection"
            self.buffer += chunk

    def headers_block(self, path: str) -> bytes:
        return bytes(self.encoder.encode([(":method", "POST"), (":scheme", "http"),
                                          (":path", path), (":authority", "rls"),
                                          ("content-type", "application/grpc"),
                                          ("te", "trailers")]))

    def call(self, stream: int, path: str, message: bytes, *, split: bool = False) -> None:
        block = self.headers_block(path)
        body = b"\x00" + struct.pack(">I", len(message)) + message
        if split:  # HEADERS + CONTINUATION, then padded DATA in two frames
            out = self.frame(1, 0, stream, block[:3]) + self.frame(9, 0x4, stream, block[3:])
            half = len(body) // 2
            out += self.frame(0, 0x8, stream, bytes([4]) + body[:half] + b"\0" * 4)
            out += self.frame(0, 0x1, stream, body[half:])
        else:
            out = self.frame(1, 0x4, stream, block) + self.frame(0, 0x1, stream, body)
        self.sock.sendall(out)

    def call_block(self, stream: int, block: bytes, message: bytes) -> None:
        """A call with a header block built by the test (its own HPACK)."""
        body = b"\x00" + struct.pack(">I", len(message)) + message
        self.sock.sendall(self.frame(1, 0x4, stream, block) + self.frame(0, 0x1, stream, body))

    def answers(self, count: int) -> dict[int, tuple[dict[str, str], bytes]]:
        """Read until `count` streams ended: each one's headers (and trailers) and message."""
        done: dict[int, tuple[dict[str, str], bytes]] = {}
        seen: dict[int, tuple[dict[str, str], bytearray]] = {}
        while len(done) < count:
            kind, flags, stream, payload = self.read_frame()
            if kind == 1:
                headers, _ = seen.setdefault(stream, ({}, bytearray()))
                headers.update((k.decode(), v.decode())
                               for k, v in self.decoder.decode(payload, raw=True))
            elif kind == 0:
                seen.setdefault(stream, ({}, bytearray()))[1].extend(payload)
            elif kind == 4 and not flags & 1:
                self.sock.sendall(self.frame(4, 1, 0))
            if kind in (0, 1) and flags & 1:
                headers, data = seen.pop(stream)
                done[stream] = (headers, bytes(data[5:]))
        return done


def test_calls_with_split_header_blocks_and_padding_are_answered() -> None:
    with server() as port:
        client = Client(port)
        client.call(1, ECHO, b"first", split=True)
        client.call(3, ECHO, b"second")
        answers = client.answers(2)
        for stream, text in ((1, b"FIRST"), (3, b"SECOND")):
            headers, message = answers[stream]
            assert headers[":status"] == "200"
            assert headers["content-type"] == "application/grpc"
            assert headers["grpc-status"] == "0"
            assert message == text


def test_an_unknown_method_is_unimplemented_and_a_ping_is_answered() -> None:
    with server() as port:
        client = Client(port)
        client.sock.sendall(client.frame(6, 0, 0, b"12345678"))
        while True:  # the PING's acknowledgement, with its payload
            kind, flags, _, payload = client.read_frame()
            if kind == 6:
                assert (flags, payload) == (1, b"12345678")
                break
        client.call(1, "/other.Service/Method", b"x")
        (headers, message), = client.answers(1).values()
        assert (headers["grpc-status"], headers["grpc-message"]) == (
            "12", "unknown method /other.Service/Method")
        assert message == b""


@pytest.mark.parametrize("window", [0, 3])
def test_an_answer_waits_for_the_clients_window(window: int) -> None:
    """With the client's stream window smaller than the answer, only the response headers
    come; the message and the trailers follow the client's WINDOW_UPDATE."""
    with server() as port:
        client = Client(port, initial_window=window)
        client.call(1, ECHO, b"held back")
        kinds = []
        client.sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            while True:
                kind, flags, stream, _ = client.read_frame()
                kinds.append(kind)
        assert 0 not in kinds and kinds.count(1) == 1  # headers only, no DATA
        client.sock.settimeout(5)
        client.sock.sendall(client.frame(8, 0, 1, struct.pack(">I", 100)))
        (headers, message), = client.answers(1).values()  # the DATA and the trailers
        assert (headers["grpc-status"], message) == ("0", b"HELD BACK")


def _path_literal(prefix: int, path: str) -> bytes:
    """:path (static name index 4) as a literal, no Huffman: 0x04 without indexing, 0x44 with
    incremental indexing (RFC 7541 6.2)."""
    return bytes([prefix | 4, len(path)]) + path.encode()


def test_a_remembered_header_block_follows_the_hpack_tables_changes() -> None:
    """The server remembers the :path of header blocks that leave the HPACK table as it was
    (Envoy repeats such blocks); the same bytes sent after the table changed name another
    entry, and the answer follows the table, not what was remembered."""
    other = "/other.Service/Method"
    post_http = b"\x83\x86"  # :method POST, :scheme http (static table)
    newest = b"\xbe"  # index 62: the newest entry of the dynamic table
    steps = [
        (post_http + _path_literal(0x00, ECHO), "0"),   # not indexed: the table is unchanged
        (post_http + _path_literal(0x00, ECHO), "0"),   # the same bytes again
        (post_http + _path_literal(0x40, other), "12"),  # 62 = other
        (post_http + newest, "12"),
        (post_http + newest, "12"),
        (post_http + _path_literal(0x40, ECHO), "0"),   # 62 = Echo, 63 = other
        (post_http + newest, "0"),                      # the same bytes as two calls before
        (b"\x20" + post_http + _path_literal(0x00, other), "12"),  # a size update to 0
        (post_http + _path_literal(0x00, ECHO), "0"),
    ]
    with server() as port:
        client = Client(port)
        for i, (block, _) in enumerate(steps):
            client.call_block(2 * i + 1, block, b"x")
            # one at a time: each block is decoded with the table the ones before left
            (headers, _), = client.answers(1).values()
            assert headers["grpc-status"] == steps[i][1], (i, headers)
