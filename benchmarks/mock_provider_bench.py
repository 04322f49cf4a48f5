"""Throughput of the mock provider (or of anything OpenAI-compatible, e.g. the local gateway).

Sends a fixed number of small requests over N keep-alive connections on loopback and prints
requests per second and latency percentiles. By default it starts a mock provider in a child
process (so client and server each get a core); `--url` benchmarks a server that is already
running instead. `--wrk SECONDS` also runs `wrk` (Debian package) against the same target for
a C client's view, since the Python client itself costs about as much CPU as the server.

    python benchmarks/mock_provider_bench.py --requests 50000 --connections 16
    python benchmarks/mock_provider_bench.py --endpoint embeddings --wrk 5
    python benchmarks/mock_provider_bench.py --url http://127.0.0.1:8080 --model chat
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]

_SERVER_CODE = """
import sys
from gatewayctl.local.mock_provider import MockProviderConfig, run_mock_provider
sys.exit(run_mock_provider("127.0.0.1", 0, MockProviderConfig(name="bench")))
"""


@dataclass(frozen=True)
class Result:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def build_request(endpoint: str, model: str, stream: bool, host: str) -> tuple[str, str, bytes]:
    """(method, path, body) of the benchmark request."""
    if endpoint == "models":
        return "GET", "/v1/models", b""
    body: dict[str, object]
    if endpoint == "chat":
        body = {"model": model, "messages": [{"role": "user", "content": "Say hello in one word"}]}
        path = "/v1/chat/completions"
    elif endpoint == "completions":
        body = {"model": model, "prompt": "Say hello in one word"}
        path = "/v1/completions"
    else:
        body = {"model": model, "input": "hello world"}
        path = "/v1/embeddings"
    if stream and endpoint != "embeddings":
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return "POST", path, json.dumps(body, separators=(",", ":")).encode()


def raw_request(method: str, path: str, body: bytes, host: str, key: str | None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"host: {host}", "content-type: application/json",
             f"content-length: {len(body)}"]
    if key:
        lines.append(f"authorization: Bearer {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        await reader.readuntil(b"\r\n0\r\n\r\n")
        return status
    start = lower.index(b"content-length:") + len(b"content-length:")
    length = int(lower[start:lower.index(b"\r\n", start)])
    await reader.readexactly(length)
    return status


async def _connection(host: str, port: int, payload: bytes, count: int,
                      latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    errors = 0
    try:
        for _ in range(count):
            started = time.perf_counter()
            writer.write(payload)
            if await _read_response(reader) >= 400:
                errors += 1
            latencies.append((time.perf_counter() - started) * 1000.0)
    finally:
        writer.close()
    return errors


async def run_load(host: str, port: int, payload: bytes, requests: int,
                   connections: int) -> Result:
    per_connection = [requests // connections + (1 if i < requests % connections else 0)
                      for i in range(connections)]
    latencies: list[float] = []
    await _connection(host, port, payload, 50, [])  # warm-up
    started = time.perf_counter()
    errors = await asyncio.gather(*(
        _connection(host, port, payload, n, latencies) for n in per_connection if n))
    return Result(requests, sum(errors), time.perf_counter() - started, latencies)


def run_wrk(url: str, method: str, path: str, body: bytes, key: str | None, seconds: int,
            connections: int) -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        return "wrk: not installed (apt-get install -y wrk)"
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    script = "\n".join([f"wrk.method = {json.dumps(method)}",
                        f"wrk.body = {json.dumps(body.decode())}",
                        *(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}"
                          for k, v in headers.items())])
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        completed = subprocess.run(
            [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "-s", handle.name, url + path],
            capture_output=True, text=True, timeout=seconds + 30, check=False)
    finally:
        os.unlink(handle.name)
    return completed.stdout + completed.stderr


def start_server() -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [
        str(ROOT), os.environ.get("PYTHONPATH", "")])))
    proc = subprocess.Popen([sys.executable, "-c", _SERVER_CODE], stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"mock provider did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[1].strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="benchmark this server instead of starting a mock")
    parser.add_argument("--requests", type=int, default=30000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--endpoint", choices=["chat", "completions", "embeddings", "models"],
                        default="chat")
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--key", help="sent as Authorization: Bearer KEY")
    parser.add_argument("--wrk", type=int, metavar="SECONDS", default=0,
                        help="also run wrk for this many seconds")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)

    proc = None
    url = args.url
    if url is None:
        proc, url = start_server()
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        method, path, body = build_request(args.endpoint, args.model, args.stream, host)
        payload = raw_request(method, path, body, f"{host}:{port}", args.key)
        result = asyncio.run(run_load(host, port, payload, args.requests, args.connections))
        summary = {
            "target": url + path, "requests": result.requests, "errors": result.errors,
            "connections": args.connections, "seconds": round(result.seconds, 3),
            "requests_per_second": round(result.rps), "p50_ms": round(result.percentile(0.5), 3),
            "p99_ms": round(result.percentile(0.99), 3),
        }
        if args.json:
            print(json.dumps(summary))
        else:
            print(f"{summary['target']}: {summary['requests']} requests over "
                  f"{args.connections} keep-alive connections in {summary['seconds']}s = "
                  f"{summary['requests_per_second']} req/s (p50 {summary['p50_ms']}ms, "
                  f"p99 {summary['p99_ms']}ms, errors {result.errors})")
        if args.wrk:
            print(run_wrk(url, method, path, body, args.key, args.wrk, args.connections))
        return 1 if result.errors else 0
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
