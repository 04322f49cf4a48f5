"""The cache store service: the response cache's store in Redis, over HTTP/1.1 for Envoy.

Envoy's Lua has no sockets and no Redis client, only `httpCall` to a cluster; this service is
that cluster in `limits.scope: global` (`gatewayctl cache-store`: a Deployment on Kubernetes,
render/k8s/cachestore.py; a child process of `gatewayctl up`). The cache filter (cache.lua)
calls, on cache routes only:

    POST /lookup/<store>   body: the cache key. 200: the answer (its content type,
                           `x-gateway-model`, `age`); 404: a miss.
    POST /store/<store>    body: the cache key then the answer; `x-cache-key-bytes` (the key's
                           length), `x-cache-ttl` (seconds), `x-cache-max-bytes` (the store's
                           bound), `content-type`, `x-gateway-model`. 204: stored; 413: larger
                           than the store.
    GET  /healthz          200 (the probes).

Redis failing is 503 (the filter then answers the request as a miss): the request never
fails for the store. The log has one line per failure kind until Redis answers again (never a
key, an answer or a header value: only what failed).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass

from gatewayctl.local.cachestore.http1 import Headers, Response, Server
from gatewayctl.local.cachestore.store import STORE_NAME, Entry, SharedStore
from gatewayctl.local.resp import RedisAccess, RedisClient, RedisUnavailable
from gatewayctl.local.serving import new_event_loop, serve_in_thread, stop_serving

log = logging.getLogger("gatewayctl.cachestore")

# A request: the key (bounded by the request body bound) and an answer of up to 64 MiB
# (the largest maxEntryBytes).
MAX_BODY = 64 * 1024 * 1024 + 1024 * 1024
KEY_BYTES, TTL, MAX_BYTES = "x-cache-key-bytes", "x-cache-ttl", "x-cache-max-bytes"
MODEL_HEADER = "x-gateway-model"


class Handler:
    def __init__(self, shared: SharedStore) -> None:
        self.shared = shared
        self.failing = False

    def _unavailable(self, exc: RedisUnavailable) -> Response:
        if not self.failing:
            log.error("cache store: redis unavailable, requests are answered as misses: %s", exc)
        self.failing = True
        return 503, {}, b"redis unavailable"

    def _ok(self) -> None:
        if self.failing:
            log.warning("cache store: redis answers again")
        self.failing = False

    def __call__(self, method: str, path: str, headers: Headers, body: bytes) -> Response:
        if path == "/healthz":
            return 200, {}, b"ok"
        verb, _, store = path.lstrip("/").partition("/")
        if verb not in ("lookup", "store") or not STORE_NAME.fullmatch(store):
            return 404, {}, b"unknown path"
        if method != "POST":
            return 405, {}, b"POST only"
        try:
            if verb == "lookup":
                return self._lookup(store, body)
            return self._store(store, headers, body)
        except RedisUnavailable as exc:
            return self._unavailable(exc)

    def _lookup(self, store: str, key: bytes) -> Response:
        entry = self.shared.lookup(store, key)
        self._ok()
        if entry is None:
            return 404, {}, b""
        out = {"content-type": entry.content_type,
               "age": str(max(0, int(time.time()) - entry.stored))}
        if entry.model:
            out[MODEL_HEADER] = entry.model
        return 200, out, entry.body

    def _store(self, store: str, headers: Headers, body: bytes) -> Response:
        try:
            key_bytes = int(headers[KEY_BYTES])
            ttl = int(headers[TTL])
            max_bytes = int(headers[MAX_BYTES])
        except (KeyError, ValueError):
            return 400, {}, f"{KEY_BYTES}, {TTL} and {MAX_BYTES} are required".encode()
        if not 0 < key_bytes <= len(body) or ttl <= 0 or max_bytes <= 0:
            return 400, {}, b"bad key length, ttl or bound"
        entry = Entry(body[key_bytes:], headers.get("content-type", "application/json"),
                      headers.get(MODEL_HEADER, ""), int(time.time()))
        evicted = self.shared.store(store, body[:key_bytes], entry, ttl, max_bytes)
        self._ok()
        if evicted is None:
            return 413, {}, b"larger than the store"
        return 204, {}, b""


@dataclass
class RunningStore:
    """A service on its own thread's event loop (tests, `up` through run_store_service)."""

    port: int
    redis: RedisClient
    loop: asyncio.AbstractEventLoop
    server: Server
    thread: threading.Thread

    def stop(self) -> None:
        stop_serving(self.loop, self.server.close, self.thread)
        self.redis.close()

    def wait(self) -> None:
        self.thread.join()


def start_store_service(gateway: str, redis_address: str, host: str = "127.0.0.1",
                        port: int = 0, access: RedisAccess | None = None) -> RunningStore:
    redis = RedisClient(redis_address, timeout_s=0.5, access=access)
    server = Server(Handler(SharedStore(gateway, redis)), MAX_BODY)
    loop = new_event_loop()
    thread = serve_in_thread(loop, server.start(host, port), host, port, "cache-store")
    return RunningStore(server.port, redis, loop, server, thread)


def run_store_service(gateway: str, redis_address: str, host: str, port: int,
                      access: RedisAccess) -> int:
    """Serve until interrupted (the `cache-store` command)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    service = start_store_service(gateway, redis_address, host, port, access)
    print(f"cache store of gateway {gateway} on {host}:{service.port} (redis {redis_address}, "
          f"{access.describe()})", flush=True)
    try:
        service.wait()
    finally:
        service.stop()
    return 0
