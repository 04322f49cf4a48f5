"""explain's 429 decisions against a real Envoy (replica scope): before each request, explain is
told what the consumer's bucket already holds (`used`: the requests sent, or the tokens the
responses used) and predicts the status; the request then goes to Envoy, whose answer must be
the same, `x-gateway-limit` included. Global scope and enforced budgets: tests/limits."""

from __future__ import annotations

import json

from gatewayctl.explain import ExplainRequest, explain_request
from tests.render import irs
from tests.render.conftest import Gateway


def _predict(gateway: Gateway, route: str, kind: str, used: float,
             text: str = "hello") -> tuple[int, str | None]:
    body = json.dumps({"model": route, "messages": [{"role": "user", "content": text}]})
    exp = explain_request(gateway.ir, ExplainRequest(
        body.encode(), consumer="search-app", used=((kind, used),)))
    (limit,) = [lim for lim in exp.limits if lim.kind == kind]
    assert limit.scope == "replica" and limit.effective == limit.amount * gateway.ir.replicas_max
    header = kind if exp.status == 429 else None
    return exp.status, header


def test_request_limit_429_as_explain_predicts(gateway: Gateway) -> None:
    key = {"x-api-key": irs.CONSUMER_KEYS["search-app"]}
    predicted, served = [], []
    for sent in range(5):  # the limit is 3 per hour for each consumer
        predicted.append(_predict(gateway, "limited", "requests", sent))
        resp = gateway.envoy.chat("limited", headers=key)
        served.append((resp.status, resp.headers.get("x-gateway-limit")))
    assert served == predicted
    assert served == [(200, None)] * 3 + [(429, "requests")] * 2


def test_token_limit_429_as_explain_predicts(gateway: Gateway) -> None:
    key = {"x-api-key": irs.CONSUMER_KEYS["search-app"]}
    predicted, served = [], []
    used = 0  # the tokens the consumer's responses used: what its bucket holds
    text = "count these tokens " * 5  # ~40 tokens a request with the mock's answer
    for _ in range(5):  # the limit is 100 tokens per hour for each consumer
        predicted.append(_predict(gateway, "tokens", "tokens", used, text))
        # one keep-alive connection: one Envoy worker, which charges a response's usage at
        # its next request (replica scope; a client on several connections can be a request
        # late, as docs/explain-and-test.md says)
        resp = gateway.envoy.request("POST", "/v1/chat/completions", {
            "model": "tokens", "messages": [{"role": "user", "content": text}]},
            key, keep_alive=True)
        served.append((resp.status, resp.headers.get("x-gateway-limit")))
        if resp.status == 200:
            usage = resp.json()["usage"]
            used += usage["prompt_tokens"] + usage["completion_tokens"]
    assert served == predicted
    # both outcomes were checked: admitted while the bucket had room, then refused
    assert served[:2] == [(200, None)] * 2 and served[-1] == (429, "tokens"), served
