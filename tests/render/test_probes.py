"""Probes and the stats listener on a real Envoy, as kubelet and Prometheus reach them.

Readiness is the gateway listener answering GET /healthz/ready: a fresh Envoy whose listener
was rejected must not be ready (Envoy's own admin /ready says LIVE then, with nothing on the
listener's port). Liveness is the static stats listener. The stats listener serves
GET /stats/prometheus and the liveness path, nothing else of the admin API.
"""

from __future__ import annotations

import contextlib
import http.client
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from gatewayctl.ir import GatewayIR
from gatewayctl.render.envoy import ENVOY_ARGS, EnvoyOptions, render_envoy
from tests.render import irs
from tests.render.conftest import needs_envoy
from tests.render.harness import free_port, publish

pytestmark = [needs_envoy, pytest.mark.envoy]


def _status(port: int, path: str, method: str = "GET") -> int | None:
    """The HTTP status, or None when nothing answers (what kubelet counts as a failure)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        conn.close()


@contextlib.contextmanager
def _envoy(tmp_path: Path, ir: GatewayIR) -> Iterator[tuple[int, int, int]]:
    listener, admin, stats = free_port(), free_port(), free_port()
    options = EnvoyOptions(
        config_dir=str(tmp_path / "config"),
        secrets_dir=str(tmp_path / "secrets"),
        admin_port=admin,
        listener_address="127.0.0.1",
        listener_port=listener,
        stats_address="127.0.0.1",
        stats_port=stats,
        access_log_path=str(tmp_path / "access.log"),
    )
    bundle = render_envoy(ir, options)
    (tmp_path / "config").mkdir()
    publish(tmp_path / "config", bundle)
    (tmp_path / "bootstrap.yaml").write_text(bundle.files()["bootstrap.yaml"])
    log = (tmp_path / "envoy.log").open("wb")
    proc = subprocess.Popen(
        ["envoy", "-c", str(tmp_path / "bootstrap.yaml"), "--concurrency", "1",
         "--disable-hot-restart", *ENVOY_ARGS, "-l", "warning"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while _status(stats, "/healthz/live") != 200:
            assert proc.poll() is None, (tmp_path / "envoy.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the stats listener never answered"
            time.sleep(0.05)
        yield listener, admin, stats
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_ready_when_the_listener_serves_and_stats_listener_serves_only_stats(
    tmp_path: Path,
) -> None:
    with _envoy(tmp_path, irs.build_ir()) as (listener, admin, stats):
        deadline = time.monotonic() + 10
        while _status(listener, "/healthz/ready") != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert _status(stats, "/stats/prometheus") == 200
        for method, path in (
            ("GET", "/config_dump"),
            ("GET", "/ready"),
            ("POST", "/logging?level=debug"),
            ("POST", "/quitquitquit"),
            ("POST", "/stats/prometheus"),
            ("GET", "/stats"),
            ("GET", "/healthz/ready"),
        ):
            assert _status(stats, path, method) == 404, (method, path)
        # admin: loopback only, and still there for the preStop hook
        assert _status(admin, "/ready") == 200


def test_fresh_envoy_with_a_rejected_listener_is_not_ready(tmp_path: Path) -> None:
    """A deny pattern Envoy rejects (validate would have refused it) rejects the whole
    listener. Admin's /ready says LIVE all the same; the readiness probe must not."""
    ir = irs.build_ir()
    too_big = "a" * 20_000
    routes = tuple(
        replace(r, policy=replace(r.policy, deny_patterns=(too_big,))) if r.name == "guarded" else r
        for r in ir.routes
    )
    with _envoy(tmp_path, replace(ir, routes=routes)) as (listener, admin, stats):
        deadline = time.monotonic() + 5
        while True:  # until Envoy has read (and rejected) the listener file
            conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
            conn.request("GET", "/stats?filter=^listener_manager.lds.update_rejected$")
            text = conn.getresponse().read().decode()
            conn.close()
            if text.strip().endswith(": 1") or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert text.strip().endswith(": 1"), text
        assert _status(admin, "/ready") == 200  # what the old probe asked: LIVE
        assert _status(listener, "/healthz/ready") is None  # the probe now: not ready
        assert _status(stats, "/healthz/live") == 200  # alive: a restart would not help
