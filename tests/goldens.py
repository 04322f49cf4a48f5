"""Golden files: reviewed copies of what gatewayctl produces, and the form they are kept in.

`pytest --update-golden` rewrites every golden from the current output and deletes the ones no
longer produced; without it, a test fails with the first lines of the diff.

A golden is kept in a form made for review, so that a diff shows the one line that changed:

- Envoy config as indented YAML, one file per resource type: `listeners.yaml`, `routes.yaml`
  (each listener's route configuration, moved out of it) and `clusters.yaml`. Multi-line text
  is a literal block. A Lua filter's source is shown as its `local DATA = {...}` table, as
  data, and its code in a golden `.lua` file of its own, `lua/<filter name>.lua` (or, in the
  small per-feature cases, as the code's digest: the examples show the code in full).
- What repeats another golden (validate.yaml's static resources, the config ConfigMap's
  lds.json) is a reference to it, after checking that it is exactly the same.
- gzip payloads are shown as what they hold: gzip bytes differ between zlib builds.

Every transformation is checked to lose nothing: the raw Envoy JSON must be the canonical
compact serialisation of its value, and a Lua table the canonical `to_lua` form of its data,
so the golden still pins the output byte for byte.
"""

from __future__ import annotations

import base64
import difflib
import gzip
import hashlib
import json
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from gatewayctl.plan.text_diff import LUA_DATA, split_lua
from gatewayctl.render.envoy.bundle import dump_compact
from gatewayctl.render.envoy.listener import with_inline_routes
from gatewayctl.render.envoy.lua import to_lua

TESTS = Path(__file__).resolve().parent
# Where goldens live; `test_golden_lines` holds every file below these to MAX_LINE.
GOLDEN_DIRS = (TESTS / "golden", TESTS / "plan" / "golden", TESTS / "validate" / "cases")
MAX_LINE = 2000
_DIFF_LINES = 40


def check_golden(path: Path, actual: str, update: bool) -> None:
    """Compare with the golden file, or rewrite it under --update-golden."""
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != actual:
            path.write_text(actual, encoding="utf-8")
        return
    assert path.exists(), f"missing golden file {path}; run pytest --update-golden"
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        diff = list(difflib.unified_diff(expected.splitlines(), actual.splitlines(),
                                         "golden", "actual", lineterm="", n=2))
        shown = "\n".join(line[:300] for line in diff[:_DIFF_LINES])
        more = f"\n... {len(diff) - _DIFF_LINES} more diff lines" if len(diff) > _DIFF_LINES else ""
        raise AssertionError(f"output differs from {path} (pytest --update-golden):\n"
                             f"{shown}{more}")


def check_golden_folder(folder: Path, files: Mapping[str, str], update: bool) -> None:
    """Every file of `files` (relative path -> text) as a golden under `folder`, and nothing
    else there: --update-golden deletes the files no longer produced."""
    for rel, text in files.items():
        check_golden(folder / rel, text, update)
    produced = {folder / rel for rel in files}
    check_no_stale(folder, [p for p in folder.rglob("*") if p.is_file() and p not in produced],
                   update)


def check_no_stale(folder: Path, stale: Iterable[Path], update: bool) -> None:
    """Golden files (or folders) below `folder` that nothing produces any more: deleted under
    --update-golden, with the folders they leave empty; else a failure that lists them."""
    stale = sorted(stale)
    if not update:
        assert not stale, f"stale golden files (pytest --update-golden deletes them): {stale}"
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        parent = path.parent
        while parent != folder and folder in parent.parents and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent


# -- the reviewable form -------------------------------------------------------------------------

class _Dumper(yaml.SafeDumper):
    """Sorted, indented YAML; multi-line text as a literal block."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def golden_yaml(value: Any) -> str:
    return yaml.dump(value, Dumper=_Dumper, sort_keys=True, default_flow_style=False,
                     allow_unicode=True, width=100)


def _digest(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def _lua_file(files: dict[str, str], name: str, code: str) -> str:
    """The golden `.lua` file holding `code`: one per filter name (and per distinct code)."""
    for i in range(1, len(files) + 2):
        rel = f"lua/{name}.lua" if i == 1 else f"lua/{name}-{i}.lua"
        if files.setdefault(rel, code) == code:
            return rel
    raise AssertionError("unreachable")


def _lua_view(source: str, full_code: bool, files: dict[str, str] | None, name: str) -> Any:
    """A Lua filter's source as {DATA, code}, when its data table reads back exactly; the code
    in a `.lua` golden of its own (`files`), or as its digest where it is not shown."""
    found = LUA_DATA.search(source)
    split = split_lua(source)
    if found is None or split is None or to_lua(split[0]) != found.group(1):
        return source
    data, code = split
    if not full_code:
        code = f"sha256:{_digest(code)}"  # the same in every case; the examples show it
    elif files is not None:
        code = f"(golden) {_lua_file(files, name, code)}"
    return {"lua DATA": data, "lua code": code}


def _show_lua(value: Any, full_code: bool, files: dict[str, str] | None = None,
              name: str = "filter") -> Any:
    if isinstance(value, dict):
        if isinstance(value.get("name"), str):
            name = value["name"]
        out = {k: _show_lua(v, full_code, files, name) for k, v in value.items()}
        source = out.get("default_source_code")
        if isinstance(source, dict) and isinstance(source.get("inline_string"), str):
            out["default_source_code"] = {
                **source,
                "inline_string": _lua_view(source["inline_string"], full_code, files, name)}
        named = out.get("source_codes")
        if isinstance(named, dict):
            out["source_codes"] = {
                key: {**src, "inline_string": _lua_view(src["inline_string"], full_code, files,
                                                        f"{name}.{key}")}
                if isinstance(src, dict) and isinstance(src.get("inline_string"), str) else src
                for key, src in named.items()
            }
        return out
    if isinstance(value, list):
        return [_show_lua(v, full_code, files, name) for v in value]
    return value


def _canonical_json(rel: str, text: str) -> Any:
    value = json.loads(text)
    assert text == dump_compact(value), f"{rel} is not canonical compact JSON"
    return value


def _split_routes(lds: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    """Listeners with each route configuration replaced by a reference, and the configs."""
    routes: list[Any] = []

    def visit(value: Any) -> Any:
        if isinstance(value, dict):
            out = {k: visit(v) for k, v in value.items()}
            config = out.get("route_config")
            if isinstance(config, dict):
                routes.append(config)
                out["route_config"] = f"(golden) routes.yaml: {config.get('name')}"
            return out
        if isinstance(value, list):
            return [visit(v) for v in value]
        return value

    return visit(lds), routes


def envoy_goldens(lds_text: str, cds_text: str, rds_text: str | None = None, *,
                  full_code: bool = True) -> dict[str, str]:
    """lds.json, rds.json and cds.json as listeners.yaml, routes.yaml and clusters.yaml, and
    (full_code) each Lua filter's code as lua/<filter name>.lua."""
    lds = _canonical_json("lds.json", lds_text)
    cds = _canonical_json("cds.json", cds_text)
    listeners, routes = _split_routes(lds)
    if rds_text is not None:
        routes += _canonical_json("rds.json", rds_text).get("resources", [])
    lua: dict[str, str] = {}
    return {
        "listeners.yaml": golden_yaml(_show_lua(listeners, full_code, lua)),
        "routes.yaml": golden_yaml(routes),
        "clusters.yaml": golden_yaml(cds),
        **lua,
    }


def _validate_golden(text: str, lds_text: str, cds_text: str, rds_text: str) -> str:
    static = _canonical_json("validate.yaml", text)
    resources = static.get("static_resources", {})
    tables = [{k: v for k, v in r.items() if k != "@type"}
              for r in json.loads(rds_text)["resources"]]
    for key, source, golden in (("listeners", lds_text, "listeners.yaml"),
                                ("clusters", cds_text, "clusters.yaml")):
        dynamic = [{k: v for k, v in r.items() if k != "@type"}
                   for r in json.loads(source)["resources"]]
        if key == "listeners":  # the static twin has the route table inline
            dynamic = [with_inline_routes(r, t) for r in dynamic for t in tables]
        resources[key] = [f"(golden) {golden}: {r.get('name')}" if r in dynamic else r
                          for r in resources.get(key, [])]
    return golden_yaml(static)


def _unzip(value: str) -> bytes:
    return gzip.decompress(base64.b64decode(value))


_SHOWN_IN = {"envoy/lds.json": " (listeners.yaml)",
             "envoy/rds.json": " (routes.yaml)",
             "envoy/cds.json": " (clusters.yaml)"}


def _configmap_golden(text: str, files: Mapping[str, str]) -> str:
    """A ConfigMap whose entries repeat other files of the bundle names them instead."""
    obj = yaml.safe_load(text)
    if obj.get("kind") != "ConfigMap":
        return text
    same = {content: f"(golden) same as {rel}{_SHOWN_IN.get(rel, '')}"
            for rel, content in files.items() if rel.startswith("envoy/")}
    changed = False
    for key, value in (obj.get("data") or {}).items():
        if value in same:
            obj["data"][key], changed = same[value], True
    ir = json.loads(files["ir.json"]) if "ir.json" in files else None
    for key, value in (obj.get("binaryData") or {}).items():
        content = _unzip(value)
        text_of = content.decode("utf-8", errors="replace")
        if text_of in same:
            shown = same[text_of].replace("same as", "gzip of")
        elif ir is not None and key == "ir.json.gz" and json.loads(content) == ir:
            shown = "(golden) gzip of ir.json, compact"
        else:
            shown = f"(golden) gunzip:sha256:{_digest(content)}"
        obj["binaryData"][key], changed = shown, True
    return golden_yaml(obj) if changed else text


def bundle_goldens(files: Mapping[str, str]) -> dict[str, str]:
    """The golden files of a rendered bundle (`render_files`)."""
    out: dict[str, str] = {}
    lds, cds, rds = files["envoy/lds.json"], files["envoy/cds.json"], files["envoy/rds.json"]
    for rel, text in files.items():
        if rel == "envoy/lds.json":
            goldens = envoy_goldens(lds, cds, rds)
            out.update({f"envoy/{name}": body for name, body in goldens.items()})
        elif rel in ("envoy/cds.json", "envoy/rds.json"):
            continue  # clusters.yaml and routes.yaml, with the listeners
        elif rel == "envoy/validate.yaml":
            out[rel] = _validate_golden(text, lds, cds, rds)
        elif rel.startswith("kubernetes/"):
            out[rel] = _configmap_golden(text, files)
        else:
            out[rel] = text
    return dict(sorted(out.items()))
