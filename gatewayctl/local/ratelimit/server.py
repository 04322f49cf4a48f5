"""The gRPC service: envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit. The only
importer of `grpc` (imported when a server starts).

Each request: match every descriptor against the configuration (re-read when its files
change), add the hits (the descriptor's own hits_addend when set, 0 meaning "check only";
else the request's, at least 1) to the matched limits' counts in one Redis pipeline, answer
OVER_LIMIT when any count is above its limit. When Redis fails the call fails (UNAVAILABLE):
Envoy then applies the gateway's failure mode.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gatewayctl.local.ratelimit.config import RateLimitConfig, cache_key, read_config
from gatewayctl.local.ratelimit.counts import CountsUnavailable, RedisCounts
from gatewayctl.local.ratelimit.wire import (
    OK,
    OVER_LIMIT,
    DescriptorStatus,
    RateLimitRequest,
    RateLimitResponse,
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


@dataclass
class RunningService:
    server: Any
    port: int
    counts: RedisCounts

    def stop(self) -> None:
        self.server.stop(grace=None)
        self.counts.close()


def start_service(
    config_path: Path, redis_address: str, host: str = "127.0.0.1", port: int = 0
) -> RunningService:
    from concurrent import futures

    import grpc

    source = ConfigSource(config_path)
    counts = RedisCounts(redis_address)

    def should_rate_limit(request: RateLimitRequest, context: Any) -> RateLimitResponse:
        try:
            return decide(request, source.get(), counts, int(time.time()))
        except CountsUnavailable as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            raise  # abort raises; this line is for the type checker

    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "ShouldRateLimit": grpc.unary_unary_rpc_method_handler(
                should_rate_limit,
                request_deserializer=decode_request,
                response_serializer=encode_response,
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    server.start()
    return RunningService(server, bound, counts)


def run_service(config_path: Path, redis_address: str, host: str, port: int) -> int:
    """Serve until interrupted (the `ratelimit-service` command)."""
    service = start_service(config_path, redis_address, host, port)
    print(f"rate limit service on {host}:{service.port} (config {config_path}, redis "
          f"{redis_address})", flush=True)
    try:
        service.server.wait_for_termination()
    finally:
        service.stop()
    return 0
