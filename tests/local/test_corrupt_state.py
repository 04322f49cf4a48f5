"""A damaged state or analysis file says so, with its path and what to do; a missing one is
"nothing there". (Each of these once read a damaged file as missing.)"""

from __future__ import annotations

import json
import subprocess
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from gatewayctl.errors import GatewayctlError
from gatewayctl.local.admin import AdminClient
from gatewayctl.local.gateway import down, status
from gatewayctl.local.publish import ConfigDir
from gatewayctl.local.reload import running_state
from gatewayctl.local.state import CorruptStateFile, LocalState, ProcessRecord, StateDir
from gatewayctl.rollout.document import load_analysis, store_path
from tests.fakes.http import ServedHTTP

HINT = "run `gatewayctl down` (it stops what it can and clears the state), then " \
       "`gatewayctl up ROOT`"


@pytest.fixture
def state(tmp_path: Path) -> StateDir:
    state = StateDir(tmp_path / "state")
    state.ensure()
    return state


def test_missing_files_are_nothing_there(state: StateDir) -> None:
    assert state.read_state() is None
    assert state.read_pid("envoy") is None
    assert state.read_ir() is None
    assert ConfigDir(state.config_dir).read() is None


@pytest.mark.parametrize(("name", "text", "problem"), [
    ("state.json", "{\"root\": ", "Expecting value"),
    ("state.json", "[]", "not a JSON object"),
    ("state.json", json.dumps({"root": "/r"}), "missing 4 required positional arguments"),
    ("envoy.pid", "", "0 fields, not a PID and start ticks"),
    ("envoy.pid", "12x 5", "invalid literal for int()"),
    ("ir.json", "{}", "'name'"),
])
def test_a_damaged_record_is_corrupt_not_missing(state: StateDir, name: str, text: str,
                                                  problem: str) -> None:
    (state.path / name).write_text(text)
    read = {"state.json": state.read_state, "envoy.pid": lambda: state.read_pid("envoy"),
            "ir.json": state.read_ir}[name]

    with pytest.raises(CorruptStateFile) as err:
        read()

    assert err.value.message.startswith(f"{state.path / name} is corrupt (")
    assert problem in err.value.message
    assert err.value.hint == HINT


def test_a_record_that_cannot_be_read_is_corrupt(state: StateDir) -> None:
    state.state_file.mkdir()
    with pytest.raises(CorruptStateFile, match=r"state.json is corrupt \(Is a directory\)"):
        state.read_state()


def test_damaged_placeholder_list_is_not_taken_for_no_placeholders(state: StateDir,
                                                                  tmp_path: Path) -> None:
    (state.secrets_dir / ".placeholders.json").write_text('{"app/key": 1}')
    with pytest.raises(CorruptStateFile, match="placeholders.json is corrupt"):
        state.prepare_secrets(tmp_path / "root", [])


def test_published_config_damaged_or_half_missing(state: StateDir) -> None:
    config = ConfigDir(state.config_dir)
    config.publish({"lds": {"resources": []}, "cds": {"resources": []}})
    assert config.read() == {"lds": {"resources": []}, "cds": {"resources": []}}

    (state.config_dir / "cds.json").unlink()
    with pytest.raises(CorruptStateFile, match=r"cds.json is corrupt \(missing beside"):
        config.read()
    (state.config_dir / "cds.json").write_text("[1, 2]")
    with pytest.raises(CorruptStateFile, match=r"cds.json is corrupt \(not a JSON object\)"):
        config.read()


def test_status_says_the_state_is_corrupt(state: StateDir) -> None:
    state.state_file.write_text("not json")
    with pytest.raises(CorruptStateFile, match="state.json is corrupt"):
        status(state_dir=state.path)


def test_down_clears_a_corrupt_state_and_says_what_it_could_not_stop(state: StateDir) -> None:
    state.state_file.write_text("not json")
    state.pid_file("envoy").write_text("garbage")

    result = down(state_dir=state.path)

    assert result.was_running
    assert ("envoy", f"not stopped: {state.pid_file('envoy')} is corrupt, stop it by hand") \
        in result.stopped
    assert state.read_state() is None


class _NotEnvoy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = b"<html>hello</html>" if "listeners" in self.path else b""
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_an_admin_answer_that_is_not_json_is_an_error() -> None:
    with ServedHTTP(_NotEnvoy) as served:
        admin = AdminClient(served.port)
        assert admin.get_json("/config_dump?resource=dynamic_active_clusters") == {}
        with pytest.raises(GatewayctlError) as err:
            admin.config_dump()

    assert "answered with something that is not a JSON object" in err.value.message
    assert "b'<html>hello</html>'" in err.value.message
    assert err.value.hint and "gatewayctl status" in err.value.hint


def test_a_corrupt_analysis_is_not_no_analysis(tmp_path: Path) -> None:
    assert load_analysis(tmp_path, "chat-b") is None
    path = store_path(tmp_path, "chat-b")
    path.parent.mkdir(parents=True)
    path.write_text('{"version": "something else"}')

    with pytest.raises(GatewayctlError) as err:
        load_analysis(tmp_path, "chat-b")

    assert err.value.message == (f"the last analysis of Rollout chat-b, {path}, is corrupt "
                                 "(not a rollout analysis result)")
    assert err.value.hint == "delete it, or run `gatewayctl rollout analyze chat-b` to replace it"


def test_a_dead_gateway_names_its_root_in_the_hint(state: StateDir, tmp_path: Path) -> None:
    """The state knows the root the gateway served: the hint is a command to copy, not a
    placeholder (quoted for the shell when the path needs it)."""
    root = tmp_path / "my gateway"
    state.write_state(LocalState(root=str(root), listener_port=1, admin_port=2, mock_port=3,
                                 started_at=0.0))
    exited = subprocess.Popen(["true"])  # noqa: S603, S607
    exited.wait()
    state.write_pid("envoy", ProcessRecord(exited.pid, 1))

    with pytest.raises(GatewayctlError, match="no longer running") as err:
        running_state(state)

    assert err.value.hint == f"run `gatewayctl down`, then `gatewayctl up '{root}'`"
