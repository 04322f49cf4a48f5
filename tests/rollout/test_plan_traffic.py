"""`plan --traffic prometheus=URL`: a real Prometheus scraping a real Envoy (the local gateway on
examples/multi-team, the mock provider behind it) that served recorded traffic; the plan of a
change prices that traffic before and after, per route and per consumer, and names the budget
the change would exhaust."""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayctl.cli import main
from gatewayctl.local.gateway import UpResult
from tests.conftest import REPO
from tests.rollout.helpers import local_gateway
from tests.rollout.prom import Prometheus

pytestmark = [pytest.mark.envoy, pytest.mark.prometheus, pytest.mark.slow]

WINDOW_S = 600
MONTH = 30 * 86400 / WINDOW_S
PRICES = {"gpt-4o-2024-08-06": (2.5, 10.0), "gpt-4o-2024-11-20": (2.5, 10.0),
          "text-embedding-3-small": (0.02, 0.0)}


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, UpResult]]:
    root = tmp_path / "root"
    shutil.copytree(REPO / "examples" / "multi-team", root)
    with local_gateway(root, tmp_path / "state", monkeypatch) as result:
        yield root, result


def _key(root_state: Path, secret: str) -> str:
    return (root_state / "secrets" / secret / "key").read_text().strip()


def _call(result: UpResult, key: str, path: str, body: dict[str, object]) -> dict[str, object]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{result.ports.listener}{path}", data=json.dumps(body).encode(),
        method="POST", headers={"content-type": "application/json",
                                "authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback
        reply = json.loads(resp.read())
        reply["_model"] = resp.headers["x-gateway-model"]
        return reply


def test_plan_prices_measured_traffic(gateway: tuple[Path, UpResult], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    root, result = gateway
    state = tmp_path / "state"
    search, helpdesk = _key(state, "search-app-key"), _key(state, "helpdesk-key")
    recorded: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    with Prometheus(tmp_path / "prom", [f"127.0.0.1:{result.ports.admin}"]) as prom:
        prom.wait_for("count(envoy_server_live)", lambda v: v == 1)
        traffic = ([("search-app", search, "chat", "/v1/chat/completions",
                     {"model": "chat", "messages": [{"role": "user", "content": f"q {i}"}]})
                    for i in range(40)]
                   + [("helpdesk", helpdesk, "support", "/v1/chat/completions",
                       {"model": "support-assistant", "prompt_variables": {"product": "Acme"},
                        "messages": [{"role": "user", "content": f"where is parcel {i}?"}]})
                      for i in range(30)]
                   + [("search-app", search, "embeddings", "/v1/embeddings",
                       {"model": "text-embedding-3-small", "input": f"doc {i}"})
                      for i in range(20)])
        for consumer, key, route, path, body in traffic:
            reply = _call(result, key, path, body)
            usage = reply["usage"]
            cell = recorded[(consumer, route, str(reply["_model"]))]
            cell[0] += 1
            cell[1] += usage["prompt_tokens"]
            cell[2] += usage.get("completion_tokens", 0)
        prom.wait_for("sum(envoy_gatewayctl_consumer_requests)", lambda v: v == len(traffic))

        # The change: the canary to 50%, its price doubled, helpdesk's budget cut.
        changed = tmp_path / "changed"
        shutil.copytree(root, changed)
        rollout = changed / "rollouts.yaml"
        rollout.write_text(rollout.read_text().replace("step: 1 ", "step: 3 "))
        models = changed / "models.yaml"
        text = models.read_text()
        nov = text.index("name: gpt-4o-2024-11-20")
        models.write_text(text[:nov] + text[nov:].replace(
            "inputPerMillion: 2.50, outputPerMillion: 10.00",
            "inputPerMillion: 5.00, outputPerMillion: 20.00", 1))
        consumers = changed / "consumers.yaml"
        # Half of what helpdesk's measured traffic costs per month, so the cut budget runs
        # out mid-month whatever token counts the mock's replies carried.
        helpdesk_usd = sum((v[1] * PRICES[m][0] + v[2] * PRICES[m][1]) / 1e6
                           for (c, _, m), v in recorded.items() if c == "helpdesk") * MONTH
        budget = round(helpdesk_usd / 2, 2)
        consumers.write_text(consumers.read_text().replace("usdPerMonth: 2000",
                                                           f"usdPerMonth: {budget}"))
        code = main(["plan", str(changed), "--live", "local", "--traffic",
                     f"prometheus={prom.url}", "--window", "10m", "-o", "json"])
        out = json.loads(capsys.readouterr().out)
        assert code == 0, out
        report = out["traffic"]
        for fmt in ("text", "markdown"):
            assert main(["plan", str(changed), "--live", "local", "--traffic",
                         f"prometheus={prom.url}", "--window", "10m", "-o", fmt]) == 0
            shown = capsys.readouterr().out
            assert "Cost from measured traffic" in shown and "helpdesk" in shown

    routes = {r["name"]: r for r in report["routes"]}
    consumers_out = {c["name"]: c for c in report["consumers"]}
    # requests and tokens per month: exactly what was sent, scaled from the 10-minute window
    for route in ("chat", "support", "embeddings"):
        sent = [v for (c, r, m), v in recorded.items() if r == route]
        assert routes[route]["requests_per_month"] == pytest.approx(
            sum(v[0] for v in sent) * MONTH)
        assert routes[route]["prompt_tokens_per_month"] == pytest.approx(
            sum(v[1] for v in sent) * MONTH)
    assert routes["internal"]["requests_per_month"] == 0
    # before: the measured tokens at today's prices
    def cost(model: str, p: float, c: float, prices: dict[str, tuple[float, float]]) -> float:
        return (p * prices[model][0] + c * prices[model][1]) / 1e6
    before = sum(cost(m, v[1], v[2], PRICES) for (_, _, m), v in recorded.items()) * MONTH
    assert report["before_usd_per_month"] == pytest.approx(before, rel=1e-6)
    # after: chat split 50/50 with the canary at double the price; the rest unchanged
    chat = [v for (_, r, _), v in recorded.items() if r == "chat"]
    n, p, c = (sum(v[i] for v in chat) for i in range(3))
    new = dict(PRICES, **{"gpt-4o-2024-11-20": (5.0, 20.0)})
    chat_after = n * (0.5 * cost("gpt-4o-2024-08-06", p / n, c / n, new)
                      + 0.5 * cost("gpt-4o-2024-11-20", p / n, c / n, new)) * MONTH
    assert routes["chat"]["after_usd_per_month"] == pytest.approx(chat_after, rel=1e-6)
    assert routes["support"]["after_usd_per_month"] == pytest.approx(
        routes["support"]["before_usd_per_month"], rel=1e-9)
    assert routes["chat"]["after_usd_per_month"] > routes["chat"]["before_usd_per_month"]
    assert consumers_out["helpdesk"]["after_usd_per_month"] == pytest.approx(
        routes["support"]["after_usd_per_month"], rel=1e-9)
    # the budget cut: helpdesk's budget (half its monthly cost) runs out within the month
    budgets = {b["consumer"]: b for b in report["budgets"]}
    helpdesk_month = consumers_out["helpdesk"]["after_usd_per_month"]
    assert helpdesk_month == pytest.approx(helpdesk_usd, rel=1e-6)
    assert helpdesk_month > budget
    assert budgets["helpdesk"]["exhausted_by_change"]
    assert budgets["helpdesk"]["exhausted_on_day_after"] == max(
        1, -(-budget // (helpdesk_month / 30)))
    assert budgets["search-app"]["budget_after"] == 500
