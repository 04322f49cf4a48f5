"""The stand-in's HTTP/2 gRPC server (local/ratelimit/http2.py) against a client written here
from RFC 9113 and the gRPC-over-HTTP/2 spec: header blocks split over CONTINUATION frames,
padding, PING, unknown methods, and answers held back by the client's flow-control window
until it grants more. Envoy, its real client, is in test_global.py."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from gatewayctl.local.ratelimit.http2 import Server
from tests.limits.grpc_client import Client

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
