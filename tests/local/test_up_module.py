"""`gatewayctl up` with `dataPlaneFilters: module`, and with the default `auto`: the module is
built (cached in the state dir) and served by Envoy, whose auth filter is then the module's;
without a C compiler the gateway is served with the Lua filters and `up` says so. Under `auto`
a module that cannot be built or does not fit the Envoy is the Lua filters too (a notice),
under `module` an error."""

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


MODULE = "dataPlaneFilters: module, image: registry.example.com/gatewayctl-envoy:v1.40.0"
DEFAULT = ""  # dataPlaneFilters auto and the stock image: what a Gateway gets by default


def write_root(root: Path, listener: int, gateway: str = MODULE) -> None:
    root.mkdir()
    closed = free_port()
    docs = [
        "kind: Gateway\nmetadata: {name: local}\nspec: {namespace: ai, "
        f"listener: {{port: {listener}}}" + (f", {gateway}" if gateway else "") + "}\n",
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


def run_up(tmp_path: Path, env: dict[str, str], gateway: str = MODULE) -> tuple[str, str]:
    """up, two requests, down: (what up printed, the auth filter served)."""
    listener, admin = free_port(), free_port()
    write_root(tmp_path / "root", listener, gateway)
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


@needs_compiler
def test_up_with_the_default_builds_and_serves_the_module(tmp_path: Path) -> None:
    printed, served = run_up(tmp_path, {}, DEFAULT)
    assert served == "module"
    assert "  filters: compiled (gatewayctl's Envoy dynamic module)\n" in printed
    assert "dataPlaneFilters" not in printed  # no notice: the module serves
    assert len(list((tmp_path / "state" / "modules").glob(f"*/{LIBRARY}"))) == 1
    assert (tmp_path / "state" / "envoy" / "module" / LIBRARY).is_file()


def _without_compiler(tmp_path: Path) -> dict[str, str]:
    """PATH without cc/gcc (and no $CC), but with the Python and Envoy the gateway needs."""
    empty = tmp_path / "no-compiler"
    empty.mkdir()
    envoy_dir = str(Path(find_envoy()).parent)
    return {"PATH": f"{empty}{os.pathsep}{envoy_dir}", "CC": ""}


def test_up_without_a_compiler_serves_the_lua_filters(tmp_path: Path) -> None:
    printed, served = run_up(tmp_path, _without_compiler(tmp_path))
    assert served == "lua"
    assert ("dataPlaneFilters: module, but no C compiler (cc, gcc or $CC) was found: the "
            "gateway's filters run in Lua") in printed
    assert not (tmp_path / "state" / "modules").exists()


def test_up_with_the_default_and_no_compiler_serves_lua_with_one_notice(tmp_path: Path) -> None:
    printed, served = run_up(tmp_path, _without_compiler(tmp_path), DEFAULT)
    assert served == "lua"
    assert "  filters: Lua\n" in printed
    notice = [line for line in printed.splitlines() if "dataPlaneFilters" in line]
    assert notice == ["dataPlaneFilters: auto: no C compiler (cc, gcc or $CC) was found, so the "
                      "gateway's filters run in Lua (install gcc for the compiled ones)"]
    assert "warning" not in printed.lower() and "error" not in printed.lower()
    assert not (tmp_path / "state" / "modules").exists()


def _module_ir(filters: str = "module") -> GatewayIR:
    import dataclasses

    return dataclasses.replace(irs.build_ir(), data_plane_filters=filters)


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


def test_prepare_module_under_auto_without_a_compiler(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CC", "")
    prepared = prepare_module(_module_ir("auto"), tmp_path / "cache", tmp_path / "search",
                              "envoy")
    assert prepared.ir == irs.build_ir()  # exactly the Lua gateway
    assert prepared.notice is not None and prepared.notice.startswith(
        "dataPlaneFilters: auto: no C compiler")


@needs_compiler
def test_prepare_module_under_auto_with_an_envoy_of_another_abi(tmp_path: Path) -> None:
    fake = tmp_path / "envoy"
    fake.write_text("#!/bin/sh\necho 'envoy  version: abc/1.41.0/Clean/RELEASE/BoringSSL'\n")
    fake.chmod(0o755)
    prepared = prepare_module(_module_ir("auto"), tmp_path / "cache", tmp_path / "search",
                              str(fake))
    assert prepared.ir == irs.build_ir()
    assert prepared.notice is not None and "\n" not in prepared.notice
    assert prepared.notice.startswith("dataPlaneFilters: auto: cannot use the module ")
    assert "Envoy 1.41.0 has no known module ABI" in prepared.notice
    assert prepared.notice.endswith("; the gateway's filters run in Lua")
    assert not (tmp_path / "search" / LIBRARY).exists()


def test_prepare_module_under_auto_when_the_compiler_fails(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    failing = tmp_path / "bin" / "cc"
    failing.parent.mkdir()
    failing.write_text("#!/bin/sh\necho 'cc: internal compiler error' >&2\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setenv("CC", str(failing))
    prepared = prepare_module(_module_ir("auto"), tmp_path / "cache", tmp_path / "search",
                              find_envoy())
    assert prepared.ir == irs.build_ir()
    assert prepared.notice == ("dataPlaneFilters: auto: the C compiler failed to build "
                               "gatewayctl's module; the gateway's filters run in Lua")
    with pytest.raises(GatewayctlError, match="the C compiler failed"):  # module: an error
        prepare_module(_module_ir(), tmp_path / "cache", tmp_path / "search", find_envoy())


@needs_compiler
def test_prepare_module_under_auto_serves_the_module(tmp_path: Path) -> None:
    prepared = prepare_module(_module_ir("auto"), tmp_path / "cache", tmp_path / "search",
                              find_envoy())
    assert prepared.ir == _module_ir("module") and prepared.notice is None
    assert (tmp_path / "search" / LIBRARY).is_file()
