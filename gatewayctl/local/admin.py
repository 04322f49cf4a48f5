"""Envoy's admin API on 127.0.0.1: stats counters, readiness and what Envoy actually serves.

`summarize_*` turn LDS/CDS resources (a rendered bundle) or a `/config_dump` into the same
`ServedConfig` value, so the local gateway can compare what it meant to serve with what Envoy
serves. Pure parsing apart from `AdminClient`; it never writes config.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gatewayctl.errors import GatewayctlError
from gatewayctl.local.process import HOST, http_get
from gatewayctl.render.envoy.names import ROUTE_CONFIG_NAME, STAT_PREFIX
from gatewayctl.render.envoy.routes import route_entries

LDS = "listener_manager.lds"
CDS = "cluster_manager.cds"
# The route table's subscription: `http.<stat_prefix>.rds.<route config name>`.
RDS = f"http.{STAT_PREFIX}.rds.{ROUTE_CONFIG_NAME}"
HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager"
)


@dataclass(frozen=True)
class ServedRoute:
    name: str  # the Envoy route name, or its match when unnamed
    clusters: tuple[tuple[str, int], ...]  # (cluster, weight); a single cluster has weight 100


@dataclass(frozen=True)
class ServedConfig:
    lds_version: str
    cds_version: str
    routes: tuple[ServedRoute, ...]
    clusters: tuple[str, ...]

    def route(self, name: str) -> ServedRoute | None:
        return next((r for r in self.routes if r.name == name), None)


class AdminClient:
    def __init__(self, port: int, timeout: float = 2.0) -> None:
        self.port = port
        self.timeout = timeout

    def get(self, path: str) -> bytes:
        status, body = http_get(f"http://{HOST}:{self.port}{path}", timeout=self.timeout)
        if status != 200:
            what = f"HTTP {status}" if status else "no answer"
            raise GatewayctlError(f"Envoy admin {path} on port {self.port}: {what}",
                                  hint="is the local gateway running? see `gatewayctl status`")
        return body

    def ready(self) -> bool:
        status, body = http_get(f"http://{HOST}:{self.port}/ready", timeout=self.timeout)
        return status == 200 and body.strip() == b"LIVE"

    def counters(self, prefixes: Iterable[str] = (LDS, CDS, RDS)) -> dict[str, int]:
        """Integer stats whose names start with one of the prefixes."""
        pattern = "^(" + "|".join(p.replace(".", r"\.") for p in prefixes) + ")"
        body = self.get("/stats?filter=" + urllib.parse.quote(pattern))
        out: dict[str, int] = {}
        for line in body.decode("utf-8", errors="replace").splitlines():
            name, sep, value = line.partition(": ")
            if sep and value.strip().lstrip("-").isdigit():
                out[name.strip()] = int(value)
        return out

    def get_json(self, path: str) -> dict[str, Any]:
        """A JSON object from the admin API. An empty answer is an empty object (Envoy sends
        nothing for a `resource=` with no entries); anything else that is not a JSON object is
        an error, never "nothing there"."""
        body = self.get(path)
        if not body.strip():
            return {}
        try:
            value = json.loads(body)
        except ValueError as err:
            value, problem = None, f"{err}"
        else:
            problem = "not a JSON object"
        if not isinstance(value, dict):
            raise GatewayctlError(
                f"Envoy admin {path} on port {self.port} answered with something that is not "
                f"a JSON object ({problem}): {body[:80]!r}",
                hint="is something other than the local gateway's Envoy listening on that "
                "port? see `gatewayctl status`")
        return value

    def config_dump(self) -> dict[str, Any]:
        return {"listeners": self.get_json("/config_dump?resource=dynamic_listeners"),
                "clusters": self.get_json("/config_dump?resource=dynamic_active_clusters"),
                "routes": self.get_json("/config_dump?resource=dynamic_route_configs"),
                "versions": self.versions()}

    def versions(self) -> dict[str, str]:
        """The version_info of the LDS and CDS responses Envoy last accepted."""
        body = self.get("/stats?filter=" + urllib.parse.quote(r"\.(lds|cds)\.version_text$"))
        out: dict[str, str] = {}
        for line in body.decode("utf-8", errors="replace").splitlines():
            name, _, value = line.partition(": ")
            out[name.rsplit(".", 2)[-2]] = value.strip().strip('"')
        return out

    def served(self) -> ServedConfig:
        return summarize_config_dump(self.config_dump())


# -- summaries ---------------------------------------------------------------------------------
def summarize_bundle(lds: Mapping[str, Any], cds: Mapping[str, Any],
                     rds: Mapping[str, Any] | None = None) -> ServedConfig:
    """What the LDS/CDS/RDS DiscoveryResponses would make Envoy serve."""
    return ServedConfig(
        lds_version=str(lds.get("version_info", "")),
        cds_version=str(cds.get("version_info", "")),
        routes=_routes(list(lds.get("resources", [])),
                       list((rds or {}).get("resources", []))),
        clusters=tuple(sorted(cluster_names(cds))),
    )


def summarize_config_dump(dump: Mapping[str, Any]) -> ServedConfig:
    """Summarize `/config_dump?resource=dynamic_listeners` + `dynamic_active_clusters`.

    `dump` is {"listeners": ..., "clusters": ..., "versions": {"lds": .., "cds": ..}}; both
    the `resource=` form (one entry per resource) and the full dump's nested form are read.
    """
    listeners: list[Any] = []
    for item in _entries(dump.get("listeners", {}), "dynamic_listeners"):
        active = item.get("active_state") or {}
        if "listener" in active:
            listeners.append(active["listener"])
    clusters = [str(item.get("cluster", {}).get("name", ""))
                for item in _entries(dump.get("clusters", {}), "dynamic_active_clusters")]
    route_configs = [item["route_config"]
                     for item in _entries(dump.get("routes", {}), "dynamic_route_configs")
                     if "route_config" in item]
    versions = dump.get("versions", {})
    return ServedConfig(str(versions.get("lds", "")), str(versions.get("cds", "")),
                        _routes(listeners, route_configs), tuple(sorted(clusters)))


def _entries(dump: Mapping[str, Any], nested: str) -> list[Mapping[str, Any]]:
    out: list[Mapping[str, Any]] = []
    for cfg in dump.get("configs", []):
        out.extend(cfg.get(nested, [cfg]))
    return out


def cluster_names(cds: Mapping[str, Any]) -> set[str]:
    return {str(r.get("name", "")) for r in cds.get("resources", [])}


def _routes(listeners: list[Any], route_configs: list[Any]) -> tuple[ServedRoute, ...]:
    """The route entries of the listeners' inline route tables and of the RDS tables they
    name (route_config_name)."""
    by_name = {str(rc.get("name", "")): rc for rc in route_configs}
    out: list[ServedRoute] = []
    for listener in listeners:
        for chain in listener.get("filter_chains", []):
            for flt in chain.get("filters", []):
                hcm = flt.get("typed_config", {})
                if hcm.get("@type") != HCM_TYPE:
                    continue
                table = hcm.get("route_config") or by_name.get(
                    str(hcm.get("rds", {}).get("route_config_name", "")), {})
                for vhost in table.get("virtual_hosts", []):
                    for route in route_entries(vhost):
                        served = _route(route)
                        if served is not None:
                            out.append(served)
    return tuple(out)


def _route(route: Mapping[str, Any]) -> ServedRoute | None:
    action = route.get("route")
    if not isinstance(action, Mapping):
        return None  # direct_response / redirect: no cluster
    name = str(route.get("name") or json.dumps(route.get("match", {}), sort_keys=True))
    if "cluster" in action:
        return ServedRoute(name, ((str(action["cluster"]), 100),))
    weighted = action.get("weighted_clusters", {}).get("clusters", [])
    pairs = tuple((str(c.get("name", "")), _weight(c.get("weight", 0))) for c in weighted)
    return ServedRoute(name, pairs)


def _weight(value: Any) -> int:
    if isinstance(value, Mapping):  # UInt32Value in some dumps
        value = value.get("value", 0)
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def compare_served(expected: ServedConfig, actual: ServedConfig) -> tuple[str, ...]:
    """Human-readable differences between what should be served and what is (empty: none)."""
    drift: list[str] = []
    want = {r.name: r for r in expected.routes}
    have = {r.name: r for r in actual.routes}
    for name in sorted(want.keys() - have.keys()):
        drift.append(f"route {name}: recorded but not served by Envoy")
    for name in sorted(have.keys() - want.keys()):
        drift.append(f"route {name}: served by Envoy but not in the recorded config")
    for name in sorted(want.keys() & have.keys()):
        if want[name].clusters != have[name].clusters:
            drift.append(f"route {name}: recorded {_fmt(want[name])}, served {_fmt(have[name])}")
    for c in sorted(set(expected.clusters) - set(actual.clusters)):
        drift.append(f"cluster {c}: recorded but not served by Envoy")
    for c in sorted(set(actual.clusters) - set(expected.clusters)):
        drift.append(f"cluster {c}: served by Envoy but not in the recorded config")
    return tuple(drift)


def _fmt(route: ServedRoute) -> str:
    return ", ".join(f"{c}={w}" for c, w in route.clusters)
