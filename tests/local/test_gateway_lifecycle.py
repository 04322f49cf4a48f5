"""`up`, `status`, `down` of the local gateway on examples/quickstart, with a real Envoy."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayctl.errors import GatewayctlError
from gatewayctl.local.gateway import down, status, up
from gatewayctl.local.process import free_port, is_alive
from gatewayctl.local.state import ProcessRecord, StateDir
from tests.local.shell import shell_argv

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "state"
    monkeypatch.setenv("GATEWAYCTL_STATE_DIR", str(path))
    yield path
    down()  # never leave a gateway behind, whatever the test did


def port_free(port: int) -> bool:
    """Nothing listens there: a server could bind it (SO_REUSEADDR, as servers do: the
    admin connections Envoy closed leave TIME_WAIT entries that do not block a listener)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def run_curl(curl: str) -> tuple[int, dict[str, object], dict[str, str]]:
    """Send the request the printed curl command describes, as a shell expands it (no curl
    binary needed)."""
    args = shell_argv(curl)
    url = next(a for a in args if a.startswith("http://"))
    headers = dict(args[i + 1].split(": ", 1) for i, a in enumerate(args) if a == "-H")
    body = args[args.index("-d") + 1].encode()
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        return resp.status, json.loads(resp.read()), dict(resp.headers.items())


def test_up_status_down_on_quickstart(state_dir: Path) -> None:
    listener, admin = free_port(), free_port()
    progress: list[str] = []
    result = up(QUICKSTART, listener_port=listener, admin_port=admin,
                on_progress=progress.append)
    assert result.ports.listener == listener and result.ports.admin == admin
    assert result.models == ("chat",)
    assert [p for p, _ in result.mocked] == ["openai"]
    assert "no credential in .secrets/openai-credentials/api-key" in result.mocked[0][1]
    assert result.curl.startswith(f"curl -sS http://127.0.0.1:{listener}/v1/chat/completions")
    assert result.summary().splitlines()[0].startswith(
        f"local gateway serving {QUICKSTART} on http://127.0.0.1:{listener} (ready in ")
    assert any(m.startswith("envoy ready in ") for m in progress)

    code, body, headers = run_curl(result.curl)
    assert code == 200
    assert body["model"] in ("gpt-4o-2024-08-06", "gpt-4o-2024-11-20")
    assert headers.get("x-gateway-route") == "chat"

    st = status()
    assert st.running and st.envoy_pid == result.envoy_pid and st.mock_pid == result.mock_pid
    assert st.root == str(QUICKSTART) and st.config_version == result.config_version
    assert st.served is not None and [r.name for r in st.served.routes]
    assert not st.problems, st.problems
    assert f"on http://127.0.0.1:{listener}" in st.summary()

    state = StateDir(state_dir)
    assert (state.path / "envoy.pid").is_file() and state.read_ir() is not None
    assert stat.S_IMODE(os.stat(state.secrets_dir).st_mode) == 0o700

    with pytest.raises(GatewayctlError, match="already running"):
        up(QUICKSTART, listener_port=free_port(), admin_port=free_port())

    gone = down()
    assert gone.was_running and dict(gone.stopped) == {"envoy": "stopped", "mock": "stopped"}
    assert gone.summary() == "local gateway stopped (envoy stopped, mock stopped)"
    assert not is_alive(ProcessRecord(result.envoy_pid, None))
    assert not is_alive(ProcessRecord(result.mock_pid, None))
    assert port_free(listener) and port_free(admin) and port_free(result.ports.mock)
    assert not status().running
    assert down().summary() == "no local gateway is running"


def test_up_refuses_a_taken_port(state_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(GatewayctlError) as err:
            up(QUICKSTART, listener_port=port, admin_port=free_port())
    assert err.value.message.startswith(f"port {port} (listener) on 127.0.0.1 is not available")
    assert err.value.hint is not None and "choose another listener port" in err.value.hint
    assert not status().running
    assert StateDir(state_dir).read_pid("envoy") is None


def test_up_reports_envoy_exiting_early_with_its_log(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An Envoy that validates configs but dies on start-up, as a crashing build would.
    from gatewayctl.local.process import find_envoy

    real = find_envoy()
    fake = tmp_path / "envoy"
    fake.write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" --mode validate "*) exec {shlex.quote(real)} "$@";; esac\n'
        'echo "[critical] main: simulated start-up crash: cannot allocate memory" >&2\n'
        "exit 3\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("GATEWAYCTL_ENVOY", str(fake))
    listener = free_port()
    with pytest.raises(GatewayctlError) as err:
        up(QUICKSTART, listener_port=listener, admin_port=free_port())
    assert err.value.message.startswith("Envoy exited during start-up with exit code 3")
    assert "simulated start-up crash: cannot allocate memory" in err.value.message
    assert not status().running
    assert StateDir(state_dir).read_pid("mock") is None  # the mock was stopped again
    assert port_free(listener)


def test_up_reports_manifest_errors(state_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "gw.yaml").write_text("apiVersion: gatewayctl.dev/v1alpha1\nkind: Gateway\n")
    with pytest.raises(GatewayctlError) as err:
        up(bad, listener_port=free_port(), admin_port=free_port())
    assert "manifest error" in err.value.message
    assert err.value.hint == f"run `gatewayctl validate {bad}` for details"
    assert sys.modules.get("gatewayctl.local.gateway") is not None


def test_up_in_the_foreground_stops_everything_on_sigterm(state_dir: Path) -> None:
    code = ("import sys; from pathlib import Path; from gatewayctl.local.gateway import up; "
            "up(Path(sys.argv[1]), listener_port=int(sys.argv[2]), admin_port=int(sys.argv[3]), "
            "detach=False, on_progress=print)")
    listener, admin = free_port(), free_port()
    fg = subprocess.Popen([sys.executable, "-c", code, str(QUICKSTART), str(listener), str(admin)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while not status().running and time.monotonic() < deadline and fg.poll() is None:
            time.sleep(0.1)
        st = status()
        if not st.running:
            fg.kill()
            pytest.fail(f"the foreground gateway did not come up:\n{fg.communicate()[0]}")
        assert st.envoy_pid is not None
        fg.send_signal(signal.SIGTERM)
        out, _ = fg.communicate(timeout=30)
    finally:
        if fg.poll() is None:
            fg.kill()
            fg.communicate()
    assert fg.returncode == 0, out
    assert "stopping the local gateway" in out
    assert not is_alive(ProcessRecord(st.envoy_pid, None))
    assert not status().running and port_free(listener)


def test_a_reachable_provider_without_credential_is_used_directly(
    state_dir: Path, tmp_path: Path
) -> None:
    from gatewayctl.local.mock_provider import MockProviderConfig, start_mock_provider

    with start_mock_provider(config=MockProviderConfig(name="local-llm")) as llm:
        root = tmp_path / "root"
        root.mkdir()
        (root / "gateway.yaml").write_text(
            (QUICKSTART / "gateway.yaml").read_text()
            .replace("type: openai\n", "type: openai-compatible\n")
            .replace("https://api.openai.com", llm.url)
            .replace("  auth: {secretRef: {name: openai-credentials, key: api-key}}\n", ""))
        (root / "models.yaml").write_text((QUICKSTART / "models.yaml").read_text())
        result = up(root, listener_port=free_port(), admin_port=free_port())
        assert result.mocked == () and result.real == ("openai",)
        assert "provider openai: its real endpoint" in result.summary()
        code, body, _ = run_curl(result.curl)
        assert code == 200 and str(body["model"]).startswith("gpt-4o-")
        assert [r["path"] for r in llm.requests()] == ["/v1/chat/completions"]
        down()
