"""Hot reload: a weight change reaches the running Envoy with no restart and no failed request."""

from __future__ import annotations

import threading
import time

import pytest

from gatewayctl.render.envoy import render_envoy
from tests.render import irs
from tests.render.conftest import Gateway, needs_envoy
from tests.render.harness import publish

pytestmark = [needs_envoy, pytest.mark.envoy]


def _canary_share(gateway: Gateway, n: int) -> float:
    hits = 0
    for _ in range(n):
        r = gateway.envoy.request(
            "POST",
            "/v1/chat/completions",
            {"model": "chat", "messages": [{"role": "user", "content": "r"}]},
            keep_alive=True,
        )
        assert r.status == 200
        hits += r.headers["x-gateway-model"] == "gpt-4o-2024-11-20"
    return hits / n


def test_weight_change_applies_in_place_without_dropped_requests(gateway: Gateway) -> None:
    pid = gateway.envoy.proc.pid
    rds = "http.gateway.rds.gateway.update_success"
    updates = gateway.envoy.stat(rds)
    listener_updates = gateway.envoy.stat("listener_manager.listener_in_place_updated")
    cds_updates = gateway.envoy.stat("cluster_manager.cds.update_success")
    statuses: list[int] = []
    stop = threading.Event()

    def load() -> None:
        from tests.render.harness import RunningEnvoy

        client = RunningEnvoy(
            gateway.envoy.proc,
            gateway.envoy.workdir,
            gateway.envoy.listener_port,
            gateway.envoy.admin_port,
            gateway.envoy.access_log,
        )
        for _ in range(2000):  # bounded
            if stop.is_set():
                break
            statuses.append(client.chat("llama-70b", "during reload").status)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        flipped = irs.with_weights(
            gateway.ir, "chat", {"gpt-4o-2024-08-06": 0, "gpt-4o-2024-11-20": 100}
        )
        started = time.monotonic()
        publish(gateway.config_dir, render_envoy(flipped, gateway.options))
        deadline = started + 5
        while gateway.envoy.stat(rds) == updates:
            assert time.monotonic() < deadline, "RDS update not applied within 5s"
            time.sleep(0.01)
        applied_s = time.monotonic() - started
        assert _canary_share(gateway, 50) == 1.0
        publish(gateway.config_dir, render_envoy(gateway.ir, gateway.options))
        while gateway.envoy.stat(rds) < updates + 2:
            assert time.monotonic() < deadline + 5, "RDS update not applied within 5s"
            time.sleep(0.01)
        assert _canary_share(gateway, 200) < 0.25
    finally:
        stop.set()
        worker.join(timeout=30)
    assert gateway.envoy.proc.pid == pid and gateway.envoy.proc.poll() is None
    assert statuses and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    # Weights live in the route table (RDS) only: the listener, whose filters hold the local
    # limiters' counts, is not rebuilt, and the identical cds.json republished changes nothing.
    assert gateway.envoy.stat("listener_manager.listener_in_place_updated") == listener_updates
    assert gateway.envoy.stat("cluster_manager.cds.update_success") >= cds_updates
    assert applied_s < 2.0


def test_unknown_field_is_rejected_and_old_config_stays(gateway: Gateway) -> None:
    rejected = gateway.envoy.stat("listener_manager.lds.update_rejected")
    bundle = render_envoy(gateway.ir, gateway.options)
    broken = dict(bundle.lds)
    broken["resources"] = [dict(bundle.lds["resources"][0], bogus_field=1)]
    tmp = gateway.config_dir / ".lds.json.tmp"
    import json
    import os

    tmp.write_text(json.dumps(broken))
    os.replace(tmp, gateway.config_dir / "lds.json")
    deadline = time.monotonic() + 5
    while gateway.envoy.stat("listener_manager.lds.update_rejected") == rejected:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert gateway.envoy.chat("llama-70b").status == 200
    publish(gateway.config_dir, bundle)
