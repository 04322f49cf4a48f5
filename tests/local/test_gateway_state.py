"""The local gateway's state directory, secrets, mock rule and example request (no Envoy)."""

from __future__ import annotations

import dataclasses
import os
import shlex
import stat
from pathlib import Path

import pytest

from gatewayctl.errors import GatewayctlError
from gatewayctl.ir import GatewayIR, SecretRefIR
from gatewayctl.local.rendering import choose_providers, example_curl, load_ir, secret_refs
from gatewayctl.local.state import SecretsReport, StateDir, default_state_dir

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_default_state_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GATEWAYCTL_STATE_DIR", str(tmp_path / "s"))
    assert default_state_dir() == tmp_path / "s"
    monkeypatch.delenv("GATEWAYCTL_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_state_dir() == tmp_path / "xdg" / "gatewayctl" / "local"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_state_dir() == tmp_path / "home" / ".local" / "state" / "gatewayctl" / "local"


def test_secrets_are_copied_or_generated_once(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / ".secrets" / "real").mkdir(parents=True)
    (root / ".secrets" / "real" / "key").write_text("from-the-repo\n")
    state = StateDir(tmp_path / "state")
    refs = [SecretRefIR("real", "key"), SecretRefIR("app", "key")]
    def value(ident: str) -> str:
        return (state.secrets_dir / ident).read_text().strip()

    first = state.prepare_secrets(root, refs)
    assert first.copied == ("real/key",) and first.generated == ("app/key",)
    assert value("real/key") == "from-the-repo"
    generated = value("app/key")
    assert generated.startswith("gwlocal-")
    assert first.is_real(SecretRefIR("real", "key"))
    assert not first.is_real(SecretRefIR("app", "key"))
    placeholder = state.secrets_dir / "app" / "key"
    assert stat.S_IMODE(os.stat(placeholder).st_mode) == 0o600
    # A second up keeps the generated key (printed curl commands stay valid) and refreshes
    # the copied one.
    (root / ".secrets" / "real" / "key").write_text("rotated")
    state.prepare_secrets(root, refs)
    assert value("app/key") == generated
    assert value("real/key") == "rotated"
    # A placeholder is replaced once a real file appears.
    (root / ".secrets" / "app").mkdir()
    (root / ".secrets" / "app" / "key").write_text("real-app-key")
    third = state.prepare_secrets(root, refs)
    assert third.copied == ("app/key", "real/key") and value("app/key") == "real-app-key"


def multi_team() -> GatewayIR:
    return load_ir(EXAMPLES / "multi-team")


def test_mock_rule_needs_a_real_credential_and_a_reachable_endpoint() -> None:
    ir = multi_team()
    creds = {p.name: p.credential for p in ir.providers}
    openai = creds["openai"]
    assert openai is not None
    real_openai = SecretsReport(copied=(f"{openai.name}/{openai.key}",))
    everything_up = {p.name: True for p in ir.providers}

    choice = choose_providers(ir, SecretsReport(), known=everything_up)
    reasons = dict(choice.reasons)
    assert reasons["openai"] == f"no credential in .secrets/{openai.name}/{openai.key}"
    # a provider without a credential is used as is when it can be reached
    no_cred = [p.name for p in ir.providers if p.credential is None]
    assert set(no_cred) <= set(choice.real)

    choice = choose_providers(ir, real_openai, known=everything_up)
    assert "openai" in choice.real
    choice = choose_providers(ir, real_openai, known={**everything_up, "openai": False})
    assert dict(choice.reasons)["openai"].endswith("is not reachable")
    choice = choose_providers(ir, real_openai, known=everything_up, mock_all=True)
    assert choice.real == () and len(choice.mocked) == len(ir.providers)


def test_unknown_endpoints_are_probed_within_a_bound() -> None:
    ir = load_ir(EXAMPLES / "quickstart")
    provider = dataclasses.replace(ir.providers[0], credential=None, host="127.0.0.1", port=1)
    choice = choose_providers(dataclasses.replace(ir, providers=(provider,)), SecretsReport())
    assert choice.mocked == ("openai",)
    assert dict(choice.reasons)["openai"] == "127.0.0.1:1 is not reachable"


def test_example_curl_reads_the_consumer_key_from_its_file_never_prints_it(
    tmp_path: Path
) -> None:
    ir = multi_team()
    state = StateDir(tmp_path / "state")
    for secret in ("search-app-key", "helpdesk-key"):
        (tmp_path / ".secrets" / secret).mkdir(parents=True)
        (tmp_path / ".secrets" / secret / "key").write_text(f"sk-real-{secret}-1234\n")
    state.prepare_secrets(tmp_path, secret_refs(ir))
    route = next(r for r in ir.routes if r.policy.api_keys)
    ir = dataclasses.replace(ir, routes=(route,))

    curl = example_curl(ir, 8080, state.secrets_dir)

    assert "sk-real-" not in curl
    key_file = state.secrets_dir / "helpdesk-key" / "key"  # the first consumer allowed
    assert f'-H "authorization: Bearer $(cat {key_file})"' in curl
    args = shlex.split(curl)  # what a shell makes of it, before running the substitution
    assert args[:3] == ["curl", "-sS", "http://127.0.0.1:8080/v1/chat/completions"]
    assert f'"model":"{route.public_model}"' in args[-1]
    plain = example_curl(load_ir(EXAMPLES / "quickstart"), 9000, state.secrets_dir)
    assert "authorization" not in plain and "-d" in plain


def test_a_second_command_waits_for_the_lock_then_fails_clearly(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "s")
    with state.lock(), pytest.raises(GatewayctlError) as err, StateDir(tmp_path / "s").lock(0.3):
        pass
    assert err.value.message.startswith("another gatewayctl command is changing the local gateway")
    with state.lock(0.3):  # released again
        pass
