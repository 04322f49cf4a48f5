"""explain on a route with a response cache: whether the request would be looked up and stored."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from gatewayctl.cli import main
from gatewayctl.explain import ExplainRequest, explain_request
from gatewayctl.ir import GatewayIR
from gatewayctl.pipeline import compile_root
from tests.conftest import REPO

ROOT = REPO / "tests" / "golden" / "cases" / "policy-cache.yaml"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cache-root")
    shutil.copy(ROOT, folder / "gateway.yaml")
    return folder


@pytest.fixture(scope="module")
def ir(root: Path) -> GatewayIR:
    return compile_root(root).ir


def _explain(ir: GatewayIR, model: str, headers: dict[str, str] | None = None,
             consumer: str | None = "app") -> object:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()
    hdrs = tuple((headers or {}).items())
    return explain_request(ir, ExplainRequest(body, "/v1/chat/completions", hdrs, consumer)).cache


def test_cacheable_request_is_looked_up(ir: GatewayIR) -> None:
    cache = _explain(ir, "chat")
    assert cache is not None
    assert (cache.cacheable, cache.lookup, cache.shared, cache.ttl_s) == (True, True, False, 600)
    assert "this consumer's answers" in cache.reason


@pytest.mark.parametrize(
    ("headers", "cacheable", "lookup", "words"),
    [
        ({"Cache-Control": "no-store"}, False, False, "no-store"),
        ({"cache-control": "max-age=0, no-cache"}, True, False, "not looked up"),
    ],
)
def test_opt_out_headers(ir: GatewayIR, headers: dict[str, str], cacheable: bool, lookup: bool,
                         words: str) -> None:
    cache = _explain(ir, "chat", headers)
    assert cache is not None
    assert (cache.cacheable, cache.lookup) == (cacheable, lookup)
    assert words in cache.reason


def test_refused_request_and_route_without_cache(ir: GatewayIR) -> None:
    # an access list without the consumer: 403 before the cache
    chat = next(r for r in ir.routes if r.name == "chat")
    closed = dataclasses.replace(chat, policy=dataclasses.replace(
        chat.policy, allow_consumers=("someone-else",)))
    closed_ir = dataclasses.replace(ir, routes=tuple(
        closed if r.name == "chat" else r for r in ir.routes))
    refused = _explain(closed_ir, "chat")
    assert refused is not None and not refused.cacheable and "refused" in refused.reason
    assert _explain(ir, "plain") is None


def test_command_shows_the_cache(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                 ) -> None:
    request = tmp_path / "req.json"
    body = {"model": "chat", "messages": [{"role": "user", "content": "x"}]}
    request.write_text(json.dumps(body))
    assert main(["explain", str(root), "-r", str(request), "--consumer", "app", "-o", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out)[-1] == "cache" and out["cache"]["cacheable"] is True
    assert main(["explain", str(root), "-r", str(request), "--consumer", "app"]) == 0
    text = capsys.readouterr().out
    assert "cache:    cacheable (per consumer, TTL 600s): looked up" in text


def test_explain_says_where_the_cache_lives(root: Path, ir: GatewayIR, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    local = _explain(ir, "chat")
    assert local is not None and local.store.startswith("per Envoy worker")
    glob = tmp_path / "global"
    glob.mkdir()
    text = (root / "gateway.yaml").read_text().replace(
        "spec: {namespace: ai, replicas: {min: 1, max: 2}}",
        "spec: {namespace: ai, replicas: {min: 1, max: 2}, limits: {scope: global, "
        "redis: {address: redis.ai.svc:6379}, timeout: 50ms}}")
    (glob / "gateway.yaml").write_text(text)
    shared = _explain(compile_root(glob).ir, "chat")
    assert shared is not None
    assert shared.store == ("shared by every replica: Redis redis.ai.svc:6379 through the cache "
                            "store service gw-cache-store (a miss when it fails or takes longer "
                            "than 50 ms)")
    request = tmp_path / "req.json"
    body = {"model": "chat", "messages": [{"role": "user", "content": "x"}]}
    request.write_text(json.dumps(body))
    assert main(["explain", str(glob), "-r", str(request), "--consumer", "app", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["cache"]["store"] == shared.store
    assert main(["explain", str(glob), "-r", str(request), "--consumer", "app"]) == 0
    assert f"  store: {shared.store}" in capsys.readouterr().out
