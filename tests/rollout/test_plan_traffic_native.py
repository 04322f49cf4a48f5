"""`plan --traffic` over providers of every API (anthropic, bedrock, gemini, openai), served by
the local gateway's strict native mocks behind a real Envoy and scraped by a real Prometheus:
the counters hold the usage each provider reported in its own fields (translated by the data
plane: Anthropic's input_tokens plus cache reads and writes, Bedrock's inputTokens and
outputTokens, Gemini's promptTokenCount and candidatesTokenCount plus thoughts), streamed or
not; the plan prices exactly that usage before and after a change that moves a route from one
provider to another, in text, markdown and JSON, with the day the change exhausts a budget.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from gatewayctl.cli import main
from gatewayctl.local.gateway import UpResult
from gatewayctl.local.process import free_port
from tests.rollout.helpers import local_gateway
from tests.rollout.prom import Prometheus

pytestmark = [pytest.mark.envoy, pytest.mark.prometheus, pytest.mark.slow]

HEAD = "apiVersion: gatewayctl.dev/v1alpha1\n"
PROVIDERS = {
    "claude": "type: anthropic, endpoint: http://127.0.0.1:{port}, "
              "auth: {{secretRef: {{name: anthropic, key: api-key}}}}",
    "aws": "type: bedrock, endpoint: http://127.0.0.1:{port}, region: us-east-1, "
           "auth: {{secretRef: {{name: aws, key: credentials}}}}",
    "google": "type: gemini, endpoint: http://127.0.0.1:{port}",
    "openai": "type: openai, endpoint: http://127.0.0.1:{port}, "
              "auth: {{secretRef: {{name: openai, key: api-key}}}}",
}
# model: provider, upstream model, $ per million input, output
MODELS = {"sonnet": ("claude", "claude-sonnet-4-5", 3.0, 15.0),
          "nova": ("aws", "amazon.nova-pro-v1:0", 0.8, 3.2),
          "flash": ("google", "gemini-2.5-flash", 0.3, 2.5),
          "gpt": ("openai", "gpt-4o", 2.5, 10.0)}
# route: backends with weights
ROUTES = {"claude": [("sonnet", 100)], "bedrock": [("nova", 100)], "gemini": [("flash", 100)],
          "mix": [("flash", 50), ("gpt", 50)]}
WINDOW_S = 600
MONTH = 30 * 86400 / WINDOW_S


def _route_doc(name: str, backends: list[tuple[str, int]]) -> str:
    listed = ", ".join(f"{{model: {m}, weight: {w}}}" for m, w in backends)
    return (HEAD + f"kind: Route\nmetadata: {{name: {name}}}\n"
            f"spec: {{backends: [{listed}], policies: [keys]}}\n")


def write_root(root: Path, listener: int, routes: dict[str, list[tuple[str, int]]],
               budget: float) -> None:
    root.mkdir()
    closed = free_port()  # nothing listens there: `up` serves every provider from its mock
    docs = [HEAD + "kind: Gateway\nmetadata: {name: native}\nspec: {namespace: ai, "
            f"listener: {{port: {listener}}}}}\n"]
    docs += [HEAD + f"kind: Provider\nmetadata: {{name: {name}}}\nspec: {{"
             + spec.format(port=closed) + "}\n" for name, spec in PROVIDERS.items()]
    docs += [HEAD + f"kind: Model\nmetadata: {{name: {name}}}\nspec: {{provider: {provider}, "
             f'upstreamModel: "{upstream}", pricing: {{inputPerMillion: {pin}, '
             f"outputPerMillion: {pout}}}}}\n"
             for name, (provider, upstream, pin, pout) in MODELS.items()]
    docs += [HEAD + "kind: Policy\nmetadata: {name: keys}\nspec: {auth: {apiKeys: true}}\n"]
    docs += [HEAD + f"kind: Consumer\nmetadata: {{name: {name}}}\nspec: {{team: {name}, "
             f"apiKeySecretRef: {{name: {name}-key, key: key}}"
             + (f", budget: {{usdPerMonth: {budget}}}" if name == "analytics" else "") + "}\n"
             for name in ("analytics", "support")]
    docs += [_route_doc(name, backends) for name, backends in routes.items()]
    (root / "gateway.yaml").write_text("---\n".join(docs))


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, UpResult]]:
    root, listener = tmp_path / "root", free_port()
    write_root(root, listener, ROUTES, budget=1000)
    with local_gateway(root, tmp_path / "state", monkeypatch, listener) as result:
        yield root, result


def _price(model: str, prompt: float, completion: float, *,
           prices: dict[str, tuple[float, float]] | None = None) -> float:
    pin, pout = (prices or {}).get(model, MODELS[model][2:])
    return (prompt * pin + completion * pout) / 1e6


def test_plan_prices_each_providers_usage(served: tuple[Path, UpResult], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    root, result = served
    state = tmp_path / "state"
    keys = {c: (state / "secrets" / f"{c}-key" / "key").read_text().strip()
            for c in ("analytics", "support")}
    clients = {c: openai.OpenAI(base_url=f"http://127.0.0.1:{result.ports.listener}/v1",
                                api_key=k, max_retries=0) for c, k in keys.items()}
    # (consumer, route, answering model) -> requests, prompt tokens, completion tokens
    seen: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    with Prometheus(tmp_path / "prom", [f"127.0.0.1:{result.ports.admin}"]) as prom:
        prom.wait_for("count(envoy_server_live)", lambda v: v == 1)
        sent = 0
        for i in range(48):
            consumer = "analytics" if i % 3 else "support"
            route = list(ROUTES)[i % len(ROUTES)]
            # long enough prompts that Gemini reports cached tokens (1024 and more)
            text = f"request {i}: " + "measure this text " * (5 + 60 * (i % 5))
            messages = [{"role": "user", "content": text}]
            raw = clients[consumer].chat.completions.with_raw_response.create(
                model=route, messages=messages, stream=bool(i % 2),  # type: ignore[arg-type]
                **({"stream_options": {"include_usage": True}} if i % 2 else {}))
            answered = raw.headers["x-gateway-model"]
            if i % 2:
                chunks = list(raw.parse())  # type: ignore[arg-type]
                usage = next(ch.usage for ch in chunks if ch.usage is not None)
            else:
                usage = raw.parse().usage  # type: ignore[union-attr]
                assert usage is not None
            sent += 1
            cell = seen[(consumer, route, answered)]
            cell[0] += 1
            cell[1] += usage.prompt_tokens
            cell[2] += usage.completion_tokens
        prom.wait_for("sum(envoy_gatewayctl_consumer_requests)", lambda v: v == sent)
        measured_cost = prom.wait_for("sum(envoy_gatewayctl_consumer_cost_nano_usd)",
                                      lambda v: v > 0)

        # The change: `mix` moves from flash/gpt to sonnet alone; analytics' budget cut to
        # halfway between its monthly spend before and after (computed here from the usage
        # the clients received), so the change, and only the change, exhausts it.
        spend = [sum(_price("sonnet" if after and r == "mix" else m, v[1], v[2])
                     for (c, r, m), v in seen.items() if c == "analytics") * MONTH
                 for after in (False, True)]
        budget = round(sum(spend) / 2, 2)
        changed = tmp_path / "changed"
        write_root(changed, result.ports.listener, {**ROUTES, "mix": [("sonnet", 100)]},
                   budget=budget)
        reports = {}
        for fmt in ("json", "text", "markdown"):
            code = main(["plan", str(changed), "--live", "local", "--traffic",
                         f"prometheus={prom.url}", "--window", "10m", "-o", fmt])
            assert code == 0
            reports[fmt] = capsys.readouterr().out

    # every provider type answered and was counted under the model that answered
    assert {m for (_, _, m) in seen} == set(MODELS), seen
    report = json.loads(reports["json"])["traffic"]
    routes = {r["name"]: r for r in report["routes"]}
    consumers = {c["name"]: c for c in report["consumers"]}
    for route in ROUTES:
        cells = [v for (_, r, _), v in seen.items() if r == route]
        assert routes[route]["requests_per_month"] == pytest.approx(
            sum(v[0] for v in cells) * MONTH)
        assert routes[route]["prompt_tokens_per_month"] == pytest.approx(
            sum(v[1] for v in cells) * MONTH)
        assert routes[route]["completion_tokens_per_month"] == pytest.approx(
            sum(v[2] for v in cells) * MONTH)
        before = sum(_price(m, v[1], v[2]) for (_, r, m), v in seen.items() if r == route)
        assert routes[route]["before_usd_per_month"] == pytest.approx(before * MONTH, rel=1e-9)
    # the spend counter Envoy keeps (the budget alerts' figure) is the same usage at the prices
    total = sum(_price(m, v[1], v[2]) for (_, _, m), v in seen.items())
    assert measured_cost / 1e9 == pytest.approx(total, abs=1e-9 * len(seen) + 1e-6)
    assert report["before_usd_per_month"] == pytest.approx(total * MONTH, rel=1e-9)
    # after: mix's requests with their measured tokens per request, all at sonnet's prices
    mix = [v for (_, r, _), v in seen.items() if r == "mix"]
    n, p, c = (sum(v[i] for v in mix) for i in range(3))
    assert routes["mix"]["after_usd_per_month"] == pytest.approx(
        n * _price("sonnet", p / n, c / n) * MONTH, rel=1e-9)
    for route in ("claude", "bedrock", "gemini"):
        assert routes[route]["after_usd_per_month"] == pytest.approx(
            routes[route]["before_usd_per_month"], rel=1e-9)
    # the budget: analytics' monthly spend after the change against the cut, and the day it
    # runs out
    after = consumers["analytics"]["after_usd_per_month"]
    assert [consumers["analytics"]["before_usd_per_month"], after] == pytest.approx(spend)
    day = max(1, math.ceil(budget / (after / 30)))
    assert spend[0] < budget < after and day < 30
    line = next(b for b in report["budgets"] if b["consumer"] == "analytics")
    assert line["exhausted_by_change"] and line["exhausted_on_day_after"] == day
    assert line["budget_before"] == 1000 and line["budget_after"] == budget
    # text and markdown (the merge-request note) say the same figures
    text, markdown = reports["text"], reports["markdown"]
    print(text[text.index("Cost from measured traffic"):])
    assert re.search(rf"analytics: budget \${budget:,.2f}/month, .*EXHAUSTED on day {day} after "
                     r"this change \(before: it lasts the month\)", text), text
    assert f"**Budgets this change would exhaust:** analytics on day {day}" in markdown
    for shown in (text, markdown):
        assert f"${report['before_usd_per_month']:,.2f}" in shown
        assert f"${report['after_usd_per_month']:,.2f}" in shown
        assert f"${routes['mix']['after_usd_per_month']:,.2f}" in shown
    assert re.search(r"^\| mix \| .* \|$", markdown, re.M), markdown
