"""Redis's own protocol (RESP2), spoken directly: no client library and no per-call setup.

Shared by the rate limit stand-in (ratelimit/counts.py) and the response cache's store service
(cachestore/). One kept connection per thread; every command of a call goes out in one write
(a pipeline) and the replies come back in order. A connection that fails (refused, reset,
timed out, or an error reply) is dropped, so the next call connects anew; the failure is one
RedisUnavailable carrying the address and the cause.

A connection speaks TLS (Python's ssl, the server's certificate and name verified) and logs in
with AUTH when its RedisAccess says so, before its first command; a refused login is a
RedisUnavailable with Redis's own reason (which never holds the password). RedisAccess reads
the official rate limit service's variables (REDIS_AUTH, REDIS_TLS, REDIS_TLS_CACERT), so
Kubernetes gives both services the same environment (render/k8s/redis_access.py).
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

_TRUE = frozenset({"1", "t", "true"})
_FALSE = frozenset({"", "0", "f", "false"})


class RedisUnavailable(RuntimeError):
    pass


class RedisAccessError(ValueError):
    """The environment's Redis settings are not usable (the message names the variable)."""


@dataclass(frozen=True)
class RedisAccess:
    """How to log in to Redis and whether to speak TLS. The password never shows in repr."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RedisAccess:
        """As the official service reads them: REDIS_AUTH is `password` or `user:password`
        (split at the first colon), REDIS_TLS a boolean, REDIS_TLS_CACERT a PEM file."""
        auth = env.get("REDIS_AUTH", "")
        username: str | None = None
        password: str | None = auth or None
        if ":" in auth:
            username, _, password = auth.partition(":")
        flag = env.get("REDIS_TLS", "").strip().lower()
        if flag not in _TRUE | _FALSE:
            raise RedisAccessError(
                f'REDIS_TLS is "{flag}": use true or false')
        ca_file = env.get("REDIS_TLS_CACERT") or None
        tls = flag in _TRUE
        if ca_file is not None and not tls:
            raise RedisAccessError("REDIS_TLS_CACERT is only used with REDIS_TLS=true")
        return cls(username or None, password, tls, ca_file)

    def context(self) -> ssl.SSLContext | None:
        """The TLS context (None without TLS): the system's CAs, or ca_file's."""
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=self.ca_file)

    def login(self) -> bytes:
        """The AUTH command, or b"" when no password is set."""
        if self.password is None:
            return b""
        if self.username is None:
            return command(b"AUTH", self.password.encode())
        return command(b"AUTH", self.username.encode(), self.password.encode())

    def describe(self) -> str:
        """For a log line: how it logs in, never the password."""
        login = f"AUTH as {self.username or 'default'}" if self.password else "no AUTH"
        return f"{login}, {'TLS' if self.tls else 'no TLS'}"


class RedisReplyError(Exception):
    """An error reply (`-ERR ...`, `-NOSCRIPT ...`)."""


# A reply: an integer, a bulk or simple string (bytes), nil (None), an array of replies, or an
# error reply (RedisReplyError, returned, not raised: a pipeline's other replies still count).
Reply: TypeAlias = "int | bytes | None | list[Reply] | RedisReplyError"


def command(*parts: bytes) -> bytes:
    """One command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


def parse_reply(data: bytes, at: int) -> tuple[Reply, int] | None:
    """The reply starting at `at` and the index after it; None when `data` ends first."""
    eol = data.find(b"\r\n", at)
    if eol < 0:
        return None
    kind, line, after = data[at:at + 1], data[at + 1:eol], eol + 2
    if kind == b":":
        return int(line), after
    if kind == b"+":
        return line, after
    if kind == b"-":
        return RedisReplyError(line.decode(errors="replace")), after
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, after
        if len(data) < after + size + 2:
            return None
        return data[after:after + size], after + size + 2
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, after
        items: list[Reply] = []
        for _ in range(count):
            parsed = parse_reply(data, after)
            if parsed is None:
                return None
            item, after = parsed
            items.append(item)
        return items, after
    raise ConnectionError(f"not a RESP reply: {data[at:at + 20]!r}")


class _Connection:
    def __init__(self, address: tuple[str, int], timeout_s: float,
                 access: RedisAccess, context: ssl.SSLContext | None) -> None:
        sock = socket.create_connection(address, timeout=timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # A blocking socket whose kernel timeouts end a wait on a stuck Redis: Python's own
        # timeout would poll() before every send and every receive (two more system calls a
        # call); a timed-out receive raises BlockingIOError, an OSError like any failure.
        seconds = int(timeout_s)
        timeval = struct.pack("ll", seconds, int((timeout_s - seconds) * 1e6))
        sock.settimeout(None)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        self.pending = b""
        try:
            self.sock = (sock if context is None
                         else context.wrap_socket(sock, server_hostname=address[0]))
        except OSError:
            sock.close()
            raise
        login = access.login()
        if login:
            try:
                self.sock.sendall(login)
                (reply,) = self.replies(1)
            except (OSError, ValueError):
                self.sock.close()
                raise
            if isinstance(reply, RedisReplyError):
                self.sock.close()
                raise ConnectionError(f"redis refused the login: {reply}")

    def lines(self, count: int) -> list[bytes]:
        """`count` one-line replies (integers, simple strings, errors), unparsed: the rate
        limit service's fast path."""
        data = self.pending
        while data.count(b"\r\n") < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            data += chunk
        lines = data.split(b"\r\n", count)
        self.pending = lines[count]
        return lines[:count]

    def replies(self, count: int) -> list[Reply]:
        data, at = self.pending, 0
        out: list[Reply] = []
        while len(out) < count:
            parsed = parse_reply(data, at)
            if parsed is None:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("redis closed the connection")
                data, at = data[at:] + chunk, 0
                continue
            reply, at = parsed
            out.append(reply)
        self.pending = data[at:]
        return out

    def close(self) -> None:
        self.sock.close()


class RedisClient:
    """Pipelines to one Redis at "HOST:PORT", one kept connection per calling thread."""

    def __init__(self, address: str, timeout_s: float = 0.5,
                 access: RedisAccess | None = None) -> None:
        host, _, port = address.rpartition(":")
        self.address = (host, int(port))
        self._timeout_s = timeout_s
        self._access = access or RedisAccess()
        self._context = self._access.context()  # one context: its CA file is read once
        self._local = threading.local()
        self._open: list[_Connection] = []
        self._lock = threading.Lock()

    def where(self) -> str:
        return f"redis {self.address[0]}:{self.address[1]}"

    def _connection(self) -> _Connection:
        conn: _Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _Connection(self.address, self._timeout_s, self._access, self._context)
            self._local.conn = conn
            with self._lock:
                self._open.append(conn)
        return conn

    def drop(self) -> None:
        """Close this thread's connection (after an error reply): the next call connects anew."""
        conn: _Connection | None = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._lock:
                if conn in self._open:
                    self._open.remove(conn)
            conn.close()

    def pipeline(self, commands: list[bytes]) -> list[Reply]:
        """The replies to `commands` (each from `command`), in order; error replies are
        returned as RedisReplyError. Raises RedisUnavailable when Redis cannot be reached."""
        try:
            conn = self._connection()
            conn.sock.sendall(b"".join(commands))
            return conn.replies(len(commands))
        except (OSError, ValueError) as exc:  # refused, reset, timed out, garbled
            self.drop()
            raise RedisUnavailable(f"{self.where()}: {exc}") from exc

    def send_lines(self, payload: bytes, count: int) -> list[bytes]:
        """Send encoded commands whose replies are one line each; the `count` lines. Raises
        RedisUnavailable when Redis cannot be reached."""
        try:
            conn = self._connection()
            conn.sock.sendall(payload)
            return conn.lines(count)
        except OSError as exc:  # refused, reset, timed out: the next call connects anew
            self.drop()
            raise RedisUnavailable(f"{self.where()}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            conns, self._open = self._open, []
        for conn in conns:
            conn.close()
