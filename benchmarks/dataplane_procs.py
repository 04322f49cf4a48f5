"""Processes of the data-plane benchmark: start pinned, wait until ready, account CPU, stop.

Every server listens on 127.0.0.1 only and runs in its own session (process group), so stop()
ends exactly the processes this module started (LiteLLM's workers included) and nothing else.
CPU time is read from /proc (utime + stime of the process tree), so the benchmark can report
CPU per request of each proxy, which the upstream's speed does not cap.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cpus: frozenset[int] | None) -> Callable[[], None] | None:
    """A preexec_fn that pins the child (and so everything it starts) to cpus."""
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def process_tree(pid: int) -> list[int]:
    tree, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(tree.get(p, []))
    return out


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of the given processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])
    return total / _TICK


def system_busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine since boot (all cores)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / _TICK


def wait_quiet(max_busy: float, timeout_s: float) -> float:
    """Wait (bounded) until the machine is nearly idle; returns the last busy fraction."""
    deadline = time.monotonic() + timeout_s
    busy = 1.0
    while time.monotonic() < deadline:
        before, t0 = system_busy_seconds(), time.monotonic()
        time.sleep(1.0)
        busy = (system_busy_seconds() - before) / ((time.monotonic() - t0) * (os.cpu_count() or 1))
        if busy <= max_busy:
            break
    return busy


@dataclass
class Service:
    """One running server: where to send requests and how to find its processes."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    admin_port: int = 0  # Envoy's admin listener; 0 when there is none
    pids: list[int] = field(default_factory=list)

    def refresh_pids(self) -> None:
        self.pids = process_tree(self.proc.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.pids)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def spawn(
    name: str,
    argv: Sequence[str],
    log: Path,
    port: int,
    cpus: frozenset[int] | None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Service:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=pinned(cpus),  # noqa: PLW1509 - only sched_setaffinity, before exec
            start_new_session=True,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
    return Service(name, port, proc, log)


def http_call(
    port: int, method: str, path: str, body: bytes | None, headers: Mapping[str, str]
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=dict(headers))
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def wait_ready(
    service: Service,
    probe: Callable[[], bool],
    timeout_s: float,
) -> None:
    """Poll probe() until true; raise with the log tail if the process dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        if service.proc.poll() is not None:
            raise RuntimeError(
                f"{service.name} exited with {service.proc.returncode}:\n{service.log_tail()}"
            )
        with contextlib.suppress(OSError, http.client.HTTPException):
            if probe():
                service.refresh_pids()
                return
        if time.monotonic() > deadline:
            service.stop()
            raise RuntimeError(
                f"{service.name} not ready within {timeout_s:.0f}s:\n{service.log_tail()}"
            )
        time.sleep(0.2)


def check_completion(
    port: int, path: str, body: bytes, headers: Mapping[str, str]
) -> dict[str, str]:
    """Send one request; it must be a 200 chat completion (or, to the mock's Anthropic API, a
    message) with usage. Returns the headers."""
    status, hdrs, data = http_call(port, "POST", path, body, headers)
    if status != 200:
        raise RuntimeError(f"status {status} from 127.0.0.1:{port}{path}: {data[:500]!r}")
    reply = json.loads(data)
    if "usage" not in reply or not (reply.get("choices") or reply.get("content")):
        raise RuntimeError(f"not a chat completion from 127.0.0.1:{port}: {data[:500]!r}")
    return hdrs
