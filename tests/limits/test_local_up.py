"""`gatewayctl up` on a root with global limits: Redis (Debian's redis-server) and the local
rate limit service run beside Envoy, limits hold, an apply keeps the counts, `down` stops all."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayctl.errors import GatewayctlError
from gatewayctl.ir import BackendIR
from gatewayctl.local import process
from gatewayctl.local.gateway import apply_local, down, up
from gatewayctl.local.rendering import load_ir
from gatewayctl.local.state import StateDir
from tests.limits.local_roots import GLOBAL_LIMITS, global_quickstart, local_state
from tests.limits.services import redis_binary
from tests.limits.test_global import wait_for_fresh_window

pytestmark = [
    pytest.mark.envoy,
    pytest.mark.slow,
    pytest.mark.skipif(redis_binary() is None, reason="redis-server (Debian) not on PATH"),
]

LIMITS = """
---
apiVersion: gatewayctl.dev/v1alpha1
kind: Policy
metadata: {name: shared-limit}
spec:
  rateLimit: {requests: 3, per: minute, by: route}
"""


@pytest.fixture
def global_root(tmp_path: Path) -> Path:
    return global_quickstart(tmp_path, "shared-limit", LIMITS)


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateDir]:
    with local_state(tmp_path / "state") as state:
        yield state


def chat(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
    conn.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
    status = conn.getresponse().status
    conn.close()
    return status


def test_up_runs_redis_and_the_rate_limit_service(global_root: Path, state: StateDir) -> None:
    result = up(global_root, listener_port=process.free_port(), admin_port=process.free_port(),
                state_dir=state.path)
    children = {name: state.read_pid(name) for name in ("redis", "ratelimit")}
    assert all(r is not None and process.is_alive(r) for r in children.values())
    assert (state.path / "ratelimit" / "config.yaml").is_file()
    port = result.ports.listener
    wait_for_fresh_window()
    assert [chat(port) for _ in range(5)] == [200, 200, 200, 429, 429]
    # an unrelated apply (the route's weights) keeps the count
    ir = load_ir(global_root)
    route = ir.routes[0]
    moved = tuple(BackendIR(b.model, 100 - b.weight, b.role) for b in route.backends)
    apply_local(dataclasses.replace(ir, routes=(dataclasses.replace(route, backends=moved),)),
                state_dir=state.path)
    assert [chat(port) for _ in range(3)] == [429] * 3
    stopped = down(state_dir=state.path)
    assert dict(stopped.stopped).keys() >= {"envoy", "mock", "ratelimit", "redis"}
    assert not any(process.is_alive(r) for r in children.values() if r is not None)


SECURED = (
    "  limits:\n"
    "    scope: global\n"
    "    redis:\n"
    "      address: redis.example.com:6380\n"
    "      username: gateway\n"
    "      passwordSecretRef: {name: redis-auth, key: password}\n"
    "      tls: true\n"
    "      caSecretRef: {name: redis-ca, key: ca.crt}\n"
)
REDIS_PASSWORD = "local redis pass:word 7"


def test_up_runs_its_redis_with_the_manifests_login_and_tls(
        global_root: Path, state: StateDir) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not on PATH")
    gateway = global_root / "gateway.yaml"
    gateway.write_text(gateway.read_text().replace(
        GLOBAL_LIMITS, SECURED))
    secret = global_root / ".secrets" / "redis-auth" / "password"
    secret.parent.mkdir(parents=True)
    secret.write_text(REDIS_PASSWORD + "\n")
    said: list[str] = []
    result = up(global_root, listener_port=process.free_port(), admin_port=process.free_port(),
                state_dir=state.path, on_progress=said.append)
    port = result.ports.listener
    wait_for_fresh_window()
    assert [chat(port) for _ in range(5)] == [200, 200, 200, 429, 429]
    # Redis speaks TLS only and lets only the ACL user in: a plain client gets nothing
    redis_port = state.read_state().redis_port  # type: ignore[union-attr]
    with socket.create_connection(("127.0.0.1", redis_port), timeout=5) as plain:
        plain.sendall(b"*1\r\n$4\r\nPING\r\n")
        plain.settimeout(2)
        with contextlib.suppress(TimeoutError, ConnectionError):
            assert not plain.recv(100).startswith(b"+PONG")
    conf = state.path / "redis.conf"
    assert conf.stat().st_mode & 0o777 == 0o600
    # the password is in no output, log or command line
    seen = "\n".join(said) + repr(result)
    seen += "".join(p.read_text(errors="replace") for p in state.logs_dir.iterdir())
    for name in ("redis", "ratelimit", "cachestore"):
        record = state.read_pid(name)
        assert record is not None
        seen += Path(f"/proc/{record.pid}/cmdline").read_bytes().decode(errors="replace")
    assert "AUTH as gateway, TLS" in seen  # the services say how they log in...
    assert REDIS_PASSWORD not in seen and "pass:word" not in seen  # ...never with what
    # a changed login needs a new `up`: an apply says so and changes nothing
    ir = load_ir(global_root)
    plain_ir = dataclasses.replace(ir, limits=dataclasses.replace(ir.limits, redis_tls=False,
                                                                  redis_ca=None))
    with pytest.raises(GatewayctlError, match="login or TLS changed") as err:
        apply_local(plain_ir, state_dir=state.path)
    assert err.value.hint == f"run `gatewayctl down`, then `gatewayctl up {global_root.resolve()}`"
    assert chat(port) == 429
