"""The protobuf messages of envoy.service.ratelimit.v3, encoded and decoded by hand.

Only what the service needs: RateLimitRequest (domain = 1, descriptors = 2, hits_addend = 3)
with its descriptors (extensions.common.ratelimit.v3.RateLimitDescriptor: entries = 1 of
{key = 1, value = 2}, limit = 2 (ignored), hits_addend = 3 as google.protobuf.UInt64Value),
and RateLimitResponse (overall_code = 1, statuses = 2 of {code = 1, current_limit = 2
{requests_per_unit = 1, unit = 2}, limit_remaining = 3, duration_until_reset = 4
{seconds = 1}}). Unknown fields are skipped, as protobuf readers do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OK, OVER_LIMIT = 1, 2
UNIT_NUMBERS = {"second": 1, "minute": 2, "hour": 3, "day": 4, "month": 5, "year": 6, "week": 7}


class WireError(ValueError):
    pass


@dataclass(frozen=True)
class Descriptor:
    entries: tuple[tuple[str, str], ...]
    hits_addend: int | None = None  # None: the request's hits_addend


@dataclass(frozen=True)
class RateLimitRequest:
    domain: str
    descriptors: tuple[Descriptor, ...]
    hits_addend: int = 0


@dataclass(frozen=True)
class DescriptorStatus:
    code: int
    requests_per_unit: int = 0
    unit: str | None = None
    limit_remaining: int = 0
    seconds_until_reset: int = 0


@dataclass(frozen=True)
class RateLimitResponse:
    overall_code: int
    statuses: tuple[DescriptorStatus, ...] = field(default_factory=tuple)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    if pos < len(data) and data[pos] < 0x80:  # one byte: tags, lengths, small numbers
        return data[pos], pos + 1
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value): an int for varints, bytes for length-delimited fields."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire_type == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise WireError("truncated field")
            out.append((number, data[pos : pos + size]))
            pos += size
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        else:
            raise WireError(f"unsupported wire type {wire_type}")
    return out


def _entry(data: bytes) -> tuple[str, str]:
    key = value = ""
    for number, raw in _fields(data):
        if isinstance(raw, bytes) and number == 1:
            key = raw.decode()
        elif isinstance(raw, bytes) and number == 2:
            value = raw.decode()
    return key, value


def _descriptor(data: bytes) -> Descriptor:
    entries: list[tuple[str, str]] = []
    hits: int | None = None
    for number, raw in _fields(data):
        if number == 1 and isinstance(raw, bytes):
            entries.append(_entry(raw))
        elif number == 3 and isinstance(raw, bytes):
            hits = 0  # a wrapper with its default value is empty
            for inner, value in _fields(raw):
                if inner == 1 and isinstance(value, int):
                    hits = value
    return Descriptor(tuple(entries), hits)


def decode_request(data: bytes) -> RateLimitRequest:
    domain = ""
    descriptors: list[Descriptor] = []
    hits = 0
    for number, raw in _fields(data):
        if number == 1 and isinstance(raw, bytes):
            domain = raw.decode()
        elif number == 2 and isinstance(raw, bytes):
            descriptors.append(_descriptor(raw))
        elif number == 3 and isinstance(raw, int):
            hits = raw
    return RateLimitRequest(domain, tuple(descriptors), hits)


_ONE_BYTE = [bytes((i,)) for i in range(128)]


def _put_varint(value: int) -> bytes:
    if value < 128:
        return _ONE_BYTE[value]
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _int_field(number: int, value: int) -> bytes:
    return _put_varint(number << 3) + _put_varint(value) if value else b""


def _bytes_field(number: int, value: bytes) -> bytes:
    return _put_varint(number << 3 | 2) + _put_varint(len(value)) + value


def encode_request(request: RateLimitRequest) -> bytes:
    """For tests and clients: the request as Envoy sends it."""
    out = _bytes_field(1, request.domain.encode())
    for d in request.descriptors:
        body = b"".join(
            _bytes_field(1, _bytes_field(1, k.encode()) + _bytes_field(2, v.encode()))
            for k, v in d.entries
        )
        if d.hits_addend is not None:
            body += _bytes_field(3, _int_field(1, d.hits_addend))
        out += _bytes_field(2, body)
    return out + _int_field(3, request.hits_addend)


def encode_limit(requests_per_unit: int, unit: str) -> bytes:
    """A status's current_limit field (RateLimit {requests_per_unit, unit}), encoded."""
    return _bytes_field(2, _int_field(1, requests_per_unit) + _int_field(2, UNIT_NUMBERS[unit]))


def encode_status(code: int, limit: bytes = b"", remaining: int = 0, reset: int = 0) -> bytes:
    """One DescriptorStatus as a RateLimitResponse's `statuses` field; `limit` from
    encode_limit, or empty for a descriptor without a limit."""
    out = _int_field(1, code)
    if limit:
        out += limit + _int_field(3, remaining) + _bytes_field(4, _int_field(1, reset))
    return _bytes_field(2, out)


def encode_overall(code: int) -> bytes:
    """A RateLimitResponse's overall_code field; its statuses (encode_status) follow."""
    return _int_field(1, code)


_UNIT_NAMES = {number: name for name, number in UNIT_NUMBERS.items()}


def _decode_status(data: bytes) -> DescriptorStatus:
    code = remaining = per_unit = reset = 0
    unit: str | None = None
    for number, value in _fields(data):
        if number == 1 and isinstance(value, int):
            code = value
        elif number == 2 and isinstance(value, bytes):
            unit = "unknown"
            for inner, field_value in _fields(value):
                if inner == 1 and isinstance(field_value, int):
                    per_unit = field_value
                elif inner == 2 and isinstance(field_value, int):
                    unit = _UNIT_NAMES.get(field_value, "unknown")
        elif number == 3 and isinstance(value, int):
            remaining = value
        elif number == 4 and isinstance(value, bytes):
            for inner, field_value in _fields(value):
                if inner == 1 and isinstance(field_value, int):
                    reset = field_value
    return DescriptorStatus(code, per_unit, unit, remaining, reset)


def decode_response(data: bytes) -> RateLimitResponse:
    """For tests and clients: the response as Envoy reads it."""
    code = 0
    statuses: list[DescriptorStatus] = []
    for number, raw in _fields(data):
        if number == 1 and isinstance(raw, int):
            code = raw
        elif number == 2 and isinstance(raw, bytes):
            statuses.append(_decode_status(raw))
    return RateLimitResponse(code, tuple(statuses))
