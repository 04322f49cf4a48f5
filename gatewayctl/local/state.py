"""The local gateway's state directory: what `up` started, what it serves, and its secrets.

Layout (under `$GATEWAYCTL_STATE_DIR`, else `$XDG_STATE_HOME/gatewayctl/local`, else
`~/.local/state/gatewayctl/local`):

    lock                    flock: one up/apply/down at a time
    state.json              root served, ports, start time, config version, mocked providers
    envoy.pid, mock.pid     "<pid> <start ticks>" of each child (ticks guard against PID reuse)
    ir.json                 the IR the gateway runs; written only after Envoy accepted it
    envoy/bootstrap.yaml    the bootstrap Envoy was started with
    envoy/validate/         scratch space for `envoy --mode validate`
    config/                 the published LDS/CDS (`..data` swap, see `publish.py`)
    secrets/<name>/<key>    copied from `<root>/.secrets/<name>/<key>`, or a generated placeholder
    secrets/_mock/credential  what mocked providers are sent instead of their credential
    secrets/_mock/aws-credentials  what mocked Bedrock providers sign with (the mock checks it)
    logs/                   envoy.log, mock.log, access.log

Owns file layout and file I/O only; it never starts processes or talks to Envoy.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from gatewayctl.atomic import write_atomic
from gatewayctl.errors import GatewayctlError
from gatewayctl.ir import GatewayIR, SecretRefIR, from_json, to_json

STATE_DIR_ENV = "GATEWAYCTL_STATE_DIR"
SECRETS_SOURCE = ".secrets"  # under the manifest root; hidden, so the manifest loader skips it
# What a provider served by the mock is sent instead of its credential. The name cannot be a
# Kubernetes Secret's (no capitals or underscores there), so it never shadows a user's secret.
MOCK_CREDENTIAL = SecretRefIR("_mock", "credential")
MOCK_CREDENTIAL_VALUE = "gwlocal-mock-credential"
# What mocked Bedrock providers sign with: an AWS credentials file that the mock is started with
# too (`--aws-credentials`), so it checks their SigV4 signatures as AWS would.
MOCK_AWS_CREDENTIAL = SecretRefIR("_mock", "aws-credentials")
MOCK_AWS_CREDENTIAL_VALUE = (
    "[default]\naws_access_key_id = GWLOCALMOCKKEYID\n"
    "aws_secret_access_key = gwlocal-mock-aws-secret\n"
)
_PLACEHOLDERS = ".placeholders.json"


def default_state_dir() -> Path:
    explicit = os.environ.get(STATE_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "gatewayctl" / "local"


@dataclass(frozen=True)
class ProcessRecord:
    """A child process: its PID and kernel start time, so a reused PID is never mistaken."""

    pid: int
    start_ticks: int | None


@dataclass(frozen=True)
class LocalState:
    root: str
    listener_port: int
    admin_port: int
    mock_port: int
    started_at: float
    config_version: str = ""
    applied_at: float = 0.0
    mocked_providers: tuple[str, ...] = ()
    real_providers: tuple[str, ...] = ()
    applies: int = 0
    # Route configs replaced while connections may still use them (Envoy drains them for
    # DRAIN_TIME_S): (replaced at, every cluster they could reach). Their clusters are kept.
    retired: tuple[tuple[float, tuple[str, ...]], ...] = ()
    lingering: tuple[str, ...] = ()  # clusters kept only for those draining connections
    drain_time_s: int = 600  # Envoy's --drain-time-s
    redis_port: int = 0  # global limits: Redis and the rate limit service (local/limits.py)
    ratelimit_port: int = 0
    cache_store_port: int = 0  # global limits: the response cache's store service


@dataclass(frozen=True)
class SecretsReport:
    copied: tuple[str, ...] = ()  # "name/key" taken from <root>/.secrets
    generated: tuple[str, ...] = ()  # "name/key" placeholders (new or kept from an earlier up)

    def is_real(self, ref: SecretRefIR) -> bool:
        return f"{ref.name}/{ref.key}" in self.copied


class CorruptStateFile(GatewayctlError):
    """A file of the state directory that exists but cannot be read as what it should hold."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(
            f"{path} is corrupt ({problem}): the local gateway's state cannot be read",
            hint="run `gatewayctl down` (it stops what it can and clears the state), then "
            "`gatewayctl up ROOT`")
        self.path = path


T = TypeVar("T")


def read_record(path: Path, parse: Callable[[str], T]) -> T | None:
    """`parse` of the file's text; None when there is no such file; CorruptStateFile when
    there is one that cannot be read or parsed: never "nothing there" for a damaged file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise CorruptStateFile(path, getattr(err, "strerror", None) or str(err)) from None
    try:
        return parse(text)
    except (ValueError, TypeError, KeyError, IndexError) as err:
        raise CorruptStateFile(path, str(err) or type(err).__name__) from None


def _string_list(text: str) -> list[str]:
    value = json.loads(text)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("not a list of names")
    return value


class StateDir:
    def __init__(self, path: Path | None = None) -> None:
        self.path = (path or default_state_dir()).resolve()

    # -- paths ---------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    @property
    def ir_file(self) -> Path:
        return self.path / "ir.json"

    @property
    def config_dir(self) -> Path:
        return self.path / "config"

    @property
    def secrets_dir(self) -> Path:
        return self.path / "secrets"

    @property
    def envoy_dir(self) -> Path:
        return self.path / "envoy"

    @property
    def modules_dir(self) -> Path:
        """The compiled module's build cache (local/module.py), one folder per build."""
        return self.path / "modules"

    @property
    def module_search_path(self) -> Path:
        """Where the local Envoy loads the compiled module from."""
        return self.envoy_dir / "module"

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    @property
    def envoy_log(self) -> Path:
        return self.logs_dir / "envoy.log"

    @property
    def mock_log(self) -> Path:
        return self.logs_dir / "mock.log"

    @property
    def access_log(self) -> Path:
        return self.logs_dir / "access.log"

    def pid_file(self, name: str) -> Path:
        return self.path / f"{name}.pid"

    def ensure(self) -> None:
        for d in (self.path, self.config_dir, self.secrets_dir, self.envoy_dir, self.logs_dir):
            d.mkdir(parents=True, exist_ok=True)
        for private in (self.path, self.secrets_dir):
            private.chmod(0o700)

    # -- locking -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, timeout: float = 60.0) -> Iterator[None]:
        """Hold the state lock; another up/apply/down waits up to `timeout` seconds, then fails."""
        self.ensure()
        fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        raise GatewayctlError(
                            f"another gatewayctl command is changing the local gateway "
                            f"(lock {self.path / 'lock'} held for {timeout:.0f}s)",
                            hint="wait for it to finish, then try again",
                        ) from None
                    time.sleep(0.1)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    # -- records -------------------------------------------------------------------------------
    def read_state(self) -> LocalState | None:
        """What `up` started, or None when nothing was; CorruptStateFile when unreadable."""

        def parse(text: str) -> LocalState:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            for key in ("mocked_providers", "real_providers", "lingering"):
                data[key] = tuple(data.get(key, ()))
            data["retired"] = tuple((float(t), tuple(names)) for t, names in
                                    data.get("retired", ()))
            return LocalState(**data)

        return read_record(self.state_file, parse)

    def write_state(self, state: LocalState) -> None:
        write_atomic(self.state_file, json.dumps(asdict(state), indent=2, sort_keys=True) + "\n")

    def read_pid(self, name: str) -> ProcessRecord | None:
        def parse(text: str) -> ProcessRecord:
            parts = text.split()
            if not 1 <= len(parts) <= 2:
                raise ValueError(f"{len(parts)} fields, not a PID and start ticks")
            return ProcessRecord(int(parts[0]), int(parts[1]) if len(parts) > 1 else None)

        return read_record(self.pid_file(name), parse)

    def write_pid(self, name: str, record: ProcessRecord) -> None:
        ticks = "" if record.start_ticks is None else f" {record.start_ticks}"
        write_atomic(self.pid_file(name), f"{record.pid}{ticks}\n")

    def read_ir(self) -> GatewayIR | None:
        return read_record(self.ir_file, from_json)

    def write_ir(self, ir: GatewayIR) -> None:
        write_atomic(self.ir_file, to_json(ir))

    def clear_runtime(self) -> None:
        """Forget the running gateway (after `down`); keeps logs, secrets and the last IR."""
        for p in (self.state_file, self.pid_file("envoy"), self.pid_file("mock")):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    # -- secrets -------------------------------------------------------------------------------
    def prepare_secrets(self, root: Path, refs: Iterable[SecretRefIR]) -> SecretsReport:
        """Make every referenced secret file exist under `secrets/`.

        A file at `<root>/.secrets/<name>/<key>` is copied (refreshed on every call). Otherwise a
        placeholder is generated once and kept, so keys printed by an earlier `up` stay valid.
        """
        self.ensure()
        marker = self.secrets_dir / _PLACEHOLDERS
        placeholders = set(read_record(marker, _string_list) or ())
        copied: list[str] = []
        generated: list[str] = []
        for ref in sorted(set(refs), key=lambda r: (r.name, r.key)):
            ident = f"{ref.name}/{ref.key}"
            src = root / SECRETS_SOURCE / ref.name / ref.key
            dest = self.secrets_dir / ref.name / ref.key
            dest.parent.mkdir(mode=0o700, exist_ok=True)
            if src.is_file():
                write_atomic(dest, src.read_text(encoding="utf-8"), mode=0o600)
                placeholders.discard(ident)
                copied.append(ident)
            else:
                if not (dest.is_file() and ident in placeholders):
                    write_atomic(dest, f"gwlocal-{secrets.token_hex(16)}", mode=0o600)
                    placeholders.add(ident)
                generated.append(ident)
        write_atomic(marker, json.dumps(sorted(placeholders)) + "\n", mode=0o600)
        self._write_mock_credential()
        return SecretsReport(tuple(copied), tuple(generated))

    def _write_mock_credential(self) -> None:
        for ref, value in ((MOCK_CREDENTIAL, MOCK_CREDENTIAL_VALUE),
                           (MOCK_AWS_CREDENTIAL, MOCK_AWS_CREDENTIAL_VALUE)):
            path = self.secrets_dir / ref.name / ref.key
            if not path.is_file():
                path.parent.mkdir(mode=0o700, exist_ok=True)
                write_atomic(path, value, mode=0o600)

    @property
    def mock_aws_credentials(self) -> Path:
        return self.secrets_dir / MOCK_AWS_CREDENTIAL.name / MOCK_AWS_CREDENTIAL.key

