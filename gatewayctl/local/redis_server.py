"""The local gateway's own Redis (global limits of `up`), logging in and speaking TLS as the
manifests' Redis does.

Gateway.spec.limits.redis names the production Redis; locally `up` always starts Debian's
`redis-server`, but with the same shape of access, so that the services beside the gateway run
the same AUTH and TLS code paths as on Kubernetes:

- passwordSecretRef: Redis requires that password (the local secret file: copied from
  `<root>/.secrets/`, or a generated placeholder); with a username, that ACL user is the only
  one that may log in (Redis's default user is switched off, as managed services do).
- tls: Redis listens with TLS only, with a certificate for 127.0.0.1 signed by a CA that `up`
  makes with `openssl` into the state folder (the manifests' caSecretRef is production's CA).

The password goes into a configuration file readable by its owner only, never onto a command
line; the services get it in REDIS_AUTH, as the official rate limit service reads it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gatewayctl.errors import GatewayctlError
from gatewayctl.ir import GatewayIR
from gatewayctl.local import process
from gatewayctl.local.process import HOST
from gatewayctl.local.state import ProcessRecord, StateDir

# The variables the services read (local/resp.py RedisAccess.from_env); inherited ones are
# replaced so that a shell's own settings never reach the local services.
ACCESS_VARIABLES = ("REDIS_AUTH", "REDIS_TLS", "REDIS_TLS_CACERT")


@dataclass(frozen=True)
class LocalRedis:
    record: ProcessRecord
    address: str
    env: dict[str, str]  # the services' environment: os.environ with the access variables


def _quoted(value: str) -> str:
    """A redis.conf argument holding any bytes: double-quoted, every byte as \\xHH."""
    return '"' + "".join(f"\\x{b:02x}" for b in value.encode()) + '"'


def _password(state: StateDir, ir: GatewayIR) -> str | None:
    ref = ir.limits.redis_password
    if ref is None:
        return None
    path = state.secrets_dir / ref.name / ref.key
    value = path.read_text(encoding="utf-8").rstrip("\r\n")  # kubelet files keep no newline
    if not value:
        raise GatewayctlError(f"the Redis password {ref.name}/{ref.key} is empty",
                              hint=f"put the password in .secrets/{ref.name}/{ref.key}")
    return value


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 (made once, kept): ca, cert, key."""
    ca, cert, key = folder / "ca.crt", folder / "redis.crt", folder / "redis.key"
    if ca.is_file() and cert.is_file() and key.is_file():
        return ca, cert, key
    openssl = shutil.which("openssl")
    if openssl is None:
        raise GatewayctlError(
            "limits.redis.tls needs a certificate for the local Redis, and openssl is not "
            "installed", hint="install Debian's package: apt-get install -y openssl")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n", encoding="ascii")
    steps = [
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
         "-subj", "/CN=gatewayctl local Redis CA", "-keyout", str(folder / "ca.key"),
         "-out", str(ca)],
        [openssl, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(folder / "redis.csr")],
        [openssl, "x509", "-req", "-in", str(folder / "redis.csr"), "-CA", str(ca),
         "-CAkey", str(folder / "ca.key"), "-CAcreateserial", "-days", "3650",
         "-extfile", str(ext), "-out", str(cert)],
    ]
    for argv in steps:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise GatewayctlError(f"openssl failed making the local Redis's certificate: "
                                  f"{done.stderr.strip()[-300:]}", hint=f"see {folder}")
    return ca, cert, key


def _config(state: StateDir, ir: GatewayIR, port: int) -> tuple[list[str], dict[str, str]]:
    """redis.conf lines and the services' access variables."""
    lines = [f"bind {HOST}", 'save ""', "appendonly no",
             f"dir {_quoted(str(state.path / 'redis'))}"]
    access: dict[str, str] = {}
    password = _password(state, ir)
    if password is not None:
        user = ir.limits.redis_username
        if user is None:
            lines.append(f"requirepass {_quoted(password)}")
            access["REDIS_AUTH"] = password
        else:
            lines.append("user default off")
            lines.append(f"user {_quoted(user)} on {_quoted('>' + password)} ~* &* +@all")
            access["REDIS_AUTH"] = f"{user}:{password}"
    if ir.limits.redis_tls:
        ca, cert, key = make_certificates(state.path / "redis-tls")
        lines += ["port 0", f"tls-port {port}", f"tls-cert-file {_quoted(str(cert))}",
                  f"tls-key-file {_quoted(str(key))}", f"tls-ca-cert-file {_quoted(str(ca))}",
                  "tls-auth-clients no"]
        access["REDIS_TLS"] = "true"
        access["REDIS_TLS_CACERT"] = str(ca)
    else:
        lines.append(f"port {port}")
    return lines, access


def start_local_redis(state: StateDir, ir: GatewayIR, port: int) -> LocalRedis:
    """Start redis-server on `port` with the manifests' kind of access (not yet waited for)."""
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        raise GatewayctlError(
            "global limits need Redis, and redis-server is not installed",
            hint="install Debian's package: apt-get install -y redis-server "
            "(or use limits.scope: replica locally)",
        )
    (state.path / "redis").mkdir(parents=True, exist_ok=True)
    lines, access = _config(state, ir, port)
    conf = state.path / "redis.conf"
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    record = process.spawn([redis_server, str(conf)], state.logs_dir / "redis.log")
    env = {k: v for k, v in os.environ.items() if k not in ACCESS_VARIABLES}
    return LocalRedis(record, f"{HOST}:{port}", {**env, **access})


def access_of(ir: GatewayIR) -> tuple[str | None, bool, bool]:
    """What of the IR the running local Redis was started with (user, AUTH, TLS)."""
    limits = ir.limits
    return limits.redis_username, limits.redis_password is not None, limits.redis_tls
