"""Redis (Debian's redis-server) and the local rate limit service, on free localhost ports."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gatewayctl.ir import GatewayIR
from gatewayctl.local.ratelimit.server import RunningService, start_service
from gatewayctl.local.resp import RedisAccess
from gatewayctl.render.ratelimit_config import dump_ratelimit_config, render_ratelimit_config
from tests.render.harness import free_port


def redis_binary() -> str | None:
    return shutil.which("redis-server")


@dataclass
class Redis:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def start_redis(workdir: Path, port: int | None = None, extra: Sequence[str] = (),
                tls: tuple[Path, Path, Path] | None = None) -> Redis:
    """`extra`: more redis-server options (--requirepass, --user ...); `tls`: (CA, certificate,
    key) to listen with TLS only."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    listen = ["--port", str(port)]
    if tls is not None:
        ca, cert, key = tls
        listen = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
                  "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
                  "--tls-auth-clients", "no"]
    proc = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", *listen, "--save", "",
         "--appendonly", "no", "--dir", str(workdir), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return Redis(proc, port)
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("redis-server did not start")
        time.sleep(0.05)


@contextlib.contextmanager
def running_redis(workdir: Path, extra: Sequence[str] = (),
                  tls: tuple[Path, Path, Path] | None = None) -> Iterator[Redis]:
    redis = start_redis(workdir, extra=extra, tls=tls)
    try:
        yield redis
    finally:
        redis.stop()


def write_ratelimit_config(path: Path, ir: GatewayIR) -> None:
    config = render_ratelimit_config(ir)
    assert config is not None
    tmp = path.with_suffix(".tmp")
    tmp.write_text(dump_ratelimit_config(config))
    tmp.replace(path)


@contextlib.contextmanager
def running_ratelimit(workdir: Path, ir: GatewayIR, redis: Redis,
                      access: RedisAccess | None = None) -> Iterator[RunningService]:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.yaml"
    write_ratelimit_config(config, ir)
    service = start_service(config, redis.address, port=free_port(), access=access)
    try:
        yield service
    finally:
        service.stop()
