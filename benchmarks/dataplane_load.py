"""Load generation with wrk: one bounded run against one target, parsed into a Measurement.

wrk (Debian package `wrk`) is a C load generator with a coordinated-omission-free fixed
connection model: C keep-alive connections, each sending its next request as soon as the
previous response ends. A Lua script sets the POST body and headers and, in `done()`,
prints the run's numbers as one JSON line (latency percentiles in microseconds, error counts
by kind), so nothing is scraped from wrk's human-readable output.

Errors: `non2xx` is wrk's `errors.status` (responses with status >= 400; the targets send no
3xx), `socket` the sum of connect, read, write errors and timeouts. A valid run has both at 0.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.dataplane_procs import cpu_seconds, system_busy_seconds

WRK_TIMEOUT_S = 10
_MARK = "WRK_JSON "

_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,'
    .. '"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"mean":%.1f,"max":%d}\\n',
    MARK, summary.requests, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max))
end
"""


@dataclass(frozen=True)
class Measurement:
    target: str
    concurrency: int
    repeat: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    mean_ms: float
    non2xx: int
    socket_errors: int
    proxy_cpu_s: float  # CPU of the proxy's processes during the run (0 for direct)
    upstream_cpu_s: float
    wrk_cpu_s: float
    other_cpu_s: float  # CPU used by everything else on the machine during the run

    @property
    def proxy_us_per_request(self) -> float:
        return self.proxy_cpu_s / self.requests * 1e6 if self.requests else 0.0

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "proxy_us_per_request": round(self.proxy_us_per_request, 1)}


def lua_literal(text: str) -> str:
    """A Lua string literal for any text: every byte outside printable ASCII, `"`, `\\` escaped."""
    out = []
    for b in text.encode():
        out.append(chr(b) if 0x20 <= b < 0x7F and b not in (0x22, 0x5C) else f"\\{b:03d}")
    return '"' + "".join(out) + '"'


def write_script(path: Path, body: bytes, headers: Mapping[str, str]) -> Path:
    lines = ['wrk.method = "POST"', f"wrk.body = {lua_literal(body.decode())}"]
    lines += [f"wrk.headers[{lua_literal(k)}] = {lua_literal(v)}" for k, v in headers.items()]
    lines.append(f"MARK = {lua_literal(_MARK)}")
    path.write_text("\n".join(lines) + "\n" + _DONE)
    return path


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    return path


def wrk_version() -> str:
    out = subprocess.run([wrk_binary(), "-v"], capture_output=True, text=True, check=False)
    return (out.stdout + out.stderr).strip().splitlines()[0]


def run_wrk(
    url: str,
    script: Path,
    concurrency: int,
    seconds: float,
    cpus: frozenset[int] | None,
) -> dict[str, float]:
    """One bounded wrk run: the numbers its done() printed."""
    argv = [
        wrk_binary(),
        "-t",
        "1",
        "-c",
        str(concurrency),
        "-d",
        f"{seconds:g}s",
        "--timeout",
        f"{WRK_TIMEOUT_S}s",
        "-s",
        str(script),
        url,
    ]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,  # noqa: PLW1509
    )
    try:
        out, err = proc.communicate(timeout=seconds + WRK_TIMEOUT_S + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"wrk did not finish: {' '.join(argv)}") from None
    for line in out.decode().splitlines():
        if line.startswith(_MARK):
            numbers: dict[str, float] = json.loads(line[len(_MARK) :])
            return numbers
    raise RuntimeError(f"wrk printed no result ({proc.returncode}): {err.decode()[-2000:]}")


def measure(
    target: str,
    url: str,
    script: Path,
    concurrency: int,
    seconds: float,
    repeat: int,
    client_cpus: frozenset[int] | None,
    proxy_pids: Sequence[int],
    upstream_pids: Sequence[int],
) -> Measurement:
    proxy0, up0, busy0 = cpu_seconds(proxy_pids), cpu_seconds(upstream_pids), system_busy_seconds()
    wrk_before = _children_cpu()
    numbers = run_wrk(url, script, concurrency, seconds, client_cpus)
    wrk_cpu = _children_cpu() - wrk_before
    proxy = cpu_seconds(proxy_pids) - proxy0
    upstream = cpu_seconds(upstream_pids) - up0
    busy = system_busy_seconds() - busy0
    secs = numbers["duration_us"] / 1e6
    requests = int(numbers["requests"])
    return Measurement(
        target=target,
        concurrency=concurrency,
        repeat=repeat,
        requests=requests,
        seconds=round(secs, 3),
        rps=round(requests / secs, 1) if secs else 0.0,
        p50_ms=numbers["p50"] / 1000,
        p90_ms=numbers["p90"] / 1000,
        p99_ms=numbers["p99"] / 1000,
        p999_ms=numbers["p999"] / 1000,
        mean_ms=round(numbers["mean"] / 1000, 4),
        non2xx=int(numbers["status"]),
        socket_errors=int(
            numbers["connect"] + numbers["read"] + numbers["write"] + numbers["timeout"]
        ),
        proxy_cpu_s=round(proxy, 3),
        upstream_cpu_s=round(upstream, 3),
        wrk_cpu_s=round(wrk_cpu, 3),
        other_cpu_s=round(max(0.0, busy - proxy - upstream - wrk_cpu), 3),
    )


def _children_cpu() -> float:
    """CPU of this process's waited-for children (wrk runs are the only ones waited for here)."""
    usage = os.times()
    return usage.children_user + usage.children_system
