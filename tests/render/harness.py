"""Run a rendered gateway for real: Envoy on free localhost ports, mock providers, secrets."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from gatewayctl.ir import GatewayIR
from gatewayctl.local.mock_provider import (
    MockProviderConfig,
    MockProviderHandle,
    start_mock_provider,
)
from gatewayctl.render.envoy import ENVOY_ARGS, EnvoyBundle, EnvoyOptions, render_envoy
from gatewayctl.render.envoy import options as envoy_options
from gatewayctl.render.envoy.dynamic_module import SEARCH_PATH_ENV
from tests.fakes.http import ServedHTTP

START_TIMEOUT_S = 20.0


# Ports handed out lately: the kernel may give a port back as soon as its probe socket is
# closed, so two calls before anything listens (an Envoy's listener and admin port) could get
# the same one. Remembering the last few hundred makes every call in a test run distinct.
_RECENT_PORTS: collections.deque[int] = collections.deque(maxlen=512)


def free_port() -> int:
    """A port nothing listens on now, distinct from the last 512 this process handed out."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _RECENT_PORTS:
            _RECENT_PORTS.append(port)
            return port
    raise RuntimeError("no free port on 127.0.0.1 distinct from the recent ones")


def envoy_binary() -> str | None:
    return shutil.which("envoy")


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["envoy", "--mode", "validate", "-c", str(path), "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=module_env(),
    )


FILTERS = ("lua", "module")  # GatewayIR.data_plane_filters: tests parametrised over both


@functools.cache
def module_dir() -> Path | None:
    """gatewayctl's compiled module, built once per test session (None without a compiler)."""
    from gatewayctl.local.module import build_module, find_compiler

    if find_compiler() is None:
        return None
    cache = Path(tempfile.mkdtemp(prefix="gatewayctl-module-"))
    return build_module(cache).parent


def module_env() -> dict[str, str] | None:
    """Envoy's environment with the module's search path (None: no compiler here)."""
    folder = module_dir()
    return None if folder is None else {**os.environ, SEARCH_PATH_ENV: str(folder)}


def require_filters(filters: str) -> None:
    """Skip a module test where no compiler can build it (the fallback itself is tested in
    tests/local/test_module.py)."""
    if filters == "module" and module_dir() is None:
        import pytest

        pytest.skip("no C compiler to build the module")


def with_filters(ir: GatewayIR, filters: str) -> GatewayIR:
    """The IR served with `filters` ("lua" or "module")."""
    require_filters(filters)
    return dataclasses.replace(ir, data_plane_filters=filters)  # type: ignore[arg-type]


def loopback_options(workdir: Path, secrets_dir: Path, **more: Any) -> EnvoyOptions:
    """A test gateway's options: the product's loopback options on free ports, its config
    folder and access log in `workdir` unless `more` says otherwise; `more` sets the rest."""
    where = {"config_dir": str(workdir / "config"), "access_log_path": str(workdir / "access.log")}
    return envoy_options.loopback_options(
        admin_port=free_port(), listener_port=free_port(), secrets_dir=str(secrets_dir),
        **(where | more),
    )


def write_secrets(root: Path, secrets: Mapping[tuple[str, str], str]) -> None:
    for (name, key), value in secrets.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / key).write_text(value + "\n")


@contextlib.contextmanager
def running_mocks(configs: Mapping[str, MockProviderConfig]
                  ) -> Iterator[dict[str, MockProviderHandle]]:
    """One mock provider per config, by the same names; all stopped on exit (also when a
    later one fails to start)."""
    mocks: dict[str, MockProviderHandle] = {}
    try:
        for name, config in configs.items():
            mocks[name] = start_mock_provider(config=config)
        yield mocks
    finally:
        for mock in mocks.values():
            mock.stop()


@contextlib.contextmanager
def serving_gateway(workdir: Path, ir: GatewayIR, secrets: Mapping[tuple[str, str], str],
                    provider_overrides: Mapping[str, str], **options: Any
                    ) -> Iterator[tuple[RunningEnvoy, EnvoyOptions]]:
    """A real Envoy serving `ir`, rendered with the test loopback options in `workdir`
    (`options` set more of them): `secrets` written to `workdir/secrets`, each provider of
    `provider_overrides` sent to its URL (a mock), the access log in `workdir`. Stopped on
    exit."""
    write_secrets(workdir / "secrets", secrets)
    opts = loopback_options(workdir, workdir / "secrets",
                            provider_overrides=dict(provider_overrides), **options)
    envoy = start_envoy(workdir / "envoy", render_envoy(ir, opts),
                        listener_port=opts.listener_port, admin_port=opts.admin_port,
                        access_log=workdir / "access.log")
    try:
        yield envoy, opts
    finally:
        envoy.stop()


def publish(config_dir: Path, bundle: EnvoyBundle) -> None:
    """Replace cds.json, then rds.json and lds.json, each atomically (clusters before the
    routes that need them)."""
    files = bundle.files()
    for name in ("cds.json", "rds.json", "lds.json"):
        tmp = config_dir / f".{name}.tmp"
        tmp.write_text(files[name])
        os.replace(tmp, config_dir / name)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RunningEnvoy:
    proc: subprocess.Popen[bytes]
    workdir: Path
    listener_port: int
    admin_port: int
    access_log: Path
    _conn: http.client.HTTPConnection | None = field(default=None, repr=False)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        *,
        keep_alive: bool = False,
        raw: bytes | None = None,
    ) -> Response:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        hdrs = {"content-type": "application/json", **(headers or {})}
        conn = self._conn if keep_alive else None
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.listener_port, timeout=30)
            if keep_alive:
                self._conn = conn
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            out = Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        except (OSError, http.client.HTTPException):
            self._conn = None
            conn.close()
            raise
        if not keep_alive:
            conn.close()
        return out

    def chat(
        self,
        model: str,
        text: str = "hello",
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> Response:
        body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
        return self.request("POST", "/v1/chat/completions", body, headers)

    def admin(self, path: str) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=10)
        try:
            conn.request("GET", path)
            return conn.getresponse().read().decode()
        finally:
            conn.close()

    def stat(self, name: str) -> int:
        for line in self.admin(f"/stats?filter=^{name}$").splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
        raise KeyError(name)

    def access_log_lines(self, expected: int = 1, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """The access log's JSON lines, once at least `expected` are there (bounded wait)."""
        deadline = time.monotonic() + timeout_s
        while True:
            lines = []
            if self.access_log.exists():
                # only whole lines: Envoy may be writing the last one
                whole = self.access_log.read_text().split("\n")[:-1]
                lines = [json.loads(x) for x in whole if x]
            if len(lines) >= expected or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def access_log_for(self, request_ids: set[str],
                       timeout_s: float = 10.0) -> list[dict[str, Any]]:
        """The access log's lines once every one of request_ids has its line (bounded wait);
        a count of lines would not do: the harness's own requests are logged too."""
        deadline = time.monotonic() + timeout_s
        while True:
            lines = self.access_log_lines(expected=0, timeout_s=0)
            if request_ids <= {line.get("request_id") for line in lines}:
                return lines
            if time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def log_text(self) -> str:
        path = self.workdir / "envoy.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_envoy(
    workdir: Path,
    bundle: EnvoyBundle,
    *,
    listener_port: int,
    admin_port: int,
    access_log: Path,
    dynamic: bool = True,
    concurrency: int = 2,
    publish_config: bool = True,
) -> RunningEnvoy:
    """`publish_config=False`: the watched directory is already filled (by the Kubernetes
    config unpacker in tests/k8s)."""
    workdir.mkdir(parents=True, exist_ok=True)
    files = bundle.files()
    if dynamic:
        config_dir = Path(
            bundle.bootstrap["dynamic_resources"]["lds_config"]["path_config_source"][
                "watched_directory"
            ]["path"]
        )
        config_dir.mkdir(parents=True, exist_ok=True)
        if publish_config:
            publish(config_dir, bundle)
        config = workdir / "bootstrap.yaml"
        config.write_text(files["bootstrap.yaml"])
    else:
        config = workdir / "validate.yaml"
        config.write_text(files["validate.yaml"])
    log = open(workdir / "envoy.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [
            "envoy",
            "-c",
            str(config),
            "--concurrency",
            str(concurrency),
            "--disable-hot-restart",
            *ENVOY_ARGS,
            "--file-flush-interval-msec",
            "50",
            "-l",
            "warning",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
        env=module_env(),
    )
    log.close()
    running = RunningEnvoy(proc, workdir, listener_port, admin_port, access_log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"envoy exited with {proc.returncode}:\n{running.log_text()}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if running.request("GET", "/v1/models").status == 200:
                return running
        if time.monotonic() > deadline:
            running.stop()
            raise RuntimeError(
                f"envoy did not serve within {START_TIMEOUT_S}s:\n{running.log_text()}"
            )
        time.sleep(0.05)


@contextlib.contextmanager
def running_envoy(*args: Any, **kwargs: Any) -> Iterator[RunningEnvoy]:
    env = start_envoy(*args, **kwargs)
    try:
        yield env
    finally:
        env.stop()


@contextlib.contextmanager
def irs_gateway(tmp_path: Path, ir: GatewayIR, mock_url: str, concurrency: int = 2,
                without_filter: str | None = None,
                keys: Mapping[str, str] | None = None,
                edit_filters: Callable[[list[dict[str, Any]]], None] | None = None,
                providers: Mapping[str, str] | None = None,
                ) -> Iterator[RunningEnvoy]:
    """A gateway of the test IRs (tests/render/irs.py) served by Envoy in tmp_path, its openai
    provider at mock_url (and the providers in `providers` at theirs), its secrets written
    (consumer key files `<consumer>-key/key` holding `keys`, irs.CONSUMER_KEYS by default); the
    differential tests serve it both ways.
    without_filter: an HTTP filter taken out of the rendered listener; edit_filters: called
    with the listener's HTTP filters (a copy) to change them in place."""
    from gatewayctl.render.envoy import render_envoy
    from tests.render import irs

    secrets = tmp_path / "secrets"
    consumer_keys = irs.CONSUMER_KEYS if keys is None else keys
    write_secrets(secrets, {("openai-credentials", "api-key"): irs.OPENAI_KEY,
                            ("anthropic-credentials", "api-key"): irs.ANTHROPIC_KEY,
                            **{(f"{n}-key", "key"): k for n, k in consumer_keys.items()}})
    options = loopback_options(tmp_path, secrets,
                               provider_overrides={"openai": mock_url, **(providers or {})})
    bundle = render_envoy(ir, options)
    if without_filter is not None:
        lds = json.loads(json.dumps(bundle.lds))
        hcm = lds["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        kept = [f for f in hcm["http_filters"] if f["name"] != without_filter]
        assert len(kept) < len(hcm["http_filters"]), without_filter
        hcm["http_filters"] = kept
        bundle = dataclasses.replace(bundle, lds=lds)
    if edit_filters is not None:
        lds = json.loads(json.dumps(bundle.lds))
        edit_filters(lds["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"][
            "http_filters"])
        bundle = dataclasses.replace(bundle, lds=lds)
    with running_envoy(tmp_path / "envoy", bundle,
                       listener_port=options.listener_port, admin_port=options.admin_port,
                       access_log=tmp_path / "access.log", concurrency=concurrency) as envoy:
        yield envoy


def raw_exchange(port: int, writes: Iterable[bytes], *, timeout: float = 20.0,
                 half_close: bool = False) -> bytes:
    """Write `writes` on one connection while reading what comes back, and return it: Envoy
    may answer (a 413, a 401) and stop reading before a request is whole, so the writes stop
    at the first that fails and the answer is still read. `half_close`: shut the writing
    side after the last write. Consuming `writes` lazily lets a caller count what was sent."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    received = bytearray()

    def read() -> None:
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                received.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    with contextlib.suppress(OSError):
        for data in writes:
            sock.sendall(data)
    if half_close:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
    reader.join(timeout=timeout)
    sock.close()
    return bytes(received)


class _RejectingHandler(BaseHTTPRequestHandler):
    """A provider that rejects every request with 401 and, as some providers do, echoes the
    credential it was sent in the error body and a header."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("content-length") or 0))
        presented = self.headers.get("authorization", "")
        body = json.dumps(
            {
                "error": {
                    "message": f"Incorrect API key provided: {presented}",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            }
        ).encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("www-authenticate", f'Bearer realm="{presented}"')
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


def start_rejecting_upstream() -> ServedHTTP:
    return ServedHTTP(_RejectingHandler)
