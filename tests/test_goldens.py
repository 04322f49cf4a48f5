"""The golden machinery: --update-golden deletes stale goldens, and the reviewable form loses
nothing that the raw output holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gatewayctl.render.envoy.bundle import dump_compact
from gatewayctl.render.envoy.lua import to_lua
from tests.goldens import (
    _lua_file,
    check_golden,
    check_golden_folder,
    check_no_stale,
    envoy_goldens,
)


def test_update_deletes_what_is_no_longer_produced(tmp_path: Path) -> None:
    folder = tmp_path / "case"
    (folder / "envoy").mkdir(parents=True)
    (folder / "envoy" / "old.yaml").write_text("old\n")
    (folder / "kept.txt").write_text("before\n")

    check_golden_folder(folder, {"kept.txt": "after\n"}, update=True)

    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == ["kept.txt"]
    assert (folder / "kept.txt").read_text() == "after\n"


def test_a_stale_golden_fails_without_update(tmp_path: Path) -> None:
    (tmp_path / "gone.expected").write_text("exit: 1\n")
    (tmp_path / "here.expected").write_text("exit: 1\n")

    with pytest.raises(AssertionError, match="gone.expected"):
        check_no_stale(tmp_path, [tmp_path / "gone.expected"], update=False)
    check_no_stale(tmp_path, [tmp_path / "gone.expected"], update=True)

    assert [p.name for p in tmp_path.iterdir()] == ["here.expected"]


def test_a_difference_is_shown_as_a_diff(tmp_path: Path) -> None:
    golden = tmp_path / "routes.yaml"
    golden.write_text("a: 1\nweight: 90\nz: 2\n")

    with pytest.raises(AssertionError) as failure:
        check_golden(golden, "a: 1\nweight: 95\nz: 2\n", update=False)

    assert "-weight: 90\n+weight: 95" in str(failure.value)


def _lds(source: str, route_config: dict[str, object]) -> str:
    hcm = {"route_config": route_config, "http_filters": [
        {"name": "lua", "typed_config": {"default_source_code": {"inline_string": source}}}]}
    return dump_compact({"resources": [{"name": "gateway", "filter_chains": [
        {"filters": [{"name": "hcm", "typed_config": hcm}]}]}], "version_info": "1"})


def test_envoy_goldens_split_per_resource_type_and_show_lua_data() -> None:
    data = {"routes": {"chat": {"weight": 90}}, "keys": ["a", "b"]}
    source = "local json = 1\nlocal DATA = " + to_lua(data) + "\nreturn DATA\n"
    lds = _lds(source, {"name": "gateway", "virtual_hosts": []})
    cds = dump_compact({"resources": [{"name": "m_chat"}], "version_info": "2"})

    files = envoy_goldens(lds, cds)

    assert sorted(files) == ["clusters.yaml", "listeners.yaml", "lua/lua.lua", "routes.yaml"]
    assert "route_config: '(golden) routes.yaml: gateway'" in files["listeners.yaml"]
    assert "lua DATA:\n" in files["listeners.yaml"]
    assert "                      weight: 90\n" in files["listeners.yaml"]
    assert "lua code: (golden) lua/lua.lua\n" in files["listeners.yaml"]
    assert files["lua/lua.lua"] == "local json = 1\nlocal DATA = ...\nreturn DATA\n"
    assert files["routes.yaml"] == "- name: gateway\n  virtual_hosts: []\n"
    assert "name: m_chat" in files["clusters.yaml"]


def test_each_lua_code_has_one_golden_file_per_filter_name_and_code() -> None:
    files: dict[str, str] = {}
    assert _lua_file(files, "auth", "a") == "lua/auth.lua"
    assert _lua_file(files, "auth", "a") == "lua/auth.lua"  # the same code: the same file
    assert _lua_file(files, "auth", "b") == "lua/auth-2.lua"
    assert files == {"lua/auth.lua": "a", "lua/auth-2.lua": "b"}


def test_a_lua_table_that_does_not_read_back_exactly_stays_text() -> None:
    source = 'local DATA = {["a"]=1.50}\n'  # not how to_lua writes 1.5
    files = envoy_goldens(_lds(source, {"name": "r"}), dump_compact({"resources": []}))

    assert "lua DATA" not in files["listeners.yaml"]
    assert 'local DATA = {["a"]=1.50}' in files["listeners.yaml"]


def test_envoy_json_that_is_not_canonical_is_refused() -> None:
    lds = json.dumps({"resources": []}, indent=1)
    with pytest.raises(AssertionError, match="lds.json is not canonical"):
        envoy_goldens(lds, dump_compact({"resources": []}))
