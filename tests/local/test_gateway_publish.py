"""Publishing to a real Envoy, with a small hand-written LDS/CDS bundle (no renderer needed).

Covers the `..data` layout, the safe order of swaps, rejection and restore, and the start-up
failures of the Envoy child (port taken, early exit).
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gatewayctl.local.admin import AdminClient, summarize_bundle
from gatewayctl.local.mock_provider import MockProviderConfig, start_mock_provider
from gatewayctl.local.process import (
    ProcessError,
    find_envoy,
    free_port,
    spawn,
    stop,
    wait_envoy_ready,
)
from gatewayctl.local.publish import ConfigDir, Publisher, PublishFailed, plan_steps

pytestmark = pytest.mark.envoy

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3." \
      "HttpConnectionManager"


def cluster(name: str, port: int) -> dict[str, Any]:
    addr = {"socket_address": {"address": "127.0.0.1", "port_value": port}}
    return {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": name,
            "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name,
                                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": addr}}]}]}}


def lds(port: int, weights: list[tuple[str, int]], version: str = "v1",
        extra: dict[str, Any] | None = None) -> dict[str, Any]:
    entries = [{"name": n, "weight": w, **(extra or {})} for n, w in weights]
    route = {"name": "chat", "match": {"prefix": "/"},
             "route": {"weighted_clusters": {"clusters": entries}}}
    hcm = {"@type": HCM, "stat_prefix": "ingress",
           "route_config": {"name": "local", "virtual_hosts": [
               {"name": "all", "domains": ["*"], "routes": [route]}]},
           "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
               "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}
    return {"version_info": version, "resources": [{
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener", "name": "main",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [
            {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}]}


def cds(clusters: dict[str, int], version: str = "v1") -> dict[str, Any]:
    return {"version_info": version, "resources": [cluster(n, p) for n, p in clusters.items()]}


def bootstrap(config_dir: Path, admin_port: int) -> dict[str, Any]:
    def source(name: str) -> dict[str, Any]:
        return {"resource_api_version": "V3", "path_config_source": {
            "path": str(config_dir / name), "watched_directory": {"path": str(config_dir)}}}

    return {"node": {"id": "test", "cluster": "test"},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                     "port_value": admin_port}}},
            "dynamic_resources": {"lds_config": source("lds.json"),
                                  "cds_config": source("cds.json")}}


@dataclass
class Rig:
    path: Path
    config: ConfigDir
    admin: AdminClient
    listener_port: int
    upstreams: dict[str, int]
    log: Path
    pid: int

    def publisher(self) -> Publisher:
        return Publisher(self.config, self.admin, self.log)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    mocks = {n: start_mock_provider(config=MockProviderConfig(name=n)) for n in "abc"}
    ports = {n: m.port for n, m in mocks.items()}
    listener, admin = free_port(), free_port()
    config = ConfigDir(tmp_path / "config")
    config.publish({"lds": lds(listener, [("a", 100)]), "cds": cds({"a": ports["a"]})})
    boot = tmp_path / "bootstrap.json"
    boot.write_text(json.dumps(bootstrap(config.path, admin)))
    log = tmp_path / "envoy.log"
    record = spawn([find_envoy(), "-c", str(boot), "--reject-unknown-dynamic-fields",
                    "--disable-hot-restart", "--concurrency", "2"], log)
    try:
        wait_envoy_ready(record, admin_port=admin, listener_port=listener, log=log, since=0)
        yield Rig(tmp_path, config, AdminClient(admin), listener, ports, log, record.pid)
    finally:
        stop(record)
        for m in mocks.values():
            m.stop()


def hit(port: int, n: int) -> dict[str, int]:
    """n chat completions on one keep-alive connection; counts by upstream name or status."""
    import http.client

    seen: dict[str, int] = {}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    for _ in range(n):
        conn.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        key = resp.getheader("x-mock-name") if resp.status == 200 else str(resp.status)
        seen[key or "?"] = seen.get(key or "?", 0) + 1
    conn.close()
    return seen


def test_config_dir_is_swapped_like_kubelet_atomic_writer(tmp_path: Path) -> None:
    cfg = ConfigDir(tmp_path / "c")
    cfg.publish({"lds": lds(1, [("a", 100)]), "cds": cds({"a": 2})})
    cfg.publish({"lds": lds(1, [("a", 100)], "v2"), "cds": cds({"a": 2}, "v2")})
    names = sorted(os.listdir(cfg.path))
    stamps = [n for n in names if n.startswith("..") and n != "..data"]
    assert len(stamps) == 1 and "..data_tmp" not in names
    assert os.readlink(cfg.path / "..data") == stamps[0]
    assert os.readlink(cfg.path / "lds.json") == "..data/lds.json"
    assert os.readlink(cfg.path / "cds.json") == "..data/cds.json"
    read = cfg.read()
    assert read is not None and read["lds"]["version_info"] == "v2"


def test_plan_steps_never_route_to_a_missing_cluster() -> None:
    old_l, old_c = lds(1, [("a", 100)]), cds({"a": 1})
    # weights only: one swap
    assert [s.label for s in plan_steps(old_l, old_c, lds(1, [("a", 100)], "v2"), old_c)] \
        == ["update routes"]
    # a -> b: add b, switch routes, remove a
    new_l, new_c = lds(1, [("b", 100)]), cds({"b": 2})
    steps = plan_steps(old_l, old_c, new_l, new_c)
    assert [s.label for s in steps] == ["add 1 cluster(s)", "update routes",
                                        "remove 1 cluster(s)"]
    for step in steps:
        served = summarize_bundle(step.lds, step.cds)
        for route in served.routes:
            assert {c for c, _ in route.clusters} <= set(served.clusters), step.label
    assert steps[0].lds is old_l and steps[-1].cds is new_c


def test_new_clusters_are_served_before_routes_use_them_under_load(rig: Rig) -> None:
    """Routes move onto clusters published in the same apply: never a 503 (NC) in between.

    Removed clusters are not dropped under load here: connections opened before an apply may
    still use the old routes, which is why live.py keeps those clusters until they drained
    (tested in test_gateway_apply.py); removal itself is checked once the load has stopped.
    """
    p = rig.upstreams
    routes = [[("a", 100)], [("a", 50), ("b", 50)], [("c", 100)], [("b", 30), ("c", 70)]]
    clusters: dict[str, int] = {"a": p["a"]}
    current = {"lds": lds(rig.listener_port, routes[0]), "cds": cds(clusters)}
    stop_load = threading.Event()
    results: list[dict[str, int]] = []

    def load() -> None:
        for _ in range(400):  # bounded
            if stop_load.is_set():
                return
            results.append(hit(rig.listener_port, 5))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    swaps = []
    try:
        for i in range(1, 12):
            weights = routes[i % len(routes)]
            grown = {**clusters, **{n: p[n] for n, _ in weights}}
            new = {"lds": lds(rig.listener_port, weights, f"v{i}"), "cds": cds(grown, f"v{i}")}
            swaps.append(rig.publisher().apply(current, new))
            assert rig.admin.served() == summarize_bundle(new["lds"], new["cds"])
            current, clusters = new, grown
    finally:
        stop_load.set()
        for t in threads:
            t.join(30)
    total: dict[str, int] = {}
    for r in results:
        for k, v in r.items():
            total[k] = total.get(k, 0) + v
    print(f"\n11 ordered publishes under load ({swaps} swaps): {total}")
    assert swaps[:2] == [2, 2]  # b, then c: each added before the routes moved
    assert set(total) <= {"a", "b", "c"}, total  # only 200s from an upstream
    assert sum(total.values()) >= 100
    # without load: routes leave `a`, then `a` is removed
    final = {"lds": lds(rig.listener_port, [("c", 100)], "last"),
             "cds": cds({"c": p["c"]}, "last")}
    assert rig.publisher().apply(current, final) == 2
    assert rig.admin.served().clusters == ("c",)
    assert hit(rig.listener_port, 3) == {"c": 3}


def test_rejected_update_keeps_serving_and_restores_files(rig: Rig) -> None:
    old = {"lds": lds(rig.listener_port, [("a", 100)]), "cds": cds({"a": rig.upstreams["a"]})}
    bad = {"lds": lds(rig.listener_port, [("a", 100)], "v2", extra={"bogus_field": 1}),
           "cds": old["cds"]}
    with pytest.raises(PublishFailed) as err:
        rig.publisher().apply(old, bad)
    assert "rejected the LDS update" in err.value.message
    assert "bogus_field" in err.value.envoy_message
    assert rig.config.read() == old
    assert rig.admin.served().lds_version == "v1"
    assert hit(rig.listener_port, 3) == {"a": 3}


def test_listener_port_taken_is_reported_from_envoys_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port, admin = taken.getsockname()[1], free_port()
        config = ConfigDir(tmp_path / "config")
        config.publish({"lds": lds(port, [("a", 100)]), "cds": cds({"a": free_port()})})
        boot = tmp_path / "bootstrap.json"
        boot.write_text(json.dumps(bootstrap(config.path, admin)))
        record = spawn([find_envoy(), "-c", str(boot), "--disable-hot-restart"],
                       tmp_path / "envoy.log")
        try:
            with pytest.raises(ProcessError) as err:
                wait_envoy_ready(record, admin_port=admin, listener_port=port,
                                 log=tmp_path / "envoy.log", since=0, timeout=15)
        finally:
            stop(record)
    assert f"could not listen on 127.0.0.1:{port}" in err.value.message
    assert "Address already in use" in err.value.message


def test_envoy_exiting_early_shows_its_log(tmp_path: Path) -> None:
    boot = tmp_path / "bootstrap.json"
    boot.write_text(json.dumps({"admin": {"address": {"socket_address": {
        "address": "127.0.0.1", "port_value": free_port()}}}, "no_such_field": 1}))
    record = spawn([find_envoy(), "-c", str(boot), "--disable-hot-restart"],
                   tmp_path / "envoy.log")
    with pytest.raises(ProcessError) as err:
        wait_envoy_ready(record, admin_port=1, listener_port=1, log=tmp_path / "envoy.log",
                         since=0, timeout=15)
    assert "Envoy exited during start-up with exit code 1" in err.value.message
    assert "no_such_field" in err.value.message


def test_rejection_midway_is_undone_in_safe_order(rig: Rig) -> None:
    old = {"lds": lds(rig.listener_port, [("a", 100)]), "cds": cds({"a": rig.upstreams["a"]})}
    # Moving to cluster b: "add b" is accepted, then the routes are rejected.
    bad = {"lds": lds(rig.listener_port, [("b", 100)], "v2", extra={"bogus_field": 1}),
           "cds": cds({"b": rig.upstreams["b"]}, "v2")}
    progress: list[str] = []
    with pytest.raises(PublishFailed, match="rejected the LDS update"):
        rig.publisher().apply(old, bad, progress.append)
    assert progress[0].startswith("  add 1 cluster(s): accepted in ")
    assert progress[1] == "Envoy refused the update; restoring the previous configuration"
    assert any(p.startswith("  remove 1 cluster(s): accepted") for p in progress), progress
    assert rig.config.read() == old
    assert rig.admin.served() == summarize_bundle(old["lds"], old["cds"])
    assert hit(rig.listener_port, 3) == {"a": 3}
