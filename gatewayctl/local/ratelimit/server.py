"""The gRPC service: envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit, served by
http2.py (unary gRPC over cleartext HTTP/2 on asyncio) on one thread.

Each request: match every descriptor against the configuration (re-read when its files
change), add the hits (the descriptor's own hits_addend when set, 0 meaning "check only";
else the request's, at least 1) to the matched limits' counts in one Redis pipeline, answer
OVER_LIMIT when any count is above its limit. When Redis fails the call fails (UNAVAILABLE):
Envoy then applies the gateway's failure mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from gatewayctl.local.ratelimit.config import RateLimitConfig, cache_key, read_config
from gatewayctl.local.ratelimit.counts import CountsUnavailable, RedisCounts
from gatewayctl.local.ratelimit.http2 import (
    GRPC_INTERNAL,
    GRPC_OK,
    GRPC_UNAVAILABLE,
    GRPC_UNIMPLEMENTED,
    Handler,
    Server,
)
from gatewayctl.local.ratelimit.wire import (
    OK,
    OVER_LIMIT,
    DescriptorStatus,
    RateLimitRequest,
    RateLimitResponse,
    WireError,
    decode_request,
    encode_response,
)

SERVICE = "envoy.service.ratelimit.v3.RateLimitService"
log = logging.getLogger("gatewayctl.ratelimit")


class ConfigSource:
    """The configuration at `path`, read again when a file's mtime or size changes; the files
    are looked at once per `recheck_s` at most (the official service, too, takes a change from
    its runtime folder a moment after it is written)."""

    def __init__(self, path: Path, recheck_s: float = 0.5) -> None:
        self.path = path
        self.recheck_s = recheck_s
        self._stamp: tuple[tuple[str, int, int], ...] = ()
        self._checked = float("-inf")
        self._config = RateLimitConfig({})
        self._lock = threading.Lock()
        self.get()

    def _files(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.iterdir() if p.suffix in (".yaml", ".yml"))

    def _stamps(self) -> tuple[tuple[str, int, int], ...]:
        out = []
        for p in self._files():
            with contextlib.suppress(OSError):  # gone since listed: the next look sees it
                st = p.stat()
                out.append((str(p), st.st_mtime_ns, st.st_size))
        return tuple(out)

    def get(self) -> RateLimitConfig:
        now = time.monotonic()
        if now - self._checked < self.recheck_s:
            return self._config
        with self._lock:
            self._checked = now
            stamp = self._stamps()
            if stamp != self._stamp:
                try:
                    self._config = read_config(self.path)
                except (OSError, ValueError) as exc:  # keep the last good configuration
                    log.error("rate limit configuration not loaded: %s", exc)
                self._stamp = stamp
        return self._config


def decide(
    request: RateLimitRequest, config: RateLimitConfig, counts: RedisCounts, now: int
) -> RateLimitResponse:
    matched = []
    for descriptor in request.descriptors:
        limit = config.limit_for(request.domain, descriptor)
        hits = (descriptor.hits_addend if descriptor.hits_addend is not None
                else max(1, request.hits_addend))
        matched.append((descriptor, limit, hits))
    counted = [(d, lim, h) for d, lim, h in matched if lim is not None and not lim.unlimited]
    totals = counts.add(
        [(cache_key(request.domain, d, lim, now), h, lim.seconds) for d, lim, h in counted]
    ) if counted else []
    by_descriptor = {id(d): total for (d, _, _), total in zip(counted, totals, strict=True)}
    statuses = []
    overall = OK
    for descriptor, limit, _ in matched:
        if limit is None or limit.unlimited:
            statuses.append(DescriptorStatus(OK))
            continue
        total = by_descriptor[id(descriptor)]
        over = total > limit.requests_per_unit
        overall = OVER_LIMIT if over else overall
        statuses.append(
            DescriptorStatus(
                OVER_LIMIT if over else OK,
                requests_per_unit=limit.requests_per_unit,
                unit=limit.unit,
                limit_remaining=max(0, limit.requests_per_unit - total),
                seconds_until_reset=limit.seconds - now % limit.seconds,
            )
        )
    return RateLimitResponse(overall, tuple(statuses))


METHOD_PATH = f"/{SERVICE}/ShouldRateLimit"


def handler(source: ConfigSource, counts: RedisCounts) -> Handler:
    """One call: its gRPC status and the encoded RateLimitResponse (or the error's text).
    A failing Redis is UNAVAILABLE: Envoy then applies the gateway's failure mode."""

    def handle(path: str, message: bytes) -> tuple[int, bytes]:
        if path != METHOD_PATH:
            return GRPC_UNIMPLEMENTED, f"unknown method {path}".encode()
        try:
            request = decode_request(message)
        except WireError as exc:
            return GRPC_INTERNAL, str(exc).encode()
        try:
            response = decide(request, source.get(), counts, int(time.time()))
        except CountsUnavailable as exc:
            return GRPC_UNAVAILABLE, str(exc).encode()
        return GRPC_OK, encode_response(response)

    return handle


@dataclass
class RunningService:
    """A service serving on its own thread's event loop (tests, `up` through run_service)."""

    port: int
    counts: RedisCounts
    loop: asyncio.AbstractEventLoop
    server: Server
    thread: threading.Thread

    def stop(self) -> None:
        if self.loop.is_running():
            with contextlib.suppress(Exception):
                future = asyncio.run_coroutine_threadsafe(self.server.close(), self.loop)
                future.result(timeout=10)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.counts.close()

    def wait(self) -> None:
        self.thread.join()


def start_service(
    config_path: Path, redis_address: str, host: str = "127.0.0.1", port: int = 0
) -> RunningService:
    source = ConfigSource(config_path)
    counts = RedisCounts(redis_address)
    loop = asyncio.new_event_loop()
    server = Server()
    try:
        loop.run_until_complete(server.start(handler(source, counts), host, port))
    except OSError as exc:
        loop.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc}") from exc

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="ratelimit-service", daemon=True)
    thread.start()
    return RunningService(server.port, counts, loop, server, thread)


def run_service(config_path: Path, redis_address: str, host: str, port: int) -> int:
    """Serve until interrupted (the `ratelimit-service` command)."""
    service = start_service(config_path, redis_address, host, port)
    print(f"rate limit service on {host}:{service.port} (config {config_path}, redis "
          f"{redis_address})", flush=True)
    try:
        service.wait()
    finally:
        service.stop()
    return 0
