"""The response cache on a real Envoy (one worker): hits without upstream calls, streams
replayed as streams, consumers kept apart, TTL, the byte bound, opt-outs, errors, the
header, the access log and the counters."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from tests.cache.conftest import CacheGateway
from tests.render import irs
from tests.render.harness import Response

SEARCH = {"authorization": f"Bearer {irs.CONSUMER_KEYS['search-app']}"}
HELPDESK = {"authorization": f"Bearer {irs.CONSUMER_KEYS['helpdesk']}"}


def unique(text: str = "question") -> str:
    """A message no earlier test sent: each test starts from an empty entry."""
    return f"{text} {uuid.uuid4().hex}"


def ask(gw: CacheGateway, model: str, text: str, headers: dict[str, str] | None = None,
        **extra: Any) -> Response:
    return gw.envoy.chat(model, text, headers=headers, **extra)


def test_repeated_request_is_served_from_the_cache(gateway: CacheGateway) -> None:
    text = unique()
    before = gateway.upstream_calls()
    first = ask(gateway, "cached", text, SEARCH)
    assert first.status == 200
    assert first.headers["x-gateway-cache"] == "miss"
    assert gateway.upstream_calls() == before + 1
    second = ask(gateway, "cached", text, SEARCH)
    assert second.status == 200
    assert second.headers["x-gateway-cache"] == "hit"
    assert second.body == first.body
    assert second.headers["content-type"] == first.headers["content-type"]
    assert second.headers["x-gateway-model"] == "gpt-4o-2024-08-06"
    assert second.headers["x-gateway-route"] == "cached"
    assert gateway.upstream_calls() == before + 1  # no second upstream call


def test_stream_is_replayed_as_the_same_stream(gateway: CacheGateway) -> None:
    text = unique("stream")
    extra = {"stream": True, "stream_options": {"include_usage": True}}
    before = gateway.upstream_calls()
    first = ask(gateway, "cached", text, SEARCH, **extra)
    assert first.status == 200
    assert first.headers["content-type"].startswith("text/event-stream")
    assert first.headers["x-gateway-cache"] == "miss"
    events = [e for e in first.body.decode().split("\n\n") if e.strip()]
    assert len(events) > 2 and events[-1].strip() == "data: [DONE]"
    second = ask(gateway, "cached", text, SEARCH, **extra)
    assert second.headers["x-gateway-cache"] == "hit"
    assert second.headers["content-type"].startswith("text/event-stream")
    assert second.body == first.body  # the same events, byte for byte
    assert gateway.upstream_calls() == before + 1
    # the same question without `stream` is another request: its answer is JSON
    whole = ask(gateway, "cached", text, SEARCH)
    assert whole.headers["x-gateway-cache"] == "miss"
    assert whole.headers["content-type"].startswith("application/json")
    assert gateway.upstream_calls() == before + 2


def test_no_hit_across_consumers(gateway: CacheGateway) -> None:
    text = unique()
    before = gateway.upstream_calls()
    assert ask(gateway, "cached", text, SEARCH).headers["x-gateway-cache"] == "miss"
    other = ask(gateway, "cached", text, HELPDESK)
    assert other.status == 200
    assert other.headers["x-gateway-cache"] == "miss"
    assert gateway.upstream_calls() == before + 2
    assert ask(gateway, "cached", text, SEARCH).headers["x-gateway-cache"] == "hit"
    assert ask(gateway, "cached", text, HELPDESK).headers["x-gateway-cache"] == "hit"
    assert gateway.upstream_calls() == before + 2


def test_shared_cache_hits_across_consumers(gateway: CacheGateway) -> None:
    text = unique()
    before = gateway.upstream_calls()
    first = ask(gateway, "shared", text, SEARCH)
    assert first.headers["x-gateway-cache"] == "miss"
    other = ask(gateway, "shared", text, HELPDESK)
    assert other.headers["x-gateway-cache"] == "hit"
    assert other.body == first.body
    assert gateway.upstream_calls() == before + 1
    # a shared cache still requires a valid key: the cache runs after authentication
    assert ask(gateway, "shared", text).status == 401


def test_entry_expires_after_its_ttl(gateway: CacheGateway) -> None:
    text = unique()
    # start early in a second: the TTL is counted in whole seconds (os.time)
    time.sleep(1 - time.time() % 1 + 0.02)
    before = gateway.upstream_calls()
    assert ask(gateway, "short", text).headers["x-gateway-cache"] == "miss"
    assert ask(gateway, "short", text).headers["x-gateway-cache"] == "hit"
    time.sleep(2.1)
    assert ask(gateway, "short", text).headers["x-gateway-cache"] == "miss"
    assert gateway.upstream_calls() == before + 2


def test_byte_bound_evicts_the_least_recently_used(gateway: CacheGateway) -> None:
    a, b, c = unique("a"), unique("b"), unique("c")
    assert ask(gateway, "small", a).headers["x-gateway-cache"] == "miss"
    assert ask(gateway, "small", b).headers["x-gateway-cache"] == "miss"
    assert ask(gateway, "small", a).headers["x-gateway-cache"] == "hit"  # a is now the newest
    before = gateway.upstream_calls()
    assert ask(gateway, "small", c).headers["x-gateway-cache"] == "miss"  # evicts b
    assert ask(gateway, "small", a).headers["x-gateway-cache"] == "hit"
    assert ask(gateway, "small", c).headers["x-gateway-cache"] == "hit"
    assert ask(gateway, "small", b).headers["x-gateway-cache"] == "miss"
    assert gateway.upstream_calls() == before + 2


def test_no_store_bypasses_and_no_cache_refreshes(gateway: CacheGateway) -> None:
    text = unique()
    before = gateway.upstream_calls()
    for _ in range(2):
        resp = ask(gateway, "cached", text, {**SEARCH, "cache-control": "no-store"})
        assert resp.status == 200
        assert resp.headers["x-gateway-cache"] == "bypass"
    assert gateway.upstream_calls() == before + 2
    # nothing was stored by them
    assert ask(gateway, "cached", text, SEARCH).headers["x-gateway-cache"] == "miss"
    # no-cache: not served from the cache, but the fresh answer is stored
    fresh = ask(gateway, "cached", text, {**SEARCH, "cache-control": "no-cache"})
    assert fresh.headers["x-gateway-cache"] == "miss"
    assert gateway.upstream_calls() == before + 4
    assert ask(gateway, "cached", text, SEARCH).headers["x-gateway-cache"] == "hit"
    assert gateway.upstream_calls() == before + 4


def test_on_request_mode_needs_the_header(gateway: CacheGateway) -> None:
    text = unique()
    before = gateway.upstream_calls()
    assert ask(gateway, "onrequest", text).headers["x-gateway-cache"] == "bypass"
    assert ask(gateway, "onrequest", text).headers["x-gateway-cache"] == "bypass"
    use = {"x-gateway-cache": "use"}
    assert ask(gateway, "onrequest", text, use).headers["x-gateway-cache"] == "miss"
    assert ask(gateway, "onrequest", text, use).headers["x-gateway-cache"] == "hit"
    assert gateway.upstream_calls() == before + 3
    # the gateway's own request header does not reach the provider
    assert "x-gateway-cache" not in gateway.openai.requests()[-1]["headers"]


def test_error_reply_is_not_cached(gateway: CacheGateway) -> None:
    text = unique()
    before = gateway.upstream_calls()
    for _ in range(2):
        resp = ask(gateway, "failing", text)
        assert resp.status == 503
        assert resp.headers["x-gateway-cache"] == "miss"
    assert gateway.upstream_calls() == before + 2


def test_key_is_the_normalised_body(gateway: CacheGateway) -> None:
    text = unique()
    first = ask(gateway, "cached", text, SEARCH, temperature=0, max_tokens=50)
    assert first.headers["x-gateway-cache"] == "miss"
    # the same request with its members in another order and other whitespace
    raw = json.dumps(
        {"max_tokens": 50, "messages": [{"content": text, "role": "user"}],
         "temperature": 0, "model": "cached"},
        indent=2,
    ).encode()
    again = gateway.envoy.request("POST", "/v1/chat/completions", raw=raw, headers=SEARCH)
    assert again.headers["x-gateway-cache"] == "hit"
    # another parameter value is another request
    other = ask(gateway, "cached", text, SEARCH, temperature=1, max_tokens=50)
    assert other.headers["x-gateway-cache"] == "miss"


def test_key_is_taken_after_the_prompt_is_rendered(gateway: CacheGateway) -> None:
    text = unique()
    acme = {"prompt_variables": {"product": "Acme"}}
    assert ask(gateway, "cached-assistant", text, **acme).headers["x-gateway-cache"] == "miss"
    assert ask(gateway, "cached-assistant", text, **acme).headers["x-gateway-cache"] == "hit"
    globex = {"prompt_variables": {"product": "Globex"}}
    resp = ask(gateway, "cached-assistant", text, **globex)
    assert resp.headers["x-gateway-cache"] == "miss"
    sent = gateway.openai.requests()[-1]["body"]["messages"][0]["content"]
    assert "Globex" in sent
    hit = ask(gateway, "cached-assistant", text, **globex)
    assert hit.headers["x-gateway-cache"] == "hit"
    assert hit.headers["x-gateway-prompt-version"] == "3"


def test_hits_count_against_request_limits(gateway: CacheGateway) -> None:
    text = unique()
    statuses = [ask(gateway, "limited", text, HELPDESK) for _ in range(4)]
    assert [r.headers.get("x-gateway-cache") for r in statuses[:3]] == ["miss", "hit", "hit"]
    assert statuses[3].status == 429
    assert statuses[3].headers["x-gateway-limit"] == "requests"


def test_hit_is_logged_with_the_cost_saved_and_counted(gateway: CacheGateway) -> None:
    text = unique("logged")
    time.sleep(0.3)  # earlier requests' lines are flushed (every 50 ms)
    logged = len(gateway.envoy.access_log_lines(0))
    miss = ask(gateway, "cached", text, SEARCH, temperature=0.5)
    assert miss.headers["x-gateway-cache"] == "miss"
    hit = ask(gateway, "cached", text, SEARCH, temperature=0.5)
    assert hit.headers["x-gateway-cache"] == "hit"
    # one worker, one request at a time: the log's last two lines are these requests'
    lines = gateway.envoy.access_log_lines(logged + 2)[logged:]
    assert len(lines) == 2
    first, second = lines
    assert first["gateway"]["cache"] == "miss"
    assert first["gateway"]["cost_usd"] > 0
    saved = second["gateway"]
    assert saved["cache"] == "hit"
    assert saved["cost_saved_usd"] == first["gateway"]["cost_usd"]
    # a hit uses and is charged no tokens: no usage, no cost
    for key in ("prompt_tokens", "completion_tokens", "cost_usd"):
        assert key not in saved
    assert second["attempts"] in (0, None) and second["upstream_host"] is None
    metrics = ""
    deadline = time.monotonic() + 5
    hit_line = 'envoy_gatewayctl_cache_requests{route="cached",result="hit"}'
    while time.monotonic() < deadline:
        metrics = gateway.envoy.admin("/stats/prometheus")
        if hit_line in metrics:
            break
        time.sleep(0.1)
    counts = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines() if line.startswith("envoy_gatewayctl_cache_")
    }
    assert counts[hit_line] >= 1
    assert counts['envoy_gatewayctl_cache_requests{route="cached",result="miss"}'] >= 1
    assert counts['envoy_gatewayctl_cache_cost_saved_nano_usd{route="cached"}'] >= round(
        saved["cost_saved_usd"] * 1e9
    )
