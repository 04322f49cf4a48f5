"""The stand-in's counts in a real Redis (Debian's redis-server), over its own RESP client:
pipelined INCRBY and EXPIRE, Redis's error replies, and a Redis that went away and came back."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from gatewayctl.local.ratelimit.counts import CountsUnavailable, RedisCounts
from tests.limits.services import Redis, redis_binary, running_redis, start_redis

pytestmark = pytest.mark.skipif(redis_binary() is None, reason="redis-server not on PATH")


def redis_command(redis: Redis, *parts: str) -> bytes:
    """One command over a fresh connection, its raw reply (a test's own view of Redis)."""
    wire = f"*{len(parts)}\r\n" + "".join(f"${len(p)}\r\n{p}\r\n" for p in parts)
    with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as sock:
        sock.sendall(wire.encode())
        return sock.recv(4096)


def test_adds_and_expires_in_one_pipeline(tmp_path: Path) -> None:
    with running_redis(tmp_path) as redis:
        counts = RedisCounts(redis.address)
        try:
            assert counts.add([(b"gw_l0_chat_60", 1, 60), (b"gw_t0_chat_60", 250, 120)]) == [1, 250]
            assert counts.add([(b"gw_l0_chat_60", 1, 60), (b"gw_t0_chat_60", 0, 120)]) == [2, 250]
            ttl = int(redis_command(redis, "TTL", "gw_t0_chat_60")[1:].strip())
            assert 110 < ttl <= 120
            assert redis_command(redis, "GET", "gw_l0_chat_60") == b"$1\r\n2\r\n"
        finally:
            counts.close()


def test_an_error_reply_is_unavailable_and_the_next_call_works(tmp_path: Path) -> None:
    with running_redis(tmp_path) as redis:
        counts = RedisCounts(redis.address)
        try:
            assert redis_command(redis, "SET", "text", "not a number") == b"+OK\r\n"
            with pytest.raises(CountsUnavailable, match="not an integer"):
                counts.add([(b"text", 1, 60)])
            assert counts.add([(b"fine", 3, 60)]) == [3]
        finally:
            counts.close()


def test_a_restarted_redis_is_reached_again(tmp_path: Path) -> None:
    redis = start_redis(tmp_path / "a")
    counts = RedisCounts(redis.address)
    try:
        assert counts.add([(b"k", 5, 60)]) == [5]
        redis.stop()
        with pytest.raises(CountsUnavailable):
            counts.add([(b"k", 1, 60)])
        redis = start_redis(tmp_path / "b", port=redis.port)
        # the kept connection is gone: the first call after may fail, then it reconnects
        for _ in range(2):
            try:
                assert counts.add([(b"k", 1, 60)]) == [1]  # a new Redis: counts start again
                break
            except CountsUnavailable:
                continue
        else:
            raise AssertionError("never reconnected")
    finally:
        counts.close()
        redis.stop()


@pytest.mark.timeout(30)
def test_a_stuck_redis_is_unavailable_after_the_timeout(tmp_path: Path) -> None:
    """A Redis that stops answering (SIGSTOP: the connection stays open) fails the call after
    the timeout instead of holding the service; once it runs again, calls work."""
    with running_redis(tmp_path) as redis:
        counts = RedisCounts(redis.address, timeout_s=0.3)
        try:
            assert counts.add([(b"k", 1, 60)]) == [1]
            os.kill(redis.proc.pid, signal.SIGSTOP)
            try:
                with pytest.raises(CountsUnavailable):
                    counts.add([(b"k", 1, 60)])
            finally:
                os.kill(redis.proc.pid, signal.SIGCONT)
            assert counts.add([(b"k", 1, 60)]) == [3]  # the stuck call's hit counted too
        finally:
            counts.close()
