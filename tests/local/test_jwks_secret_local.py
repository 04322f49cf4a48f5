"""A JWKS given as a Secret (`jwks.secretRef`) on the local gateway: the file must be in
`<root>/.secrets/`. `up` makes up placeholders for API keys, but a placeholder JWKS is no JSON
and Envoy refused the whole configuration naming an internal provider ('j0'); `plan --live
local` even showed the change as fine. Now `up`, `plan` and `apply` refuse it with the
manifest field's file:line and a hint, and nothing starts or changes."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from gatewayctl.local.process import free_port
from tests.conftest import REPO

QUICKSTART = REPO / "examples" / "quickstart"
JWT_POLICY = """\
  policies: [jwt]
---
apiVersion: gatewayctl.dev/v1alpha1
kind: Policy
metadata: {name: jwt}
spec:
  auth:
    jwt:
      - issuer: https://login.example.com/
        jwks: {secretRef: {name: idp-jwks, key: jwks.json}}
---
apiVersion: gatewayctl.dev/v1alpha1
kind: Consumer
metadata: {name: alice}
spec: {team: apps}
"""


def jwt_root(path: Path) -> Path:
    shutil.copytree(QUICKSTART, path)
    with (path / "models.yaml").open("a", encoding="utf-8") as f:
        f.write(JWT_POLICY)
    return path


def secret_ref_position(root: Path) -> str:
    lines = (root / "models.yaml").read_text(encoding="utf-8").splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "secretRef" in text)
    return f"models.yaml:{line}:{lines[line - 1].index('{name') + 1}"


def public_jwks() -> str:
    numbers = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pub = numbers.public_numbers()

    def b64(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(
            b"=").decode()

    return json.dumps({"keys": [{"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
                                 "n": b64(pub.n), "e": b64(pub.e)}]})


def gatewayctl(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GATEWAYCTL_STATE_DIR": str(state), "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "gatewayctl", *args], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=120)


def ports() -> list[str]:
    listener = free_port(frozenset())
    return ["--port", str(listener), "--admin-port", str(free_port(frozenset({listener})))]


def test_up_refuses_a_missing_jwks_file_naming_the_field(tmp_path: Path) -> None:
    root = jwt_root(tmp_path / "root")
    state = tmp_path / "state"
    proc = gatewayctl("up", str(root), *ports(), state=state)
    assert proc.returncode == 1, proc.stderr
    assert (f"error: {secret_ref_position(root)}: Policy/jwt spec.auth.jwt[0].jwks.secretRef: "
            f"the JWKS file .secrets/idp-jwks/jwks.json does not exist in {root}\n"
            "  hint: put the public keys of https://login.example.com/ there as a JWKS "
            "document") in proc.stderr
    assert "Traceback" not in proc.stderr and "j0" not in proc.stderr
    assert not (state / "envoy.pid").exists() and not (state / "mock.pid").exists()
    assert gatewayctl("status", state=state).returncode == 1


@pytest.mark.parametrize("content, reason", [
    ("gwlocal-0123", "not JSON (Expecting value: line 1 column 1 (char 0))"),
    ('{"keys": []}', 'no "keys" list, or an empty one'),
])
def test_up_refuses_a_jwks_file_that_is_no_jwks(tmp_path: Path, content: str,
                                                 reason: str) -> None:
    root = jwt_root(tmp_path / "root")
    (root / ".secrets" / "idp-jwks").mkdir(parents=True)
    (root / ".secrets" / "idp-jwks" / "jwks.json").write_text(content, encoding="utf-8")
    proc = gatewayctl("up", str(root), *ports(), state=tmp_path / "state")
    assert proc.returncode == 1, proc.stderr
    assert (f"error: {secret_ref_position(root)}: Policy/jwt spec.auth.jwt[0].jwks.secretRef: "
            f".secrets/idp-jwks/jwks.json is not a JWKS document: {reason}\n") in proc.stderr
    assert content not in proc.stderr  # what the file holds is never shown


@pytest.mark.envoy
@pytest.mark.slow
def test_plan_and_apply_live_local_refuse_it_and_take_it_once_the_file_is_there(
        tmp_path: Path) -> None:
    root = jwt_root(tmp_path / "root")
    state = tmp_path / "state"
    up = gatewayctl("up", str(QUICKSTART), *ports(), state=state)
    assert up.returncode == 0, up.stderr
    try:
        before = (state / "ir.json").read_bytes()
        where = f"error: {secret_ref_position(root)}: Policy/jwt spec.auth.jwt[0].jwks.secretRef"
        for args in (["plan", str(root), "--live", "local"],
                     ["apply", str(root), "--live", "local", "--auto-approve"]):
            proc = gatewayctl(*args, state=state)
            assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
            assert where in proc.stderr and "does not exist" in proc.stderr, proc.stderr
            assert (state / "ir.json").read_bytes() == before
        (root / ".secrets" / "idp-jwks").mkdir(parents=True)
        (root / ".secrets" / "idp-jwks" / "jwks.json").write_text(public_jwks(),
                                                                  encoding="utf-8")
        proc = gatewayctl("apply", str(root), "--live", "local", "--auto-approve", state=state)
        assert proc.returncode == 0, proc.stderr
        assert "applied to the local gateway" in proc.stdout
        assert gatewayctl("status", state=state).returncode == 0
    finally:
        gatewayctl("down", state=state)
