"""The compiled-filter prototype of benchmarks/dataplane_module.py, built from source and loaded
in a real Envoy 1.40: the ABI facts its header states hold for this build (the version string
matches, the callbacks resolve) and its `model` filter does what the benchmark counts it for."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.dataplane_module import SEARCH_PATH, build_module, module_filter
from benchmarks.dataplane_procs import free_port

pytestmark = [
    pytest.mark.skipif(shutil.which("envoy") is None, reason="envoy not installed"),
    pytest.mark.skipif(
        shutil.which("gcc") is None and shutil.which("cc") is None, reason="no C compiler"
    ),
]

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def bootstrap(port: int, admin: int, filter_name: str) -> dict[str, object]:
    """The module's filter, then routes that show what it set: a request with x-gw-model is
    answered 200 with the header's value and the gw.model metadata in response headers, one
    without it 404."""
    echo = [
        {"header": {"key": "x-seen-model", "value": "%REQ(x-gw-model)%"}},
        {"header": {"key": "x-seen-metadata", "value": "%DYNAMIC_METADATA(gw:model)%"}},
    ]
    routes = [
        {
            "match": {"prefix": "/", "headers": [{"name": "x-gw-model", "present_match": True}]},
            "direct_response": {"status": 200},
            "response_headers_to_add": echo,
        },
        {"match": {"prefix": "/"}, "direct_response": {"status": 404}},
    ]
    hcm = {
        "@type": HCM + "HttpConnectionManager",
        "stat_prefix": "module",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
        "http_filters": [
            module_filter(filter_name),
            {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}},
        ],
    }
    address = {"socket_address": {"address": "127.0.0.1", "port_value": port}}
    listener = {
        "name": "module",
        "address": address,
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager",
                          "typed_config": hcm}]}
        ],
    }  # fmt: skip
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"listeners": [listener]},
    }


class Envoy:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    def post(
        self, body: bytes | list[bytes], path: str = "/v1/chat/completions"
    ) -> tuple[int, str | None, str | None]:
        """(status, x-seen-model, x-seen-metadata); a list is sent as chunks."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            if isinstance(body, list):
                conn.request("POST", path, body=iter(body), encode_chunked=True)
            else:
                conn.request("POST", path, body=body)
            resp = conn.getresponse()
            resp.read()
            return resp.status, resp.getheader("x-seen-model"), resp.getheader("x-seen-metadata")
        finally:
            conn.close()


@contextlib.contextmanager
def envoy_with_module(
    tmp_path: Path, filter_name: str, abi_version: str | None = None
) -> Iterator[Envoy]:
    library = build_module(tmp_path / "lib", abi_version=abi_version)
    port, admin = free_port(), free_port()
    config = tmp_path / "bootstrap.json"
    config.write_text(json.dumps(bootstrap(port, admin, filter_name)))
    log = tmp_path / "envoy.log"
    env = {**os.environ, SEARCH_PATH: str(library.parent)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["envoy", "-c", str(config), "--concurrency", "1", "--disable-hot-restart",
             "-l", "info"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
        )  # fmt: skip
    envoy = Envoy(proc, port, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"envoy exited {proc.returncode}:\n{log.read_text()}")
            with contextlib.suppress(OSError):
                envoy.post(b"{}")
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"envoy did not serve:\n{log.read_text()}")
            time.sleep(0.05)
        yield envoy
    finally:
        proc.terminate()
        proc.wait(30)


def test_model_filter_routes_on_the_top_level_model(tmp_path: Path) -> None:
    with envoy_with_module(tmp_path, "model") as envoy:
        body = b'{"messages":[{"role":"user","model":"nested"}],"model":"gpt-4o","n":1}'
        assert envoy.post(body) == (200, "gpt-4o", "gpt-4o")
        # the body in several chunks: buffered, then scanned whole
        assert envoy.post([b'{"a":[1,{"b":"}\\"{"}],', b' "model" :', b' "m-2" }']) == (
            200,
            "m-2",
            "m-2",
        )
        assert envoy.post(b'{"model":"a","model":"b"}')[:2] == (200, "b")  # the last one
        # no top-level string `model`: the request passes unchanged, so no route matches
        for body in (
            b'{"x":{"model":"gpt-4o"}}',
            b'{"model":7}',
            b'{"model":"g\\u0070t"}',
            b'["model","gpt-4o"]',
            b'{"model":"gpt-4o"',
            b"not json",
            b"",
        ):
            assert envoy.post(body)[0] == 404, body
        log = envoy.log.read_text()
    assert "Dynamic module ABI version v0.2.0 matched." in log


def test_noop_filter_passes_everything(tmp_path: Path) -> None:
    with envoy_with_module(tmp_path, "noop") as envoy:
        assert envoy.post(b'{"model":"gpt-4o"}')[0] == 404


def test_envoy_only_warns_on_another_abi_version(tmp_path: Path) -> None:
    """Envoy 1.40 loads a module reporting another ABI version and logs a warning: nothing
    stops a module built for another Envoy, whose ABI may differ, from loading."""
    with envoy_with_module(tmp_path, "model", abi_version="v0.1.0") as envoy:
        assert envoy.post(b'{"model":"gpt-4o"}')[0] == 200
        log = envoy.log.read_text()
    assert "Dynamic module ABI version v0.1.0 is deprecated" in log


def test_an_unknown_filter_name_is_refused(tmp_path: Path) -> None:
    library = build_module(tmp_path / "lib")
    config = tmp_path / "bootstrap.json"
    config.write_text(json.dumps(bootstrap(free_port(), free_port(), "other")))
    done = subprocess.run(
        ["envoy", "--mode", "validate", "-c", str(config), "-l", "error"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, SEARCH_PATH: str(library.parent)},
    )  # fmt: skip
    assert done.returncode != 0
    assert "Failed to initialize dynamic module" in done.stdout + done.stderr
