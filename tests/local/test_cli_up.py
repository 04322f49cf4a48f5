"""The README's first command: `gatewayctl up examples/quickstart`, a request, `down`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from gatewayctl.local.process import free_port
from tests.conftest import REPO


def gatewayctl(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gatewayctl", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )


def test_up_serves_quickstart_then_down(tmp_path: Path) -> None:
    env = {**os.environ, "GATEWAYCTL_STATE_DIR": str(tmp_path / "state")}
    port = free_port(frozenset())
    admin = free_port(frozenset({port}))
    proc = gatewayctl(
        "up", "examples/quickstart", "--port", str(port), "--admin-port", str(admin), env=env
    )
    try:
        assert proc.returncode == 0, proc.stderr
        assert f"local gateway serving {REPO / 'examples' / 'quickstart'}" in proc.stdout
        assert f"curl -sS http://127.0.0.1:{port}/v1/chat/completions" in proc.stdout
        body = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            data=body.encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            reply = json.loads(resp.read())
            assert resp.headers["x-gateway-route"] == "chat"
            assert resp.headers["x-gateway-model"] in ("gpt-4o-2024-08-06", "gpt-4o-2024-11-20")
        assert reply["choices"][0]["message"]["content"].endswith("] hi")
        status = gatewayctl("status", env=env)
        assert status.returncode == 0 and "route chat:" in status.stdout
    finally:
        down = gatewayctl("down", env=env)
    assert down.returncode == 0
    assert down.stdout == "local gateway stopped (envoy stopped, mock stopped)\n"
    again = gatewayctl("down", env=env)
    assert again.stdout == "no local gateway is running\n"
