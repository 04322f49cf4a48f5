"""benchmarks/module_value.py measures the same work on both sides: the C driver and the Lua
steps produce bodies and guard texts of the same total length for the benchmark's request."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks.dataplane_gateway import request_body
from benchmarks.module_value import LUA_STEPS, build_driver
from gatewayctl.render.envoy.lua import module_source, to_lua
from gatewayctl.render.envoy.names import LUA_NAMES

luajit = pytest.importorskip("lupa.luajit21", reason="lupa with LuaJIT 2.1 (Envoy's Lua)")


@pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None,
                    reason="no C compiler")  # fmt: skip
def test_the_driver_and_the_lua_do_the_same_work(tmp_path: Path) -> None:
    body = request_body("bench-full", prompt_variables=False)
    (tmp_path / "body.json").write_bytes(body)
    driver = build_driver(tmp_path)
    done = subprocess.run([str(driver), str(tmp_path / "body.json"), "3"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    rt = luajit.LuaRuntime(encoding=None)
    run = rt.execute(
        "NAMES = " + to_lua(LUA_NAMES) + "\njsonstring = " + module_source("jsonstring.lua")
        + "\njson = " + module_source("json.lua") + "\ntexts = " + module_source("text.lua")
        + "\nredact = " + module_source("redact.lua") + "\n" + LUA_STEPS
    )  # fmt: skip
    expected = run(body, 3)
    assert expected > 3 * len(body)
    assert int(done.stdout) == expected
