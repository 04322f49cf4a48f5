"""The built-in OpenAI-compatible upstream (`gatewayctl mock-provider`).

Owns starting and stopping mock provider servers: in a background thread for tests and the
local gateway (`start_mock_provider`), or in the foreground for the CLI (`run_mock_provider`).
The server itself lives in `gatewayctl.local.mock`; it uses the standard library only and must
never import the rest of gatewayctl.

Endpoints
    POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/messages (Anthropic),
    GET /v1/models, /v1/models/{id}, /healthz.
    Replies are deterministic: chat content is `[mock:<model>] <last user message, whitespace
    collapsed, first 64 chars>`; `id` is a hash of the canonical JSON body; `created` is fixed;
    tokens are max(1, ceil(chars / 4)) of all message text (prompt) and of the reply
    (completion); `max_tokens` truncates the reply to 4 chars per token with finish_reason
    `length`. Embeddings are unit vectors from SHA-256 of (model, input), 8 dimensions unless
    the config or the request's `dimensions` says otherwise. `stream: true` answers with SSE over
    chunked transfer encoding, ending with `data: [DONE]`; `stream_options.include_usage` adds
    a last chunk with empty `choices` and the `usage`. Every reply carries `x-mock-model` (the
    model of the request) and `x-mock-name` (the server's name).

Introspection (never needs a key, never recorded)
    GET /_mock/requests     the last `record_limit` (default 1000) API requests, oldest first:
                            {"requests": [{seq, method, path, query, headers (lower-cased),
                            body (parsed JSON, or the text if not JSON), model, status}]}
                            status is the HTTP status sent, "reset", or null while in flight.
    DELETE /_mock/requests  clears them.
    GET /_mock/config       the fault document (below).
    PUT /_mock/config       replaces it and restarts every model's error counter at zero.

Fault document
    {"default": RULE, "models": {"<model>": RULE}} with
    RULE = {"error_rate": 0..1, "error_status": 400-599 | "reset", "latency_ms": number}.
    A model without its own rule gets the default rule; missing RULE fields are 0 / 503 / 0.

Fault selection is deterministic: each model has a counter, and its n-th request (counting
from 1) fails when floor(n * rate) > floor((n - 1) * rate). A rate of 0.2 fails exactly the
5th, 10th, 15th ... request; 0.5 every second one; 1 all of them. Latency is added before the
response (before the first byte of a stream), to failing requests as well. "reset" closes the
connection with a TCP RST and no response.

CLI option syntax (each option repeatable; a later option for the same model wins)
    --error-rate [MODEL=]RATE[:STATUS]   RATE is 0..1 or a percentage (0.2, 20%); STATUS is
                                         400-599 or `reset`, default 503. Without `MODEL=`
                                         (or with `*=`) it is the default for every model.
                                         e.g. gpt-4o-2024-11-20=0.2:503, claude=1:reset, 5%:429
    --latency [MODEL=]DURATION           DURATION is `<number>ms`, `<number>s` or 0.
                                         e.g. gpt-4o-2024-11-20=150ms, 1.5s
    --require-key KEY                    401 unless `Authorization: Bearer KEY`, `x-api-key: KEY`
                                         or `api-key: KEY` is sent.
    --name NAME                          sent back as `x-mock-name` (default "mock").
Per-model rules start from the default rule, so `--latency 50ms --error-rate m=0.2` gives
model m both. `build_fault_config(error_specs, latency_specs)` turns the options into a
`FaultConfig`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import signal
import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from gatewayctl.local.mock.config import (
    ErrorRateSpec,
    FaultConfig,
    FaultRule,
    FaultSpecError,
    LatencySpec,
    MockProviderConfig,
    build_fault_config,
    fault_config_from_json,
    parse_fault_spec,
    parse_latency_ms,
    parse_latency_spec,
    read_aws_credentials,
)
from gatewayctl.local.mock.server import MockProviderServer

__all__ = [
    "ErrorRateSpec",
    "FaultConfig",
    "FaultRule",
    "FaultSpecError",
    "LatencySpec",
    "MockProviderConfig",
    "MockProviderHandle",
    "build_fault_config",
    "fault_config_from_json",
    "parse_latency_ms",
    "parse_fault_spec",
    "parse_latency_spec",
    "read_aws_credentials",
    "run_mock_provider",
    "start_mock_provider",
]

T = TypeVar("T")

_START_TIMEOUT = 10.0


class MockProviderHandle:
    """A mock provider serving on its own thread and event loop; stop it, or use `with`."""

    def __init__(self, host: str, config: MockProviderConfig) -> None:
        self.host = host
        self.config = config
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server = MockProviderServer(config)
        self._stopped: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _start(self, port: int) -> None:
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()

        async def serve() -> None:
            self._stopped = asyncio.Event()
            try:
                bound = await self._server.start(self.host, port)
            except BaseException as exc:
                ready.set_exception(exc)
                return
            ready.set_result(bound)
            try:
                await self._stopped.wait()
            finally:
                await self._server.close()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(serve())
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, name=f"mock-provider-{self.config.name}",
                                        daemon=True)
        self._thread.start()
        try:
            self.port = ready.result(timeout=_START_TIMEOUT)
        except BaseException:
            self._thread.join(timeout=_START_TIMEOUT)
            raise

    def _call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the server's loop, which owns all of the server's state."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(call)
        return future.result(timeout=_START_TIMEOUT)

    @property
    def faults(self) -> FaultConfig:
        return self._call(lambda: self._server.faults)

    def set_faults(self, faults: FaultConfig) -> None:
        """Replace the fault config (like `PUT /_mock/config`), restarting the counters."""
        self._call(lambda: self._server.set_faults(faults))

    def requests(self) -> list[dict[str, Any]]:
        """The recorded requests, as `GET /_mock/requests` returns them."""
        return self._call(self._server.recorded_requests)

    def clear_requests(self) -> int:
        return self._call(self._server.clear_requests)

    def stop(self) -> None:
        """Close the listener and every connection, and wait for the thread; idempotent."""
        thread = self._thread
        if thread is None:
            return
        self._thread = None
        stopped = self._stopped
        if stopped is not None and not self._loop.is_closed():
            # The loop may close between the check and the call.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(stopped.set)
        thread.join(timeout=_START_TIMEOUT)

    def __enter__(self) -> MockProviderHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_mock_provider(
    host: str = "127.0.0.1", port: int = 0, config: MockProviderConfig | None = None
) -> MockProviderHandle:
    """Start a mock provider on a background thread; port 0 picks a free port (`handle.port`)."""
    handle = MockProviderHandle(host, config or MockProviderConfig())
    handle._start(port)
    return handle


def run_mock_provider(
    host: str = "127.0.0.1", port: int = 9000, config: MockProviderConfig | None = None
) -> int:
    """Serve in the foreground until SIGINT or SIGTERM; returns the exit code.

    Prints `mock-provider <name> listening on <url>` to stdout once the port is bound.
    """
    cfg = config or MockProviderConfig()

    async def serve() -> int:
        server = MockProviderServer(cfg)
        try:
            bound = await server.start(host, port)
        except OSError as exc:
            print(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 1
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        shown = f"[{host}]" if ":" in host else host
        print(f"mock-provider {cfg.name} listening on http://{shown}:{bound}", flush=True)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await server.close()
        return 0

    return asyncio.run(serve())
