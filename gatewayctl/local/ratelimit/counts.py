"""The counts, in Redis, over Redis's own protocol (local/resp.py: no client library, one kept
connection per service thread, no per-call setup).

Fixed windows as the official service keeps them: INCRBY the window's key by the hits, EXPIRE
it after one window; every command of a call goes out in one write (a pipeline) and the
replies, one integer line each, come back in order.
"""

from __future__ import annotations

from gatewayctl.local.resp import RedisAccess, RedisClient, RedisUnavailable

# The rate limit service's name for Redis failing (a RedisUnavailable).
CountsUnavailable = RedisUnavailable


def _incr_expire(key: bytes, hits: int, expire: int) -> bytes:
    """INCRBY key hits, EXPIRE key expire: two RESP arrays of bulk strings."""
    h, e = b"%d" % hits, b"%d" % expire
    return (b"*3\r\n$6\r\nINCRBY\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
            b"*3\r\n$6\r\nEXPIRE\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
            % (len(key), key, len(h), h, len(key), key, len(e), e))


class RedisCounts:
    def __init__(self, address: str, timeout_s: float = 0.5,
                 access: RedisAccess | None = None) -> None:
        self._redis = RedisClient(address, timeout_s, access)

    def add(self, items: list[tuple[bytes, int, int]]) -> list[int]:
        """(key, hits, expire seconds) -> the counts after adding."""
        payload = b"".join([_incr_expire(key, hits, expire) for key, hits, expire in items])
        lines = self._redis.send_lines(payload, 2 * len(items))
        errors = [line for line in lines if not line.startswith(b":")]
        if errors:
            self._redis.drop()
            raise CountsUnavailable(f"redis: {errors[0].decode(errors='replace')}")
        return [int(line[1:]) for line in lines[::2]]

    def close(self) -> None:
        self._redis.close()
