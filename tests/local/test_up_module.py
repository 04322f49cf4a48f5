"""`gatewayctl up` with `dataPlaneFilters: module`: the module is built (cached in the state
dir) and served by Envoy, whose auth filter is then the module's; without a C compiler the
gateway is served with the Lua filters and `up` says so."""

from __future__ import annotations

import http.client
import json
import os
import shutil
from pathlib import Path

import pytest

from gatewayctl.errors import GatewayctlError
from gatewayctl.ir import GatewayIR
from gatewayctl.local.module import LIBRARY, prepare_module
from gatewayctl.local.process import find_envoy, free_port
from tests.cli.helpers import gatewayctl
from tests.render import irs

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

HEAD = "apiVersion: gatewayctl.dev/v1alpha1\n"
KEY = "sk-local-search-app-key"
needs_compiler = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler"
)


def write_root(root: Path, listener: int) -> None:
    root.mkdir()
    closed = free_port()
    docs = [
        "kind: Gateway\nmetadata: {name: local}\nspec: {namespace: ai, "
        f"listener: {{port: {listener}}}, dataPlaneFilters: module, "
        "image: registry.example.com/gatewayctl-envoy:v1.40.0}\n",
        "kind: Provider\nmetadata: {name: openai}\n"
        f"spec: {{type: openai, endpoint: 'http://127.0.0.1:{closed}'}}\n",
        "kind: Model\nmetadata: {name: gpt}\nspec: {provider: openai, upstreamModel: gpt-4o}\n",
        "kind: Policy\nmetadata: {name: keys}\nspec: {auth: {apiKeys: true}}\n",
        "kind: Consumer\nmetadata: {name: search-app}\n"
        "spec: {team: search, apiKeySecretRef: {name: search-app-key, key: key}}\n",
        "kind: Route\nmetadata: {name: gpt}\n"
        "spec: {backends: [{model: gpt, weight: 100}], policies: [keys]}\n",
    ]
    (root / "gateway.yaml").write_text("---\n".join(HEAD + d for d in docs))
    (root / ".secrets" / "search-app-key").mkdir(parents=True)
    (root / ".secrets" / "search-app-key" / "key").write_text(KEY + "\n")


def post(port: int, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        body = json.dumps({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]})
        conn.request("POST", "/v1/chat/completions", body=body,
                     headers={"content-type": "application/json", **headers})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def auth_filter_type(admin: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)
    try:
        conn.request("GET", "/config_dump?resource=dynamic_listeners")
        dump = conn.getresponse().read().decode()
    finally:
        conn.close()
    return "module" if "DynamicModuleFilter" in dump else "lua"


def run_up(tmp_path: Path, env: dict[str, str]) -> tuple[str, str]:
    """up, two requests, down: (what up printed, the auth filter served)."""
    listener, admin = free_port(), free_port()
    write_root(tmp_path / "root", listener)
    env = {"GATEWAYCTL_STATE_DIR": str(tmp_path / "state"), **env}
    up = gatewayctl("up", str(tmp_path / "root"), "--admin-port", str(admin), env=env)
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        status, body = post(listener, {})
        assert status == 401 and body["error"]["code"] == "missing_api_key"  # type: ignore[index]
        status, _ = post(listener, {"authorization": f"Bearer {KEY}"})
        assert status == 200
        served = auth_filter_type(admin)
    finally:
        gatewayctl("down", env=env)
    return up.stdout + up.stderr, served


@needs_compiler
def test_up_builds_and_serves_the_module(tmp_path: Path) -> None:
    printed, served = run_up(tmp_path, {})
    assert served == "module"
    assert "no C compiler" not in printed
    builds = list((tmp_path / "state" / "modules").glob(f"*/{LIBRARY}"))
    assert len(builds) == 1
    assert (tmp_path / "state" / "envoy" / "module" / LIBRARY).read_bytes() == \
        builds[0].read_bytes()


def test_up_without_a_compiler_serves_the_lua_filters(tmp_path: Path) -> None:
    empty = tmp_path / "no-compiler"
    empty.mkdir()
    # PATH without cc/gcc, but with the Python and Envoy the gateway needs
    envoy_dir = str(Path(find_envoy()).parent)
    printed, served = run_up(tmp_path, {"PATH": f"{empty}{os.pathsep}{envoy_dir}", "CC": ""})
    assert served == "lua"
    assert ("dataPlaneFilters: module, but no C compiler (cc, gcc or $CC) was found: the "
            "gateway's filters run in Lua") in printed
    assert not (tmp_path / "state" / "modules").exists()


def _module_ir() -> GatewayIR:
    import dataclasses

    return dataclasses.replace(irs.build_ir(), data_plane_filters="module")


def test_prepare_module_falls_back_without_a_compiler(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CC", "")
    prepared = prepare_module(_module_ir(), tmp_path / "cache", tmp_path / "search", "envoy")
    assert prepared.ir.data_plane_filters == "lua"
    assert prepared.notice is not None and "no C compiler" in prepared.notice
    assert prepared.ir == irs.build_ir()  # exactly the Lua gateway


@needs_compiler
def test_prepare_module_refuses_an_envoy_of_another_abi(tmp_path: Path) -> None:
    fake = tmp_path / "envoy"
    fake.write_text("#!/bin/sh\necho 'envoy  version: abc/1.41.0/Clean/RELEASE/BoringSSL'\n")
    fake.chmod(0o755)
    with pytest.raises(GatewayctlError) as raised:
        prepare_module(_module_ir(), tmp_path / "cache", tmp_path / "search", str(fake))
    assert "Envoy 1.41.0 has no known module ABI (gatewayctl knows Envoy 1.40)" in str(
        raised.value)
    assert not (tmp_path / "search" / LIBRARY).exists()
