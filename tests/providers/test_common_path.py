"""Routes whose providers speak OpenAI do not pay for translation: adding providers of other
APIs (and routes to them) to a gateway leaves an OpenAI route's rendered config as it was, keeps
it pinned, and leaves the translating filter off for it. The instruction counts of the
benchmark (docs/performance.md, Provider translation) measure the same from the other side."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from gatewayctl.ir import GatewayIR
from gatewayctl.render.envoy import EnvoyOptions, render_envoy
from gatewayctl.render.envoy.names import UPSTREAM_TRANSLATE_FILTER
from gatewayctl.render.envoy.routes import route_entries
from gatewayctl.render.envoy.upstream import skip_upstream_filters
from tests.providers import irs

OPENAI_ROUTES = (irs.route_name("openai"), "tokens-openai", "guarded-openai")
OPTIONS = EnvoyOptions(secrets_dir="/secrets", config_dir="/config")


def _openai_only(ir: GatewayIR) -> GatewayIR:
    """The same gateway with its OpenAI routes, provider and model alone."""
    return dataclasses.replace(
        ir,
        providers=tuple(p for p in ir.providers if p.name == "openai"),
        models=tuple(m for m in ir.models if m.provider == "openai"),
        routes=tuple(r for r in ir.routes if r.name in OPENAI_ROUTES),
    )


def _hcm(lds: dict[str, Any]) -> dict[str, Any]:
    hcm: dict[str, Any] = lds["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm


def _routes(rds: dict[str, Any]) -> dict[str, Any]:
    vhost = rds["resources"][0]["virtual_hosts"][0]
    return {entry["name"]: entry for entry in route_entries(vhost)}


def _upstream_filters(lds: dict[str, Any]) -> list[dict[str, Any]]:
    router = next(f for f in _hcm(lds)["http_filters"] if f["name"] == "envoy.filters.http.router")
    filters: list[dict[str, Any]] = router["typed_config"]["upstream_http_filters"]
    return filters


@pytest.fixture(scope="module")
def rendered() -> tuple[Any, Any]:
    full = irs.build_ir()
    return render_envoy(_openai_only(full), OPTIONS), render_envoy(full, OPTIONS)


@pytest.mark.parametrize("route", OPENAI_ROUTES)
def test_an_openai_routes_entry_is_the_same_beside_native_providers(
    rendered: tuple[Any, Any], route: str
) -> None:
    alone, beside = rendered

    entry = _routes(beside.rds)[route]

    assert json.dumps(entry, sort_keys=True) == json.dumps(_routes(alone.rds)[route],
                                                           sort_keys=True)
    # pinned: the per-attempt chain is off, and nothing switches the translating filter on
    per_filter = entry["typed_per_filter_config"]
    assert UPSTREAM_TRANSLATE_FILTER not in per_filter
    assert skip_upstream_filters().items() <= per_filter.items()


def test_the_translating_filter_is_off_unless_a_route_switches_it_on(
    rendered: tuple[Any, Any]
) -> None:
    alone, beside = rendered

    assert UPSTREAM_TRANSLATE_FILTER not in [f["name"] for f in _upstream_filters(alone.lds)]
    translate = next(f for f in _upstream_filters(beside.lds)
                     if f["name"] == UPSTREAM_TRANSLATE_FILTER)
    assert translate["disabled"] is True
    switched_on = sorted(name for name, entry in _routes(beside.rds).items()
                         if UPSTREAM_TRANSLATE_FILTER in entry.get("typed_per_filter_config", {}))
    ir = irs.build_ir()
    native = sorted(r.name for r in ir.routes if ir.native_apis(r))
    assert switched_on == native
    assert "badkey-openai" not in native and len(native) == len(ir.routes) - 4


def test_an_openai_routes_clusters_are_the_same_beside_native_providers(
    rendered: tuple[Any, Any]
) -> None:
    alone, beside = rendered
    clusters = {c["name"]: c for c in beside.cds["resources"]}

    for cluster in alone.cds["resources"]:
        assert clusters[cluster["name"]] == cluster
