"""The gRPC service: envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit, served by
http2.py (unary gRPC over cleartext HTTP/2 on asyncio) on one thread.

Each request: match every descriptor against the configuration (re-read when its files
change), add the hits (the descriptor's own hits_addend when set, 0 meaning "check only";
else the request's, at least 1) to the matched limits' counts in one Redis pipeline, answer
OVER_LIMIT when any count is above its limit. Envoy's requests repeat (the same route and
consumer send the same bytes), so each distinct request is decoded and matched once per
configuration (a Plan); a call then costs the Redis pipeline and the answer's encoding.
When Redis fails the call fails (UNAVAILABLE): Envoy then applies the gateway's failure mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from gatewayctl.local.ratelimit.config import RateLimitConfig, key_prefix, read_config
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
    RateLimitRequest,
    WireError,
    decode_request,
    encode_limit,
    encode_overall,
    encode_status,
)
from gatewayctl.local.resp import RedisAccess
from gatewayctl.local.serving import new_event_loop, serve_in_thread, stop_serving

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


@dataclass(frozen=True)
class _Counted:
    """A descriptor with a limit: its count's key without the window, the hits it adds, the
    limit, and the limit as the answer's status carries it."""

    key: bytes
    hits: int
    requests_per_unit: int
    seconds: int
    limit: bytes


@dataclass(frozen=True)
class Plan:
    """What a request asks, resolved against one configuration: per descriptor its count, or
    None (no limit: always OK, nothing counted)."""

    items: tuple[_Counted | None, ...]
    counted: tuple[_Counted, ...]


def plan_request(request: RateLimitRequest, config: RateLimitConfig) -> Plan:
    items: list[_Counted | None] = []
    for descriptor in request.descriptors:
        limit = config.limit_for(request.domain, descriptor)
        if limit is None or limit.unlimited:
            items.append(None)
            continue
        hits = (descriptor.hits_addend if descriptor.hits_addend is not None
                else max(1, request.hits_addend))
        items.append(_Counted(key_prefix(request.domain, descriptor).encode(), hits,
                              limit.requests_per_unit, limit.seconds,
                              encode_limit(limit.requests_per_unit, limit.unit)))
    return Plan(tuple(items), tuple(i for i in items if i is not None))


_NO_LIMIT = encode_status(OK)


def answer(plan: Plan, counts: RedisCounts, now: int) -> bytes:
    """Add the plan's hits to their counts (one Redis round trip; none without a limit) and
    encode the RateLimitResponse: OVER_LIMIT when any count is above its limit."""
    totals = iter(counts.add(
        [(c.key + b"%d" % (now - now % c.seconds), c.hits, c.seconds) for c in plan.counted]
    ) if plan.counted else ())
    overall = OK
    statuses = []
    for item in plan.items:
        if item is None:
            statuses.append(_NO_LIMIT)
            continue
        total = next(totals)
        code = OK
        if total > item.requests_per_unit:
            code = overall = OVER_LIMIT
        statuses.append(encode_status(code, item.limit, max(0, item.requests_per_unit - total),
                                      item.seconds - now % item.seconds))
    return encode_overall(overall) + b"".join(statuses)


METHOD_PATH = f"/{SERVICE}/ShouldRateLimit"
# Envoy's requests repeat (a route's descriptors for a consumer): each distinct message is
# decoded and matched once per configuration; past this many the remembered ones are dropped.
_PLANS = 4096


def handler(source: ConfigSource, counts: RedisCounts) -> Handler:
    """One call: its gRPC status and the encoded RateLimitResponse (or the error's text).
    A failing Redis is UNAVAILABLE: Envoy then applies the gateway's failure mode."""
    plans: dict[bytes, Plan] = {}
    planned_with: list[RateLimitConfig] = [source.get()]

    def handle(path: str, message: bytes) -> tuple[int, bytes]:
        if path != METHOD_PATH:
            return GRPC_UNIMPLEMENTED, f"unknown method {path}".encode()
        config = source.get()
        if config is not planned_with[0]:
            plans.clear()
            planned_with[0] = config
        plan = plans.get(message)
        if plan is None:
            try:
                plan = plan_request(decode_request(message), config)
            except WireError as exc:
                return GRPC_INTERNAL, str(exc).encode()
            if len(plans) >= _PLANS:
                plans.clear()
            plans[message] = plan
        try:
            return GRPC_OK, answer(plan, counts, int(time.time()))
        except CountsUnavailable as exc:
            return GRPC_UNAVAILABLE, str(exc).encode()

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
        stop_serving(self.loop, self.server.close, self.thread)
        self.counts.close()

    def wait(self) -> None:
        self.thread.join()


def start_service(
    config_path: Path, redis_address: str, host: str = "127.0.0.1", port: int = 0,
    access: RedisAccess | None = None,
) -> RunningService:
    source = ConfigSource(config_path)
    counts = RedisCounts(redis_address, access=access)
    loop = new_event_loop()
    server = Server()
    thread = serve_in_thread(loop, server.start(handler(source, counts), host, port), host, port,
                             "ratelimit-service")
    return RunningService(server.port, counts, loop, server, thread)


def run_service(config_path: Path, redis_address: str, host: str, port: int,
                access: RedisAccess) -> int:
    """Serve until interrupted (the `ratelimit-service` command)."""
    service = start_service(config_path, redis_address, host, port, access)
    print(f"rate limit service on {host}:{service.port} (config {config_path}, redis "
          f"{redis_address}, {access.describe()})", flush=True)
    try:
        service.wait()
    finally:
        service.stop()
    return 0
