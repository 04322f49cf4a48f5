"""The local gateway as a newcomer meets it, through the CLI: the Gateway's own port, every
busy port in one error, `logs`, `status` exit codes; and no real credential in what `up`
prints or in what the mock provider receives when it stands in for a provider."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayctl.local.process import free_port
from gatewayctl.local.state import MOCK_CREDENTIAL_VALUE, StateDir
from tests.cli.helpers import QUICKSTART, gatewayctl
from tests.local.shell import shell_argv

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

PROVIDER_KEY = "sk-proj-REALPROVIDERKEY0123456789abcdef"
CONSUMER_KEY = "sk-REALCONSUMERKEY0123456789abcdef"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {"GATEWAYCTL_STATE_DIR": str(tmp_path / "state")}
    yield env
    gatewayctl("down", env=env)  # never leave a gateway behind


def closed_port() -> int:
    """A port nothing listens on (a provider that cannot be reached)."""
    return free_port()


def root_with_real_keys(tmp_path: Path, listener: int) -> Path:
    """The quickstart with a key-protected route, real keys in .secrets/, and a provider
    endpoint that cannot be reached: the mock stands in for it."""
    root = tmp_path / "root"
    shutil.copytree(QUICKSTART, root)
    gateway = (root / "gateway.yaml").read_text()
    gateway = gateway.replace("listener: {port: 8080}", f"listener: {{port: {listener}}}")
    gateway = gateway.replace("https://api.openai.com", f"http://127.0.0.1:{closed_port()}")
    (root / "gateway.yaml").write_text(gateway)
    models = (root / "models.yaml").read_text()
    assert models.count("\n  backends:\n") == 1
    (root / "models.yaml").write_text(models.replace(
        "\n  backends:\n", "\n  policies: [keys]\n  backends:\n"))
    (root / "access.yaml").write_text(
        "apiVersion: gatewayctl.dev/v1alpha1\nkind: Policy\nmetadata: {name: keys}\n"
        "spec: {auth: {apiKeys: true}}\n---\n"
        "apiVersion: gatewayctl.dev/v1alpha1\nkind: Consumer\nmetadata: {name: app}\n"
        "spec: {team: t, apiKeySecretRef: {name: app-key, key: key}}\n")
    for secret, key, value in (("openai-credentials", "api-key", PROVIDER_KEY),
                               ("app-key", "key", CONSUMER_KEY)):
        (root / ".secrets" / secret).mkdir(parents=True)
        (root / ".secrets" / secret / key).write_text(value + "\n")
    assert gatewayctl("validate", str(root)).returncode == 0
    return root


def post(argv: list[str]) -> tuple[int, dict[str, object]]:
    url = next(a for a in argv if a.startswith("http://"))
    headers = dict(argv[i + 1].split(": ", 1) for i, a in enumerate(argv) if a == "-H")
    req = urllib.request.Request(url, data=argv[argv.index("-d") + 1].encode(),
                                 headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
        return resp.status, json.loads(resp.read())


def test_up_prints_no_key_and_the_mock_never_gets_the_real_provider_key(
    tmp_path: Path, env: dict[str, str]
) -> None:
    listener = free_port()
    root = root_with_real_keys(tmp_path, listener)

    up = gatewayctl("up", str(root), "--admin-port", str(free_port()), env=env)

    assert up.returncode == 0, up.stderr
    assert "provider openai: local mock at" in up.stdout and "is not reachable" in up.stdout
    assert CONSUMER_KEY not in up.stdout + up.stderr
    assert PROVIDER_KEY not in up.stdout + up.stderr
    curl = up.stdout.split("try:\n", 1)[1].splitlines()[0].strip()
    assert "$(cat " in curl
    status, body = post(shell_argv(curl))  # the printed command works as pasted
    assert status == 200 and str(body["model"]).startswith("gpt-4o-")

    state = json.loads((tmp_path / "state" / "state.json").read_text())
    with urllib.request.urlopen(f"http://127.0.0.1:{state['mock_port']}/_mock/requests",
                                timeout=5) as resp:  # noqa: S310
        seen = resp.read().decode()
    requests = json.loads(seen)["requests"]
    assert [r["path"] for r in requests] == ["/v1/chat/completions"]
    assert requests[0]["headers"]["authorization"] == f"Bearer {MOCK_CREDENTIAL_VALUE}"
    assert PROVIDER_KEY not in seen and CONSUMER_KEY not in seen
    outputs = [gatewayctl(*args, env=env) for args in (("status",), ("logs", "--tail", "all"),
                                                       ("logs", "access", "--tail", "all"))]
    logs = "".join(p.read_text() for p in (tmp_path / "state" / "logs").iterdir())
    for text in [o.stdout + o.stderr for o in outputs] + [logs]:
        assert PROVIDER_KEY not in text and CONSUMER_KEY not in text


def test_up_listens_on_the_gateways_own_port(tmp_path: Path, env: dict[str, str]) -> None:
    listener = free_port()
    root = tmp_path / "root"
    shutil.copytree(QUICKSTART, root)
    gateway = root / "gateway.yaml"
    gateway.write_text(gateway.read_text().replace("listener: {port: 8080}",
                                                   f"listener: {{port: {listener}}}"))

    up = gatewayctl("up", str(root), "--admin-port", str(free_port()), env=env)

    assert up.returncode == 0, up.stderr
    assert up.stdout.startswith(f"local gateway serving {root} on http://127.0.0.1:{listener} ")
    with socket.create_connection(("127.0.0.1", listener), timeout=5):
        pass


def test_up_names_every_busy_port_at_once(tmp_path: Path, env: dict[str, str]) -> None:
    socks = []
    try:
        for _ in range(3):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            socks.append(sock)
        listener, admin, mock = (s.getsockname()[1] for s in socks)

        up = gatewayctl("up", str(QUICKSTART), "--port", str(listener), "--admin-port",
                        str(admin), "--mock-port", str(mock), env=env)
    finally:
        for sock in socks:
            sock.close()

    assert up.returncode == 1
    assert up.stderr.splitlines()[1] == (
        f"error: 3 ports on 127.0.0.1 are not available: {listener} (listener): Address "
        f"already in use; {admin} (admin): Address already in use; {mock} (mock provider): "
        "Address already in use")
    assert "--port, --admin-port, --mock-port" in up.stderr
    assert not (tmp_path / "state" / "envoy.pid").exists()


def test_status_exit_codes_and_logs(tmp_path: Path, env: dict[str, str]) -> None:
    assert gatewayctl("status", env=env).returncode == 1  # nothing runs
    none = gatewayctl("logs", env=env)
    assert none.returncode == 1 and none.stderr.startswith("error: no local gateway logs in ")
    up = gatewayctl("up", str(QUICKSTART), "--port", str(free_port()), "--admin-port",
                    str(free_port()), env=env)
    assert up.returncode == 0, up.stderr
    assert gatewayctl("status", env=env).returncode == 0

    both = gatewayctl("logs", env=env)
    two = gatewayctl("logs", "envoy", "--tail", "2", env=env)
    bad = gatewayctl("logs", "nginx", env=env)

    assert both.returncode == 0
    assert any(line.startswith("envoy | ") for line in both.stdout.splitlines())
    assert any(line.startswith("mock  | ") for line in both.stdout.splitlines())
    assert two.returncode == 0 and len(two.stdout.splitlines()) == 2
    assert "|" not in two.stdout.split(" ", 1)[0]  # one source: no prefix
    assert (bad.returncode, bad.stderr.splitlines()[0]) == (1, 'error: unknown log "nginx"')

    follow = subprocess.Popen(
        [sys.executable, "-m", "gatewayctl", "logs", "-f", "--tail", "0", "envoy"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **env})
    try:
        time.sleep(1.0)
        envoy_pid = StateDir(tmp_path / "state").read_pid("envoy")
        assert envoy_pid is not None
        os.kill(envoy_pid.pid, signal.SIGKILL)  # the gateway dies
        out, _ = follow.communicate(timeout=30)  # following ends with it
    finally:
        follow.kill()
    assert follow.returncode == 0

    died = gatewayctl("status", env=env)
    assert died.returncode == 1
    assert died.stdout.startswith("no local gateway is running\nthe last local gateway died")
    del out
