"""The module's config parser and header handling under a seeded random harness
(tests/render/module/fuzz_module.c), built with the module's sources and
-fsanitize=address,undefined: mutated configs are accepted or refused, random requests are
answered or passed, and no input reads or writes out of bounds, leaks or hits undefined
behaviour (any sanitizer report fails the run)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

from gatewayctl.ir import GatewayIR, JwtProviderIR
from gatewayctl.render.envoy import render_envoy
from gatewayctl.render.envoy.body import BUFFER_HEADROOM_BYTES, auth_lua_data
from gatewayctl.render.envoy.dynamic_module import SOURCES, source_files
from gatewayctl.render.envoy.names import AUTH_FILTER, BODY_MODULE_FILTER, LIMITS_MODULE_FILTER
from tests.render import irs, sanitized
from tests.render.harness import loopback_options

HARNESS = Path(__file__).resolve().parent / "module" / "fuzz_module.c"
SEEDS = (1, 2, 3, 4)
ITERATIONS = 1500

pytestmark = pytest.mark.skipif(
    sanitized.compiler() is None, reason="no C compiler"
)


def _with_jwt(ir: GatewayIR) -> GatewayIR:
    """The test gateway with two token issuers: `keys` takes API keys or issuer j0's tokens
    (consumer in `sub`), `chat` issuer j1's (consumer in `azp`)."""
    def jwt(issuer: str, claim: str) -> JwtProviderIR:
        return JwtProviderIR(issuer=issuer, audiences=("gw",), consumer_claim=claim,
                             clock_skew_s=60, jwks_inline='{"keys":[]}')

    routes = []
    for route in ir.routes:
        if route.name in ("keys", "chat"):
            provider = jwt("https://a.test/", "sub") if route.name == "keys" else \
                jwt("https://b.test/", "azp")
            route = dataclasses.replace(
                route, policy=dataclasses.replace(route.policy, jwt=(provider,)))
        routes.append(route)
    return dataclasses.replace(ir, routes=tuple(routes))


def _config(tmp_path: Path, classes: bool = False) -> bytes:
    """The rendered module config of the test gateway (with token issuers), its key files
    holding KEY-ONE (search-app) and KEY-TWO (helpdesk, here allowed no route: the 403
    path). `classes`: with the body classes instead of `buffer_headroom`, as on a module
    gateway that keeps the buffer filter (no module body filter)."""
    ir = dataclasses.replace(_with_jwt(irs.build_ir()), data_plane_filters="module")
    secrets = tmp_path / "secrets"
    options = loopback_options(tmp_path, secrets)
    lds = json.loads(render_envoy(ir, options).files()["lds.json"])
    hcm = lds["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    flt = next(f for f in hcm["http_filters"] if f["name"] == AUTH_FILTER)
    data = json.loads(flt["typed_config"]["filter_config"]["value"])
    for consumer, key in (("search-app", "KEY-ONE"), ("helpdesk", "KEY-TWO")):
        entry = next(c for c in data["consumers"] if c["name"] == consumer)
        Path(entry["file"]).parent.mkdir(parents=True, exist_ok=True)
        Path(entry["file"]).write_text(key + "\n")
    del data["consumer_caps"]["helpdesk"]
    assert [p["name"] for p in data["jwt"]["providers"]] == ["j0", "j1"]
    assert data.pop("buffer_headroom") > 0 and data["body_classes"] == {}
    if classes:
        data["body_classes"] = auth_lua_data(ir)["body_classes"]
        assert data["body_classes"]
    else:
        data["buffer_headroom"] = BUFFER_HEADROOM_BYTES
    return json.dumps(data, separators=(",", ":")).encode()


def _body_config(tmp_path: Path) -> bytes:
    """The rendered config of the module's body filter for the test gateway, its provider
    credential file written."""
    ir = dataclasses.replace(irs.build_ir(), data_plane_filters="module")
    options = loopback_options(tmp_path, tmp_path / "secrets")
    lds = json.loads(render_envoy(ir, options).files()["lds.json"])
    hcm = lds["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    flt = next(f for f in hcm["http_filters"] if f["name"] == BODY_MODULE_FILTER)
    data = json.loads(flt["typed_config"]["filter_config"]["value"])
    credential = Path(data["providers"]["openai"]["credential"]["file"])
    credential.parent.mkdir(parents=True, exist_ok=True)
    credential.write_text("sk-provider\n")
    return json.dumps(data, separators=(",", ":")).encode()


def _build(tmp_path: Path, replaced: dict[str, bytes] | None = None) -> Path:
    """The harness with the module's sources (some replaced), the product's warnings and
    hardening flags, and the sanitizers."""
    return sanitized.build(tmp_path, HARNESS, SOURCES, "fuzz_module", replaced)


def _run(binary: Path, config: Path, iterations: int, *filter_name: str) -> dict[str, int]:
    """The harness on every seed: its counts summed; any sanitizer report fails."""
    env = sanitized.ENV
    totals: dict[str, int] = {}
    for seed in SEEDS:
        done = subprocess.run([str(binary), str(config), str(seed), str(iterations), *filter_name],
                              capture_output=True, text=True, timeout=600, env=env, check=False)
        assert done.returncode == 0, done.stdout + done.stderr[-4000:]
        assert "runtime error" not in done.stderr and "Sanitizer" not in done.stderr, done.stderr
        for line in done.stdout.splitlines():
            name, value = line.split()
            totals[name] = totals.get(name, 0) + int(value)
    return totals


def test_random_configs_and_requests_under_sanitizers(tmp_path: Path) -> None:
    binary = _build(tmp_path)
    totals: dict[str, int] = {}
    # the stream's bound set by the filter (no buffer filter), and the body classes
    for classes in (False, True):
        config = tmp_path / f"config-{classes}.json"
        config.write_bytes(_config(tmp_path, classes))
        for name, value in _run(binary, config, ITERATIONS // 2).items():
            totals[name] = totals.get(name, 0) + value
    # both sides of the parser and every reply were exercised
    assert totals["accepted"] > 100 and totals["refused"] > 100, totals
    for name in ("replies_401", "replies_403", "replies_413", "header_sets", "route_clears",
                 "buffer_limits", "token_consumers", "token_replies", "numbers"):
        assert totals[name] > 0, (name, totals)


def test_the_body_filter_under_sanitizers(tmp_path: Path) -> None:
    """The body filter's config reader, request path (decoding, routing, access, prompts,
    guard text, redaction, the rebuilt or re-encoded body, token debt) and response path
    (usage of replies and streams, the 502 replacement) on random input."""
    binary = _build(tmp_path)
    config = tmp_path / "body.json"
    config.write_bytes(_body_config(tmp_path))
    totals = _run(binary, config, ITERATIONS // 3, "body")
    assert totals["accepted"] > 50 and totals["refused"] > 50, totals
    for name in ("replies_400", "replies_401", "replies_403", "replies_404", "replies_413",
                 "header_sets", "route_clears", "metadata_sets", "bodies_replaced"):
        assert totals[name] > 0, (name, totals)


def _limits_config(tmp_path: Path) -> bytes:
    """The rendered config of the module's `limits` filter for the test gateway with two
    limited routes the Lua body filter serves (a native Anthropic provider): the limits it
    reads from the Lua's headers."""
    from tests.render.test_module_limits_differential import _claude_ir

    ir = dataclasses.replace(_claude_ir(), data_plane_filters="module")
    options = loopback_options(tmp_path, tmp_path / "secrets")
    lds = json.loads(render_envoy(ir, options).files()["lds.json"])
    hcm = lds["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    flt = next(f for f in hcm["http_filters"] if f["name"] == LIMITS_MODULE_FILTER)
    data = json.loads(flt["typed_config"]["filter_config"]["value"])
    assert set(data["routes"]) == {"claude-limited", "claude-tokens"}
    return json.dumps(data, separators=(",", ":")).encode()


def test_the_limits_filter_under_sanitizers(tmp_path: Path) -> None:
    """The `limits` filter's config reader (the Lua's routes and their limits, adopted from
    and released to the module-global registry) and its request path on random headers (the
    route, consumer and charge headers present, missing, repeated or garbled)."""
    binary = _build(tmp_path)
    config = tmp_path / "limits.json"
    config.write_bytes(_limits_config(tmp_path))
    totals = _run(binary, config, ITERATIONS // 3, "limits")
    assert totals["accepted"] > 50 and totals["refused"] > 50, totals
    assert totals["replies_429"] > 0, totals


def test_the_harness_catches_an_out_of_bounds_read(tmp_path: Path) -> None:
    """The sanitizers are on: a module whose parser reads one byte past its input is caught
    (the harness hands the module exactly-sized buffers)."""
    src_root = tmp_path / "broken"
    src_root.mkdir()
    broken = source_files()["gw_json.c"].replace(
        b"reader r = {text, text + length, 0};", b"reader r = {text, text + length + 1, 0};")
    assert broken != source_files()["gw_json.c"]
    binary = _build(src_root, {"gw_json.c": broken})
    config = tmp_path / "config.json"
    config.write_bytes(_config(tmp_path))
    done = subprocess.run([str(binary), str(config), "1", "200"], capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode != 0
    assert "AddressSanitizer" in done.stderr

