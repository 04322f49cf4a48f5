"""AWS event-stream framing (application/vnd.amazon.eventstream), as Bedrock's ConverseStream
sends it: the mock writes it, the tests read it back. Standard library only.

A message is: total length (uint32) | headers length (uint32) | CRC32 of those 8 bytes |
headers | payload | CRC32 of everything before it; big-endian. A header is its name's length
(1 byte), the name, a type byte (7: string) and, for strings, a uint16 length and the bytes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Mapping

STRING = 7


def encode_headers(headers: Mapping[str, str]) -> bytes:
    out = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        out += struct.pack(">B", len(raw_name)) + raw_name
        out += struct.pack(">BH", STRING, len(raw_value)) + raw_value
    return bytes(out)


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    head = encode_headers(headers)
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + head + payload
    return body + struct.pack(">I", zlib.crc32(body))


def event(event_type: str, payload: bytes) -> bytes:
    return encode_message({":event-type": event_type, ":content-type": "application/json",
                           ":message-type": "event"}, payload)


def exception(exception_type: str, payload: bytes) -> bytes:
    return encode_message({":exception-type": exception_type,
                           ":content-type": "application/json",
                           ":message-type": "exception"}, payload)


def decode(data: bytes) -> Iterator[tuple[dict[str, str], bytes]]:
    """Every message of a whole stream: (string headers, payload); CRCs checked."""
    pos = 0
    while pos < len(data):
        total, hlen, crc = struct.unpack_from(">III", data, pos)
        if zlib.crc32(data[pos:pos + 8]) != crc:
            raise ValueError("prelude CRC mismatch")
        end = pos + total
        (msg_crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(data[pos:end - 4]) != msg_crc:
            raise ValueError("message CRC mismatch")
        headers: dict[str, str] = {}
        i, hend = pos + 12, pos + 12 + hlen
        while i < hend:
            nlen = data[i]
            name = data[i + 1:i + 1 + nlen].decode()
            kind = data[i + 1 + nlen]
            if kind != STRING:
                raise ValueError(f"header type {kind} is not read here")
            (vlen,) = struct.unpack_from(">H", data, i + 2 + nlen)
            headers[name] = data[i + 4 + nlen:i + 4 + nlen + vlen].decode()
            i += 4 + nlen + vlen
        yield headers, data[hend:end - 4]
        pos = end
