"""A gRPC client over cleartext HTTP/2, written from RFC 9113 and the gRPC-over-HTTP/2 spec, for
the stand-in's tests (Envoy, the real client, is in test_global.py): frames by hand, header
blocks by the `hpack` package or by the test itself."""

from __future__ import annotations

import socket
import struct

import hpack


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
