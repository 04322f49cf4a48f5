"""End to end with real components: the local gateway (a real Envoy) with the mock provider,
a real Prometheus scraping Envoy's `/stats/prometheus`, bounded traffic, then `rollout advance`.

A canary failing 20% of its requests is aborted and gets 0% in the running Envoy; a healthy
canary is promoted to the next step. The figures each run saw are printed (pytest -s).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayctl.local.gateway import UpResult
from gatewayctl.local.reload import read_local
from tests.rollout.helpers import BASE, changed, cli, git, init_git, local_gateway
from tests.rollout.prom import Prometheus

pytestmark = [pytest.mark.envoy, pytest.mark.prometheus, pytest.mark.slow]

STABLE, CANARY = "gpt-4o-2024-08-06", "gpt-4o-2024-11-20"
STABLE_CLUSTER, CANARY_CLUSTER = f"r_chat_{STABLE}", f"r_chat_{CANARY}"
REQUESTS = 400

ROLLOUT = """\
# Canary of the chat route to the November model.
apiVersion: gatewayctl.dev/v1alpha1
kind: Rollout
metadata:
  name: chat-nov
spec:
  route: chat
  stable: gpt-4o-2024-08-06
  canary: gpt-4o-2024-11-20
  steps: [{weight: 50, pause: 1s}, {weight: 100}]
  step: 1          # 50%
  state: progressing
  analysis:
    window: 2m
    minRequests: 50
    metrics:
      - {name: error-rate, max: 0.05}
      - {name: latency-p95, max: 2s}
      - {name: cost-per-request, maxIncrease: 20%}
      - {name: tokens-per-request, max: 100}
      - name: retried-attempts          # a custom PromQL metric
        query: >-
          sum(increase(envoy_cluster_upstream_rq_retry
          {envoy_cluster_name="{{ backend }}"}[{{ window }}]))
        max: 5
"""


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, UpResult]]:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "gateway.yaml").write_text(BASE, encoding="utf-8")
    (root / "rollout.yaml").write_text(ROLLOUT, encoding="utf-8")
    init_git(root)
    with local_gateway(root, tmp_path / "state", monkeypatch) as result:
        yield root, result


def set_canary_faults(result: UpResult, error_rate: float) -> None:
    doc = {"models": {CANARY: {"error_rate": error_rate, "error_status": 503}}}
    req = urllib.request.Request(f"http://127.0.0.1:{result.ports.mock}/_mock/config",
                                 data=json.dumps(doc).encode(), method="PUT",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
        assert resp.status == 200


def send(result: UpResult, count: int, headers: dict[str, str] | None = None) -> Counter[str]:
    """`count` chat completions, one at a time; counts "<model> <status>"."""
    seen: Counter[str] = Counter()
    url = f"http://127.0.0.1:{result.ports.listener}/v1/chat/completions"
    for i in range(count):
        body = json.dumps({"model": "chat",
                           "messages": [{"role": "user", "content": f"question {i}"}]})
        req = urllib.request.Request(url, data=body.encode(), method="POST",
                                     headers={"content-type": "application/json",
                                              **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
                seen[f"{resp.headers['x-gateway-model']} {resp.status}"] += 1
        except urllib.error.HTTPError as err:
            seen[f"{err.headers.get('x-gateway-model')} {err.code}"] += 1
    return seen


def observe(prom: Prometheus, result: UpResult, count: int, earlier: int = 0) -> dict[str, float]:
    """Send `count` requests once Prometheus scrapes Envoy, and wait until it saw all of them
    (responses and latency histograms, which Envoy publishes at each 5 s stats flush) and the
    `earlier` ones."""
    match = f'envoy_cluster_name=~"{STABLE_CLUSTER}|{CANARY_CLUSTER}"'
    prom.wait_for(f'count(envoy_cluster_upstream_rq_completed{{{match}}})', lambda v: v == 2)
    started = time.monotonic()
    seen = send(result, count)
    sent_s = time.monotonic() - started
    total = count + earlier
    prom.wait_for(f"sum(envoy_cluster_upstream_rq_xx{{{match}}})", lambda v: v == total)
    prom.wait_for(f"sum(envoy_cluster_upstream_rq_time_count{{{match}}})",
                  lambda v: v == total)
    print(f"\ntraffic: {dict(seen)} in {sent_s:.2f}s; all of it in Prometheus after "
          f"{time.monotonic() - started:.1f}s")
    return {key: float(n) for key, n in seen.items()}


def served_weights() -> dict[str, int]:
    route = read_local().served.route("chat")
    assert route is not None
    return dict(route.clusters)


def test_a_failing_canary_is_aborted_and_gets_no_traffic(
        gateway: tuple[Path, UpResult], tmp_path: Path) -> None:
    root, result = gateway
    set_canary_faults(result, 0.2)
    runner = cli()
    t0 = time.monotonic()
    with Prometheus(tmp_path / "prom", [f"127.0.0.1:{result.ports.admin}"]) as prom:
        seen = observe(prom, result, REQUESTS)
        canary_errors = seen.get(f"{CANARY} 503", 0)
        canary_total = canary_errors + seen.get(f"{CANARY} 200", 0)
        assert canary_total > 100 and canary_errors / canary_total == pytest.approx(0.2, abs=0.02)
        assert seen.get(f"{STABLE} 200", 0) == REQUESTS - canary_total

        before = (root / "rollout.yaml").read_text()
        run = runner.invoke(["rollout", "advance", "chat-nov", "--root", str(root),
                                  "--prometheus", prom.url, "--commit", "--apply",
                                  "--live", "local"])
    print(run.stdout)
    assert run.exit_code == 2, run.stdout + run.stderr
    assert "FAIL          error-rate" in run.stdout
    assert "decision: abort: analysis failed: error-rate" in run.stdout
    after = (root / "rollout.yaml").read_text()
    assert changed(before, after) == (["  state: progressing\n"], ["  state: aborted\n"])
    assert git(root, "log", "-1", "--format=%s") == (
        "rollout chat-nov: abort at step 1/2 (canary 0%)")
    assert git(root, "status", "--porcelain") == ""

    # The running Envoy: the canary's weight is 0 and every request goes to the stable.
    assert served_weights().get(CANARY_CLUSTER, 0) == 0
    assert send(result, 50) == Counter({f"{STABLE} 200": 50})
    status = runner.invoke(["rollout", "status", "chat-nov", "--root", str(root),
                                 "--live", "local"])
    assert status.exit_code == 0, status.stderr
    assert f"  live:   {STABLE} 100%" in status.stdout
    assert "last analysis: FAIL" in status.stdout
    print(f"abort end to end: {time.monotonic() - t0:.1f}s")


def test_a_healthy_canary_is_promoted_to_the_next_step(
        gateway: tuple[Path, UpResult], tmp_path: Path) -> None:
    root, result = gateway
    set_canary_faults(result, 0.0)
    runner = cli()
    t0 = time.monotonic()
    # The canary header reaches the canary whatever the weights say.
    assert send(result, 20, {"x-gateway-canary": "always"}) == Counter({f"{CANARY} 200": 20})
    with Prometheus(tmp_path / "prom", [f"127.0.0.1:{result.ports.admin}"]) as prom:
        observe(prom, result, REQUESTS, earlier=20)  # takes longer than the step's 1s pause
        before = (root / "rollout.yaml").read_text()
        run = runner.invoke(["rollout", "advance", "chat-nov", "--root", str(root),
                                  "--prometheus", prom.url, "--commit", "--apply",
                                  "--live", "local"])
    print(run.stdout)
    assert run.exit_code == 0, run.stdout + run.stderr
    assert "PASS          error-rate" in run.stdout
    assert "PASS          latency-p95" in run.stdout
    assert "PASS          retried-attempts" in run.stdout
    assert "PASS          cost-per-request" in run.stdout
    assert "PASS          tokens-per-request" in run.stdout
    assert "decision: promote" in run.stdout
    after = (root / "rollout.yaml").read_text()
    removed, added = changed(before, after)
    assert removed == ["  step: 1          # 50%\n"]
    assert added[-1] == "  step: 2          # 50%\n"
    assert added[0] == "  annotations:\n"
    assert added[1].startswith('    gatewayctl.dev/step-started-at: "')

    # Step 2 gives the canary 100% in the running Envoy.
    assert served_weights().get(CANARY_CLUSTER) == 100
    assert send(result, 30) == Counter({f"{CANARY} 200": 30})
    print(f"promote end to end: {time.monotonic() - t0:.1f}s")
