"""gatewayctl's compiled module (render/envoy/module/, dynamic_module.py, local/module.py):
its build, its ABI checks and its config handling, in a real Envoy 1.40. What its auth filter
decides is tested with the Lua's own tests, parametrised over both (test_dataplane.py,
test_body_limits.py, test_jwt.py)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from gatewayctl.local.module import ModuleError, build_module, check_module, envoy_version
from gatewayctl.local.process import find_envoy
from gatewayctl.render.envoy import render_envoy
from gatewayctl.render.envoy.dynamic_module import (
    CFLAGS,
    MODULE_TYPE,
    SOURCES,
    TARGET_ABI,
    abi_problem,
    library_abi,
    module_config,
)
from gatewayctl.render.envoy.listener import auth_filter_data
from gatewayctl.render.envoy.metrics import STATS_SCOPE
from gatewayctl.render.envoy.names import (
    AUTH_FILTER,
    BODY_MODULE_FILTER,
    COST_KEY,
    INTERNAL_NS,
    LUA_FILTER,
)
from gatewayctl.render.envoy.routes import route_entries
from tests.render import irs
from tests.render.harness import (
    envoy_binary,
    loopback_options,
    module_dir,
    running_envoy,
    validate,
    with_filters,
    write_secrets,
)

needs_compiler = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler"
)
needs_envoy = pytest.mark.skipif(envoy_binary() is None, reason="envoy not on PATH")
ROOT = Path(__file__).resolve().parents[2]


def _auth_filter(bundle_files: dict[str, str]) -> dict[str, Any]:
    lds = json.loads(bundle_files["lds.json"])
    hcm = lds["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return next(f for f in hcm["http_filters"] if f["name"] == AUTH_FILTER)


def test_lua_is_the_default_and_module_renders_the_same_data(tmp_path: Path) -> None:
    ir = irs.build_ir()
    options = loopback_options(tmp_path, tmp_path / "secrets")
    assert ir.data_plane_filters == "lua"
    lua = _auth_filter(render_envoy(ir, options).files())
    assert lua["typed_config"]["@type"].endswith(".Lua")
    module = _auth_filter(render_envoy(dataclasses.replace(ir, data_plane_filters="module"),
                                       options).files())
    config = module["typed_config"]
    assert config["@type"] == MODULE_TYPE
    assert config["dynamic_module_config"] == {"name": "gatewayctl"}
    assert config["filter_name"] == "auth"
    data = json.loads(config["filter_config"]["value"])
    assert data["abi"] == TARGET_ABI
    # the Lua's data table (the same function's output), as JSON, with the names it uses
    # but the body classes: the module's auth filter sets the stream's bound itself (no
    # buffer filter in the chain, listener.module_bounds_bodies)
    lua_data = auth_filter_data(ir, options)
    assert lua_data["body_classes"] == {"8388608": "_body_8388608"}
    assert {k: v for k, v in data.items() if k not in ("abi", "names")} == {
        **{k: v for k, v in lua_data.items() if v is not None},
        "body_classes": {}, "buffer_headroom": 256 * 1024}
    assert data["names"]["client_key_headers"] == ["authorization", "x-api-key", "api-key"]
    assert data["consumer_caps"] == {"helpdesk": 1048576, "search-app": 8388608}
    assert "jwt" not in data  # no JWT policy: no jwt data (the module refuses any)
    # no secret value in the config
    for key in irs.CONSUMER_KEYS.values():
        assert key not in config["filter_config"]["value"]


def test_module_config_is_deterministic_and_drops_nulls() -> None:
    one = module_config({"b": 1, "a": None, "c": {"y": None, "x": [1, {"z": None}]}})
    assert one == '{"abi":"' + TARGET_ABI + '","b":1,"c":{"x":[1,{}]}}'
    assert module_config({"c": {"x": [1, {}]}, "b": 1}) == one


@needs_compiler
def test_build_is_cached_content_addressed_and_deterministic(tmp_path: Path) -> None:
    one = build_module(tmp_path / "a")
    again = build_module(tmp_path / "a")
    other = build_module(tmp_path / "b")
    assert one == again
    assert one.parent.name == other.parent.name  # the same key for the same inputs
    assert re.fullmatch("[0-9a-f]{64}", one.parent.name)
    assert one.read_bytes() == other.read_bytes()  # byte-identical builds
    assert library_abi(one.read_bytes()) == TARGET_ABI
    # another flag is another build
    debug = build_module(tmp_path / "a", extra_flags=("-DGW_ABI_VERSION=\"v0.1.0\"",))
    assert debug.parent != one.parent
    assert library_abi(debug.read_bytes()) == "v0.1.0"


@needs_compiler
def test_the_build_uses_the_hardened_flags(tmp_path: Path) -> None:
    for flag in ("-O2", "-Werror", "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2"):
        assert flag in CFLAGS
    library = build_module(tmp_path)
    # _FORTIFY_SOURCE at -O2 turns snprintf/memcpy into their checked forms
    assert b"__snprintf_chk" in library.read_bytes()
    assert b"__stack_chk_fail" in library.read_bytes()


def test_the_image_builds_with_the_same_flags_and_sources() -> None:
    dockerfile = (ROOT / "docker" / "envoy-module.Dockerfile").read_text()
    for flag in CFLAGS:
        assert flag in dockerfile, flag
    for name in SOURCES:
        assert name in dockerfile, name
    assert "ENVOY_DYNAMIC_MODULES_SEARCH_PATH" in dockerfile
    assert "FROM ${ENVOY_IMAGE}" in dockerfile


def test_abi_problems_are_explained() -> None:
    good = b"...gatewayctl-module-abi=v0.2.0\x00..."
    assert abi_problem(good, "1.40.0") is None
    assert abi_problem(b"gatewayctl-module-abi=v0.1.0\x00", "1.40.0") == (
        "it was built for dynamic-module ABI v0.1.0, and Envoy 1.40.0 speaks v0.2.0")
    assert abi_problem(good, "1.41.2") == (
        "Envoy 1.41.2 has no known module ABI (gatewayctl knows Envoy 1.40)")
    assert abi_problem(b"\x7fELF other library", "1.40.0") == (
        "it is not gatewayctl's module (no ABI marker)")


@needs_compiler
@needs_envoy
def test_a_module_built_for_another_abi_is_refused(tmp_path: Path) -> None:
    envoy = find_envoy()
    assert envoy_version(envoy) == "1.40.0"
    good = build_module(tmp_path)
    check_module(good, envoy)  # no error
    other = build_module(tmp_path, extra_flags=("-DGW_ABI_VERSION=\"v0.1.0\"",))
    with pytest.raises(ModuleError) as raised:
        check_module(other, envoy)
    assert str(raised.value) == (
        f"cannot use the module {other}: it was built for dynamic-module ABI v0.1.0, and "
        "Envoy 1.40.0 speaks v0.2.0")
    assert raised.value.hint is not None and "dataPlaneFilters: lua" in raised.value.hint


def _validate_with(tmp_path: Path, edit: Any) -> str:
    """`envoy --mode validate` of the module gateway's static config after edit(config)."""
    ir = with_filters(irs.build_ir(), "module")
    files = render_envoy(ir, loopback_options(tmp_path, tmp_path / "secrets")).files()
    text = files["validate.yaml"]
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe")
    doc = yaml.load(text)
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    flt = next(f for f in hcm["typed_config"]["http_filters"] if f["name"] == AUTH_FILTER)
    edit(flt["typed_config"])
    path = tmp_path / "validate.json"
    path.write_text(json.dumps(doc))
    done = validate(path)
    return "OK" if done.returncode == 0 else done.stdout + done.stderr


@needs_compiler
@needs_envoy
def test_envoy_loads_the_rendered_module_config(tmp_path: Path) -> None:
    assert _validate_with(tmp_path, lambda config: None) == "OK"


def _set_data(change: Any) -> Any:
    def edit(config: dict[str, Any]) -> None:
        data = json.loads(config["filter_config"]["value"])
        change(data)
        config["filter_config"]["value"] = json.dumps(data)

    return edit


@needs_compiler
@needs_envoy
@pytest.mark.parametrize(
    "edit",
    [
        # a config rendered for another ABI: the module refuses it
        _set_data(lambda d: d.update(abi="v0.1.0")),
        _set_data(lambda d: d.pop("abi")),
        # bad or missing data
        _set_data(lambda d: d.update(first_cap="1")),
        _set_data(lambda d: d.update(consumers=[{"name": "x"}])),
        _set_data(lambda d: d["names"].update(client_key_headers=[])),
        _set_data(lambda d: d.update(body_classes={"x1": "_body"})),
        _set_data(lambda d: d.update(jwt={"providers": []})),
        lambda c: c["filter_config"].update(value='{"abi":"v0.2.0",'),
        lambda c: c.update(filter_name="body"),
    ],
    ids=["other-abi", "no-abi", "cap-type", "consumer-file", "no-key-headers", "class-key",
         "jwt", "truncated-json", "unknown-filter"],
)
def test_config_errors_are_refused_by_envoy(tmp_path: Path, edit: Any) -> None:
    out = _validate_with(tmp_path, edit)
    assert "Failed to initialize dynamic module" in out, out


@needs_compiler
@needs_envoy
def test_rotated_consumer_key_applies_without_a_reload(tmp_path: Path) -> None:
    """secrets.lua's semantics in C: the key files are read again once secret_ttl_s has
    passed; the old key stops working, the new one works, an emptied file names nobody."""
    assert module_dir() is not None
    ir = with_filters(irs.build_ir(), "module")
    secrets = tmp_path / "secrets"
    write_secrets(secrets, {(f"{n}-key", "key"): k for n, k in irs.CONSUMER_KEYS.items()})
    options = loopback_options(tmp_path, secrets, secret_ttl_s=1)
    key_file = secrets / "search-app-key" / "key"
    old = irs.CONSUMER_KEYS["search-app"]
    with running_envoy(tmp_path / "envoy", render_envoy(ir, options),
                       listener_port=options.listener_port, admin_port=options.admin_port,
                       access_log=tmp_path / "access.log", concurrency=1) as envoy:
        def status(key: str) -> int:
            # no provider is reachable: a request past auth gets 503, one refused by it 401
            return envoy.chat("keys", headers={"x-api-key": key}).status

        assert status(old) != 401
        key_file.write_text("  rotated-key-value\n")
        deadline = time.monotonic() + 10
        while status("rotated-key-value") == 401 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status("rotated-key-value") != 401
        assert status(old) == 401
        key_file.write_text("\n")
        deadline = time.monotonic() + 10
        while status("rotated-key-value") != 401 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status("rotated-key-value") == 401
        log = envoy.log_text()
    for secret in ("rotated-key-value", old):
        assert secret not in log


def _http_filters(files: dict[str, str]) -> list[dict[str, Any]]:
    lds = json.loads(files["lds.json"])
    hcm = lds["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return list(hcm["http_filters"])


def _lua_off(files: dict[str, str]) -> set[str]:
    """The route entries where the Lua body filter is switched off."""
    rds = json.loads(files["rds.json"])["resources"][0]
    entries = [e for v in rds["virtual_hosts"] for e in route_entries(v)]
    return {e["name"] for e in entries
            if e.get("typed_per_filter_config", {}).get(LUA_FILTER, {}).get("disabled")}


def test_the_body_filter_serves_its_routes_and_switches_the_lua_off_there(tmp_path: Path) -> None:
    ir = irs.build_ir()
    options = loopback_options(tmp_path, tmp_path / "secrets")
    lua_files = render_envoy(ir, options).files()
    assert BODY_MODULE_FILTER not in [f["name"] for f in _http_filters(lua_files)]
    assert not _lua_off(lua_files)
    files = render_envoy(dataclasses.replace(ir, data_plane_filters="module"), options).files()
    names = [f["name"] for f in _http_filters(files)]
    # the module's body filter right before the Lua one, which stays for the other routes
    assert names.index(BODY_MODULE_FILTER) + 1 == names.index(LUA_FILTER)
    module = next(f for f in _http_filters(files) if f["name"] == BODY_MODULE_FILTER)
    assert module["typed_config"]["filter_name"] == "body"
    data = json.loads(module["typed_config"]["filter_config"]["value"])
    # every route but the one whose prompt holds a NUL (the config reader takes none)
    assert sorted(data["routes"]) == sorted(r.name for r in ir.routes if r.name != "hostile")
    assert data["models"]["weird/model:v1.0_x"] == "hostile"  # left to the Lua, by name
    assert data["prices"]["llama-3.1-70b"] == ["0.2", "0.2"]
    assert data["policies"][data["routes"]["tokens"]["policy"]]["token_limits"][0]["max"] == 100
    for key in irs.CONSUMER_KEYS.values():
        assert key not in module["typed_config"]["filter_config"]["value"]
    assert irs.OPENAI_KEY not in module["typed_config"]["filter_config"]["value"]
    # the Lua body filter is off on exactly the module's routes (the canary entry too)
    assert _lua_off(files) == {*data["routes"], "chat-canary"}


def test_the_module_counts_its_routes_and_the_logger_only_the_lua_ones(tmp_path: Path) -> None:
    """The body filter's counters live in the `gatewayctl` stats scope (its metrics namespace,
    as the logger's stats_scope), and the per-consumer logger counts only requests with the
    cost key, which only the Lua body filter sets (the module counts its own: gw_counters.c;
    test_access_log_contract.py checks the series in a real Envoy with both)."""
    ir = dataclasses.replace(irs.build_ir(), data_plane_filters="module")
    files = render_envoy(ir, loopback_options(tmp_path, tmp_path / "secrets")).files()
    module = next(f for f in _http_filters(files) if f["name"] == BODY_MODULE_FILTER)
    assert module["typed_config"]["dynamic_module_config"]["metrics_namespace"] == STATS_SCOPE
    assert "metrics_namespace" not in _auth_filter(files)["typed_config"]["dynamic_module_config"]
    lds = json.loads(files["lds.json"])
    hcm = lds["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    consumer = [log for log in hcm["access_log"]
                if log["name"] == "envoy.access_loggers.stats"
                and log["typed_config"]["counters"][0]["stat"]["name"].startswith("consumer.")]
    assert [log["filter"] for log in consumer] == [{"metadata_filter": {
        "matcher": {"filter": INTERNAL_NS, "path": [{"key": COST_KEY}],
                    "value": {"present_match": True}},
        "match_if_key_not_found": False}}]


def test_a_gateway_the_module_cannot_serve_keeps_the_lua_body_filter(tmp_path: Path) -> None:
    """A gateway whose only route is one the module does not serve: no module body filter,
    and the Lua body filter on everywhere."""
    ir = dataclasses.replace(irs.build_ir(), data_plane_filters="module")
    ir = dataclasses.replace(ir, routes=tuple(r for r in ir.routes if r.name == "hostile"))
    files = render_envoy(ir, loopback_options(tmp_path, tmp_path / "secrets")).files()
    assert BODY_MODULE_FILTER not in [f["name"] for f in _http_filters(files)]
    assert not _lua_off(files)


def test_a_gateway_the_module_serves_whole_has_no_lua_body_filter(tmp_path: Path) -> None:
    """Every route the module's: the Lua body filter is left out of the chain (its presence
    alone costs every request) and no route carries a per-route config for it; the answers stay
    the Lua's (test_dataplane.py runs such gateways in a real Envoy, parametrised over both)."""
    ir = dataclasses.replace(irs.build_ir(), data_plane_filters="module")
    ir = dataclasses.replace(ir, routes=tuple(r for r in ir.routes if r.name != "hostile"))
    files = render_envoy(ir, loopback_options(tmp_path, tmp_path / "secrets")).files()
    names = [f["name"] for f in _http_filters(files)]
    assert BODY_MODULE_FILTER in names
    assert LUA_FILTER not in names
    assert not _lua_off(files)
    assert LUA_FILTER not in files["rds.json"]


def test_the_consumer_header_is_set_only_where_a_limit_reads_it(tmp_path: Path) -> None:
    """x-gw-consumer is read only by Envoy's local limit by consumer (its descriptor): the
    module's config says `consumer_header: false` on the other routes, and on the routes whose
    limits the module enforces itself (`limits`: it reads the consumer from its own stream),
    and the module then skips the write."""
    ir = dataclasses.replace(irs.build_ir(), data_plane_filters="module")
    files = render_envoy(ir, loopback_options(tmp_path, tmp_path / "secrets")).files()
    module = next(f for f in _http_filters(files) if f["name"] == BODY_MODULE_FILTER)
    routes = json.loads(module["typed_config"]["filter_config"]["value"])["routes"]
    by_consumer = {r.name for r in ir.routes
                   if any(limit.by == "consumer"
                          for limit in (*r.policy.rate_limits, *r.policy.token_limits))}
    assert {"limited", "tokens"} <= by_consumer
    module_limited = {name for name, route in routes.items() if "limits" in route}
    assert {"limited", "tokens"} <= module_limited
    assert {name for name, route in routes.items() if "consumer_header" not in route} == (
        (by_consumer & set(routes)) - module_limited)
    assert all(route.get("consumer_header", False) is False for route in routes.values())
    # in global scope the rate limit filters' descriptors are taken as reading it everywhere
    shared = dataclasses.replace(ir, limits=dataclasses.replace(ir.limits, scope="global"))
    files = render_envoy(shared, loopback_options(tmp_path, tmp_path / "secrets")).files()
    module = next(f for f in _http_filters(files) if f["name"] == BODY_MODULE_FILTER)
    value = json.loads(module["typed_config"]["filter_config"]["value"])
    assert value["routes"]
    assert all("consumer_header" not in r for r in value["routes"].values())
