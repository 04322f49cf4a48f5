"""What output guardrails add to the rendered gateway, and that a gateway without them gets
none of it (no module in the body filter, no data, no counter)."""

from __future__ import annotations

import json

from gatewayctl.render.envoy import EnvoyOptions, render_envoy
from gatewayctl.render.envoy.listener import gateway_lua_data
from tests.outguard.conftest import build_ir
from tests.render import irs


def _listener_text(ir: object) -> str:
    return json.dumps(render_envoy(ir, EnvoyOptions()).lds)  # type: ignore[arg-type]


def test_gateway_without_output_guardrails_renders_none_of_it() -> None:
    ir = irs.build_ir()
    text = _listener_text(ir)
    assert "local outguard =" not in text and "output_guardrail.hits" not in text
    data = gateway_lua_data(ir, EnvoyOptions())
    assert "outguards" not in data
    assert not any("outguard" in p for p in data["policies"].values())


def test_gateway_with_output_guardrails_binds_the_module_data_and_counter() -> None:
    ir = build_ir()
    text = _listener_text(ir)
    assert text.count("local outguard =") == 1  # the body filter only
    assert "output_guardrail.hits" in text
    data = gateway_lua_data(ir, EnvoyOptions())
    # og-block, og-anthropic and og-cache share one automaton; og-log, og-bounds and
    # og-bounds-log are other entries
    assert sorted(data["outguards"]) == ["o0", "o1", "o2", "o3"]
    assert {e["block"] for e in data["outguards"].values()} == {True, False}
