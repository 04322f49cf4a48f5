"""`apply_local` and `read_local` against a running local gateway (examples/quickstart).

The headline check: 20 consecutive weight changes under client load, with no Envoy restart
and not one failed request.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gatewayctl.ir import BackendIR, GatewayIR, PolicyIR
from gatewayctl.local.admin import AdminClient
from gatewayctl.local.gateway import UpResult, apply_local, down, read_local, status, up
from gatewayctl.local.process import EnvoyRejected, free_port
from gatewayctl.local.publish import ConfigDir
from gatewayctl.local.rendering import load_ir
from gatewayctl.local.state import StateDir

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
OLD, NEW, MINI = "gpt-4o-2024-08-06", "gpt-4o-2024-11-20", "gpt-4o-mini-2024-07-18"


@dataclass
class Gateway:
    result: UpResult
    ir: GatewayIR
    state: StateDir


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    state = tmp_path_factory.mktemp("state")
    mp = pytest.MonkeyPatch()
    mp.setenv("GATEWAYCTL_STATE_DIR", str(state))
    try:
        result = up(QUICKSTART, listener_port=free_port(), admin_port=free_port())
        yield Gateway(result, load_ir(QUICKSTART), StateDir(state))
    finally:
        down()
        mp.undo()


def with_weights(ir: GatewayIR, old: int) -> GatewayIR:
    route = ir.routes[0]
    backends = tuple(BackendIR(b.model, old if b.model == OLD else 100 - old, b.role)
                     for b in route.backends)
    return dataclasses.replace(ir, routes=(dataclasses.replace(route, backends=backends),))


def with_policy(ir: GatewayIR, policy: PolicyIR) -> GatewayIR:
    return dataclasses.replace(ir, routes=(dataclasses.replace(ir.routes[0], policy=policy),))


def chat(conn: http.client.HTTPConnection) -> tuple[int, str]:
    body = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "hello"}]})
    conn.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    model = json.loads(data).get("model", "") if resp.status == 200 else ""
    if resp.getheader("connection", "").lower() == "close":
        conn.close()
    return resp.status, str(model)


@dataclass
class Load:
    """Bounded client load: `threads` clients, half keep-alive, half a connection per request."""

    port: int
    threads: int = 4
    max_requests: int = 20_000  # per client: the hard bound if the test forgets to stop it
    statuses: Counter[str] = field(default_factory=Counter)
    models: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _client(self, keep_alive: bool) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        for _ in range(self.max_requests):
            if self._stop.is_set():
                break
            if not keep_alive:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                code, model = chat(conn)
                with self._lock:
                    self.statuses[str(code)] += 1
                    self.models[model] += 1
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.errors.append(repr(exc))
                conn.close()
            if not keep_alive:
                conn.close()
        conn.close()

    def __enter__(self) -> Load:
        for i in range(self.threads):
            t = threading.Thread(target=self._client, args=(i % 2 == 0,), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(30)

    @property
    def total(self) -> int:
        return sum(self.statuses.values()) + len(self.errors)


def served_weights(admin_port: int) -> dict[str, int]:
    route = AdminClient(admin_port).served().routes[0]
    return {cluster: weight for cluster, weight in route.clusters}


def test_twenty_weight_changes_under_load_no_restart_no_failure(gateway: Gateway) -> None:
    pid = gateway.result.envoy_pid
    latencies: list[float] = []
    with Load(gateway.result.ports.listener) as load:
        time.sleep(0.3)
        for i in range(20):
            weight = 100 if i % 2 else 0  # all traffic flips between the two versions
            started = time.monotonic()
            result = apply_local(with_weights(gateway.ir, weight))
            latencies.append(time.monotonic() - started)
            assert result.changed and result.swaps == 1, result
        time.sleep(0.3)
    print(f"\n20 applies: mean {sum(latencies) / 20:.3f}s, max {max(latencies):.3f}s; "
          f"requests {load.total}: {dict(load.statuses)} {dict(load.models)}")
    assert load.errors == []
    assert dict(load.statuses) == {"200": load.total}
    assert load.total >= 200
    assert load.models[OLD] > 0 and load.models[NEW] > 0
    assert status().envoy_pid == pid  # no restart
    weights = served_weights(gateway.result.ports.admin)
    assert [w for w in weights.values() if w] == [100]  # a zero-weight entry may be left out
    # the last apply (i = 19) sent everything to OLD: fresh requests agree
    conn = http.client.HTTPConnection("127.0.0.1", gateway.result.ports.listener, timeout=10)
    assert {chat(conn) for _ in range(10)} == {(200, OLD)}


def with_new_model(ir: GatewayIR) -> GatewayIR:
    """NEW replaced by a model the gateway has no cluster for yet: clusters added and removed."""
    mini = dataclasses.replace(ir.model(NEW), name=MINI, upstream_model=MINI)
    route = ir.routes[0]
    backends = tuple(BackendIR(MINI if b.model == NEW else b.model, 50, b.role)
                     for b in route.backends)
    return dataclasses.replace(
        ir, models=tuple(sorted((*ir.models, mini), key=lambda m: m.name)),
        routes=(dataclasses.replace(route, backends=backends),))


def test_backend_swaps_under_load_keep_old_clusters_while_connections_drain(
    gateway: Gateway,
) -> None:
    results = []
    with Load(gateway.result.ports.listener) as load:
        time.sleep(0.2)
        for i in range(6):
            ir = with_new_model(gateway.ir) if i % 2 == 0 else with_weights(gateway.ir, 50)
            results.append(apply_local(ir))
        time.sleep(0.2)
    print(f"\n6 backend swaps ({[r.swaps for r in results]}): requests {load.total}: "
          f"{dict(load.statuses)} {dict(load.models)}")
    assert load.errors == [] and dict(load.statuses) == {"200": load.total}
    assert load.models[MINI] > 0 and load.models[NEW] > 0
    # The first one adds MINI's cluster before the routes use it: two swaps.
    assert results[0].swaps == 2 and all(r.swaps == 1 for r in results[1:])
    # Connections opened before each apply may still route to the cluster it dropped.
    live = read_local()
    assert live.drift == ()
    assert results[-1].lingering == live.lingering
    assert live.lingering and all(c.endswith(MINI) for c in live.lingering), live.lingering
    assert "stay while connections opened before this apply drain" in results[-1].summary()


def test_lingering_clusters_go_once_old_connections_drained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAYCTL_STATE_DIR", str(tmp_path / "state"))
    result = up(QUICKSTART, listener_port=free_port(), admin_port=free_port(), drain_time_s=1)
    try:
        ir = load_ir(QUICKSTART)
        admin = AdminClient(result.ports.admin)
        with Load(result.ports.listener, threads=2) as load:
            first = apply_local(with_new_model(ir))
            assert first.swaps == 2
            assert first.lingering and all(c.endswith(NEW) for c in first.lingering)
            assert set(first.lingering) <= set(admin.served().clusters)
            deadline = time.monotonic() + 15
            while admin.counters(("listener_manager.total_filter_chains_draining",)).get(
                    "listener_manager.total_filter_chains_draining", 0) and \
                    time.monotonic() < deadline:
                time.sleep(0.1)
            again = apply_local(with_new_model(ir))  # same IR: only the cleanup is left
        assert again.changed and again.swaps == 1 and again.lingering == ()
        assert not set(first.lingering) & set(admin.served().clusters)
        assert read_local().drift == ()
        assert load.errors == [] and dict(load.statuses) == {"200": load.total}, load.statuses
    finally:
        down()


def test_keep_alive_clients_follow_an_apply(gateway: Gateway) -> None:
    apply_local(with_weights(gateway.ir, 100))
    conn = http.client.HTTPConnection("127.0.0.1", gateway.result.ports.listener, timeout=10)
    assert chat(conn) == (200, OLD)
    apply_local(with_weights(gateway.ir, 0))
    # The connection predates the apply: its next response says `connection: close` (Envoy
    # drains immediately), and the client's next connection gets the new routes.
    seen = [chat(conn) for _ in range(3)]
    assert seen[1:] == [(200, NEW), (200, NEW)], seen


def test_rejected_config_is_refused_and_the_old_one_keeps_serving(gateway: Gateway) -> None:
    apply_local(with_weights(gateway.ir, 90))
    before = ConfigDir(gateway.state.config_dir).read()
    # A PCRE habit RE2 does not have (lookahead), in an IR that never went through the manifest
    # checks (an edited plan, another tool): only Envoy can refuse it.
    lookahead = "(?i)ignore (?=all|previous) instructions"
    policy = dataclasses.replace(gateway.ir.routes[0].policy, deny_patterns=(lookahead,))
    with pytest.raises(EnvoyRejected) as err:
        apply_local(with_policy(with_weights(gateway.ir, 10), policy))
    assert err.value.message.startswith("Envoy rejects the rendered configuration: ")
    assert err.value.detail == "invalid perl operator: (?="
    assert err.value.message.endswith(": invalid perl operator: (?=")
    assert err.value.hint is not None and err.value.hint.startswith("nothing was changed")
    assert ConfigDir(gateway.state.config_dir).read() == before
    assert served_weights(gateway.result.ports.admin)  # still served
    live = read_local()
    assert live.drift == ()
    assert live.ir is not None and live.ir.routes[0].backends[0].weight == 90
    conn = http.client.HTTPConnection("127.0.0.1", gateway.result.ports.listener, timeout=10)
    codes = Counter(chat(conn)[0] for _ in range(20))
    assert codes == {200: 20}


def test_read_live_local_reflects_weights_and_shows_drift(gateway: Gateway) -> None:
    apply_local(with_weights(gateway.ir, 30))
    live = read_local()
    assert live.drift == ()
    assert live.served == live.expected
    assert sorted(live.served.routes[0].clusters, key=lambda c: c[1]) == sorted(
        live.expected.routes[0].clusters, key=lambda c: c[1])
    assert sorted(w for _, w in live.served.routes[0].clusters) == [30, 70]
    assert live.ir is not None and live.ir.routes[0].backends[0].weight == 30

    # Someone changes the recorded IR behind the gateway's back: drift shows.
    gateway.state.write_ir(with_weights(gateway.ir, 60))
    drift = read_local().drift
    assert len(drift) == 1 and drift[0].startswith("route "), drift
    assert "recorded" in drift[0] and "=60" in drift[0] and "=30" in drift[0]
    gateway.state.write_ir(with_weights(gateway.ir, 30))
    assert read_local().drift == ()


def test_apply_without_a_change_is_a_no_op(gateway: Gateway) -> None:
    apply_local(with_weights(gateway.ir, 50))
    again = apply_local(with_weights(gateway.ir, 50))
    assert not again.changed and again.swaps == 0
    assert again.summary() == "local gateway already serves this configuration; nothing to apply"


def test_apply_corrects_envoy_serving_other_than_its_files(gateway: Gateway) -> None:
    """The files already say what the manifests want, but Envoy never read them (edited in
    place, no `..data` swap): apply must make Envoy serve them, not call it a no-op."""
    apply_local(with_weights(gateway.ir, 20))
    wanted = with_weights(gateway.ir, 80)
    config = ConfigDir(gateway.state.config_dir)
    from gatewayctl.local.reload import render_for_running

    bundle = render_for_running(wanted)
    for kind, doc in (("lds", bundle.lds), ("cds", bundle.cds), ("rds", bundle.rds)):
        real = (gateway.state.config_dir / f"{kind}.json").resolve()
        real.write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n")
    assert config.read() == {"lds": bundle.lds, "cds": bundle.cds, "rds": bundle.rds}
    served = AdminClient(gateway.result.ports.admin).served()
    assert sorted(w for _, w in served.routes[0].clusters) == [20, 80]
    assert served.route(served.routes[0].name) is not None
    before = dict(served.routes[0].clusters)

    result = apply_local(wanted)

    assert result.changed, result.summary()
    after = dict(AdminClient(gateway.result.ports.admin).served().routes[0].clusters)
    assert after != before and read_local().drift == ()
