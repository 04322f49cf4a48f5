"""The counts, in Redis: the only importer of `redis` (imported when a counter is made).

Fixed windows as the official service keeps them: INCRBY the window's key by the hits, EXPIRE
it after one window, both in one pipeline per request.
"""

from __future__ import annotations

from typing import Any


class CountsUnavailable(RuntimeError):
    pass


class RedisCounts:
    def __init__(self, address: str, timeout_s: float = 0.5) -> None:
        import redis

        host, _, port = address.rpartition(":")
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._client: Any = redis.Redis(
            host=host, port=int(port), socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )

    def add(self, items: list[tuple[str, int, int]]) -> list[int]:
        """(key, hits, expire seconds) -> the counts after adding."""
        try:
            pipe = self._client.pipeline(transaction=False)
            for key, hits, expire in items:
                pipe.incrby(key, hits)
                pipe.expire(key, expire)
            results = pipe.execute()
        except self._errors as exc:
            raise CountsUnavailable(f"redis: {exc}") from exc
        return [int(r) for r in results[::2]]

    def close(self) -> None:
        self._client.close()
