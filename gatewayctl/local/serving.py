"""Serving a local asyncio server from a thread of its own (the rate limit stand-in and the
cache store service): `up` and the tests run them in-process, the commands in the foreground.
Both run on uvloop's event loop where it is installed (the only module that imports uvloop:
an import-linter contract in pyproject.toml)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any


def serve_in_thread(loop: asyncio.AbstractEventLoop, start: Coroutine[Any, Any, Any],
                    host: str, port: int, name: str) -> threading.Thread:
    """Run `start` (the server's listen) on `loop`, then the loop forever in a daemon thread
    named `name`. A port that cannot be bound is an OSError naming it; the loop is closed."""
    try:
        loop.run_until_complete(start)
    except OSError as exc:
        loop.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc}") from exc

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def stop_serving(loop: asyncio.AbstractEventLoop,
                 close: Callable[[], Coroutine[Any, Any, Any]],
                 thread: threading.Thread) -> None:
    """Close the server (`close()` on its loop, at most 10 s), stop the loop, join the thread."""
    if loop.is_running():
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop (libuv, in C) where it is installed, as the `envoy` extra installs
    it: per call it costs a fraction of asyncio's own loop (docs/performance.md). Without it,
    asyncio's: the same behaviour, more CPU per call."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
