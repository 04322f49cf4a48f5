"""The stand-in's answers, asked directly over gRPC with a real Redis (Debian's redis-server):
each call counts, a descriptor without a limit is answered OK and counted nowhere, and a
changed configuration applies to the very same request bytes it answered before (the
service remembers each distinct request's match, per configuration)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gatewayctl.local.ratelimit.server import METHOD_PATH, start_service
from gatewayctl.local.ratelimit.wire import (
    OK,
    OVER_LIMIT,
    Descriptor,
    RateLimitRequest,
    RateLimitResponse,
    decode_response,
    encode_request,
)
from tests.limits.grpc_client import Client
from tests.limits.services import redis_binary, running_redis
from tests.limits.test_counts import redis_command
from tests.render.harness import free_port

pytestmark = pytest.mark.skipif(redis_binary() is None, reason="redis-server not on PATH")

# a year's window: a test never sees its count restart at a window's edge
CONFIG = "domain: d\ndescriptors:\n- key: l0\n  rate_limit: {unit: year, requests_per_unit: %d}\n"


def ask(client: Client, stream: int, message: bytes) -> RateLimitResponse:
    client.call(stream, METHOD_PATH, message)
    (headers, reply), = client.answers(1).values()
    assert headers["grpc-status"] == "0", headers
    return decode_response(reply)


def test_repeated_requests_count_and_follow_a_changed_configuration(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG % 2)
    message = encode_request(RateLimitRequest(
        "d", (Descriptor((("l0", "chat"),)), Descriptor((("nolimit", "x"),)))))
    with running_redis(tmp_path / "redis") as redis:
        service = start_service(config, redis.address, port=free_port())
        try:
            client = Client(service.port)
            answers = [ask(client, stream, message) for stream in (1, 3, 5)]
            assert [a.overall_code for a in answers] == [OK, OK, OVER_LIMIT]
            assert [a.statuses[0].limit_remaining for a in answers] == [1, 0, 0]
            first = answers[0].statuses[0]
            assert (first.requests_per_unit, first.unit) == (2, "year")
            assert 0 < first.seconds_until_reset <= 365 * 86400
            # no limit: OK without a limit, and nothing in Redis under its name
            assert {a.statuses[1].code for a in answers} == {OK}
            assert {a.statuses[1].unit for a in answers} == {None}
            assert redis_command(redis, "KEYS", "*nolimit*") == b"*0\r\n"

            config.write_text(CONFIG % 10)  # looked at again within half a second
            time.sleep(1.0)
            after = ask(client, 7, message)
            assert after.overall_code == OK
            assert (after.statuses[0].requests_per_unit, after.statuses[0].limit_remaining) == (
                10, 6)
        finally:
            service.stop()


def test_the_service_runs_on_uvloop_when_installed(tmp_path: Path) -> None:
    """The `envoy` and `dev` extras install uvloop; the service then runs its loop (asyncio's
    own loop costs more CPU per call: docs/performance.md)."""
    pytest.importorskip("uvloop")
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG % 2)
    with running_redis(tmp_path / "redis") as redis:
        service = start_service(config, redis.address, port=free_port())
        try:
            assert type(service.loop).__module__.startswith("uvloop")
        finally:
            service.stop()
