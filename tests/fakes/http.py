"""The one start/stop of the HTTP fakes: a handler served on 127.0.0.1, on a free port, by a
daemon thread, until stopped.

`ServedHTTP` serves any handler class. `HTTPFake` is the base of the stateful API fakes
(Kubernetes, GitLab): `with Fake() as fake:` serves it, its handler class finds the fake as
`self.api`, and `fake.stopping` is set when it stops, so that a request told to hang ends then.
"""

from __future__ import annotations

import functools
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class ServedHTTP:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HTTPFake:
    _served: ServedHTTP | None = None

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @functools.cached_property
    def stopping(self) -> threading.Event:
        return threading.Event()

    def start(self) -> Self:
        handler = self.handler_class()
        bound = type(f"Bound{handler.__name__}", (handler,), {"api": self})
        self._served = ServedHTTP(bound)
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._served is not None:
            self._served.stop()
            self._served = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._served is None:
            raise RuntimeError("server is not running")
        return self._served.url
