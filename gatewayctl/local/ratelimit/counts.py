"""The counts, in Redis, over Redis's own protocol (RESP) on one kept connection per service
thread: no client library and no per-call setup.

Fixed windows as the official service keeps them: INCRBY the window's key by the hits, EXPIRE
it after one window; every command of a call goes out in one write (a pipeline) and the
replies, one integer line each, come back in order.
"""

from __future__ import annotations

import socket
import struct
import threading


class CountsUnavailable(RuntimeError):
    pass


def _incr_expire(key: bytes, hits: int, expire: int) -> bytes:
    """INCRBY key hits, EXPIRE key expire: two RESP arrays of bulk strings."""
    h, e = b"%d" % hits, b"%d" % expire
    return (b"*3\r\n$6\r\nINCRBY\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
            b"*3\r\n$6\r\nEXPIRE\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
            % (len(key), key, len(h), h, len(key), key, len(e), e))


class _Connection:
    def __init__(self, address: tuple[str, int], timeout_s: float) -> None:
        self.sock = socket.create_connection(address, timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # A blocking socket whose kernel timeouts end a wait on a stuck Redis: Python's own
        # timeout would poll() before every send and every receive (two more system calls a
        # call); a timed-out receive raises BlockingIOError, an OSError like any failure.
        seconds = int(timeout_s)
        timeval = struct.pack("ll", seconds, int((timeout_s - seconds) * 1e6))
        self.sock.settimeout(None)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        self.pending = b""

    def replies(self, count: int) -> list[bytes]:
        """`count` reply lines (integer or error replies: one line each)."""
        data = self.pending
        while data.count(b"\r\n") < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            data += chunk
        lines = data.split(b"\r\n", count)
        self.pending = lines[count]
        return lines[:count]

    def close(self) -> None:
        self.sock.close()


class RedisCounts:
    def __init__(self, address: str, timeout_s: float = 0.5) -> None:
        host, _, port = address.rpartition(":")
        self._address = (host, int(port))
        self._timeout_s = timeout_s
        self._local = threading.local()
        self._open: list[_Connection] = []
        self._lock = threading.Lock()

    def _connection(self) -> _Connection:
        conn: _Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _Connection(self._address, self._timeout_s)
            self._local.conn = conn
            with self._lock:
                self._open.append(conn)
        return conn

    def _drop(self) -> None:
        conn: _Connection | None = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._lock:
                if conn in self._open:
                    self._open.remove(conn)
            conn.close()

    def add(self, items: list[tuple[bytes, int, int]]) -> list[int]:
        """(key, hits, expire seconds) -> the counts after adding."""
        payload = b"".join([_incr_expire(key, hits, expire) for key, hits, expire in items])
        try:
            conn = self._connection()
            conn.sock.sendall(payload)
            lines = conn.replies(2 * len(items))
        except OSError as exc:  # refused, reset, timed out: the next call connects anew
            self._drop()
            raise CountsUnavailable(f"redis {self._address[0]}:{self._address[1]}: {exc}") from exc
        errors = [line for line in lines if not line.startswith(b":")]
        if errors:
            self._drop()
            raise CountsUnavailable(f"redis: {errors[0].decode(errors='replace')}")
        return [int(line[1:]) for line in lines[::2]]

    def close(self) -> None:
        with self._lock:
            conns, self._open = self._open, []
        for conn in conns:
            conn.close()
