"""Per-consumer counters on a real Envoy: successful responses and their tokens, by consumer,
route and the model that answered, and their cost (what `plan --traffic` prices per route and
per consumer, and the budget alerts sum)."""

from __future__ import annotations

import re

from tests.render import irs
from tests.render.conftest import Gateway

LABELS = re.compile(r'(\w+)="([^"]*)"')
Key = tuple[str, frozenset[tuple[str, str]]]


def _prometheus(gateway: Gateway) -> dict[Key, float]:
    """Series -> value, a series being its name and its labels (in any order)."""
    out = {}
    for line in gateway.envoy.admin("/stats/prometheus").splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            name, _, labels = series.partition("{")
            out[(name, frozenset(LABELS.findall(labels)))] = float(value)
    return out


def _get(stats: dict[Key, float], kind: str, consumer: str, route: str, model: str) -> float:
    labels = frozenset({("consumer", consumer), ("route", route), ("model", model)})
    return stats.get((f"envoy_gatewayctl_consumer_{kind}", labels), 0.0)


def test_consumer_counters(gateway: Gateway) -> None:
    key = {"authorization": f"Bearer {irs.CONSUMER_KEYS['search-app']}"}
    before = _prometheus(gateway)
    # The mock's usage: ceil(chars / 4). "count these tokens" (18 chars) = 5 prompt tokens;
    # "[mock:gpt-4o-2024-08-06] count these tokens" (43 chars) = 11 completion tokens.
    for _ in range(2):
        assert gateway.envoy.chat("keys", "count these tokens", headers=key).status == 200
    # anonymous on an open route; and a fallback answer counts for the model that answered
    assert gateway.envoy.chat("down", "count these tokens").status == 200
    # not counted: refused (403 for helpdesk on `keys`), unknown model
    helpdesk = {"authorization": f"Bearer {irs.CONSUMER_KEYS['helpdesk']}"}
    assert gateway.envoy.chat("keys", "count these tokens", headers=helpdesk).status == 403
    assert gateway.envoy.chat("no-such-model", "x", headers=key).status == 404
    after = _prometheus(gateway)

    def grew(kind: str, consumer: str, route: str, model: str) -> float:
        return (_get(after, kind, consumer, route, model)
                - _get(before, kind, consumer, route, model))

    model = "gpt-4o-2024-08-06"
    assert grew("requests", "search-app", "keys", model) == 2
    assert grew("prompt_tokens", "search-app", "keys", model) == 10
    assert grew("completion_tokens", "search-app", "keys", model) == 22
    # the spend the budget alerts read, at the model's prices ($2.50 / $10 per million):
    # 10 x 2.5 + 22 x 10 = 245 micro-USD
    assert grew("cost_nano_usd", "search-app", "keys", model) == 245_000
    assert grew("requests", "anonymous", "down", model) == 1
    assert grew("requests", "helpdesk", "keys", model) == 0
    name = "envoy_gatewayctl_consumer_requests"
    assert sum(v for k, v in after.items() if k[0] == name) \
        - sum(v for k, v in before.items() if k[0] == name) == 3
