"""The compiled auth filter against the Lua one, request by request: the same gateway served
both ways (dataPlaneFilters lua and module) gets the same seeded random requests (key headers
in every spelling, valid, unknown, blank, repeated; bodies under and over the bounds; on a
gateway with JWT policies, tokens valid, expired, for another issuer or audience, signed by
another key, naming no consumer, with odd payloads, beside API keys or alone), and each must
answer the same: status, error body, and the consumer the access log names."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import http.client
import json
import random
import time
from pathlib import Path
from typing import Any

import pytest

from gatewayctl.ir import GatewayIR
from gatewayctl.local.mock_provider import MockProviderConfig, start_mock_provider
from gatewayctl.pipeline import compile_root
from tests.render import irs
from tests.render.conftest import needs_envoy
from tests.render.harness import (
    RunningEnvoy,
    irs_gateway,
    with_filters,
)

pytestmark = [needs_envoy, pytest.mark.envoy]

SEARCH, HELPDESK = irs.CONSUMER_KEYS["search-app"], irs.CONSUMER_KEYS["helpdesk"]
Request = tuple[str, list[tuple[str, str]], int]  # model, headers (repeats allowed), padding
KEY_VALUES = [SEARCH, HELPDESK, "nope", "", "   ", f" {SEARCH}\t", f"{SEARCH}x", HELPDESK.upper()]
AUTH_SCHEMES = ["Bearer ", "bearer ", "BEARER\t", "Bearer  ", "Basic ", "Bearer", "Bearerx ", ""]


def _closed(base: GatewayIR) -> GatewayIR:
    """Only the api-key route `keys` (search-app only): no route is open to anonymous
    clients, none to helpdesk, so the auth filter itself answers 401 and 403."""
    return dataclasses.replace(base, routes=(base.route("keys"),))


def _requests(seed: int, count: int) -> list[Request]:
    """(model, headers (repeats allowed), body padding) for each request."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        headers: list[tuple[str, str]] = []
        for _ in range(rng.randrange(0, 4)):
            name = rng.choice(["authorization", "x-api-key", "api-key"])
            value = rng.choice(KEY_VALUES)
            if name == "authorization":
                value = rng.choice(AUTH_SCHEMES) + value
            headers.append((name, value))
        padding = rng.choice([0, 0, 0, 2 * 1024 * 1024])  # over the 1 MiB bound of most
        out.append((rng.choice(["keys", "chat", "no-such-model"]), headers, padding))
    return out


def _send(envoy: RunningEnvoy, rid: str, model: str, headers: list[tuple[str, str]],
          padding: int) -> tuple[int, Any]:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "x" * padding}]})
    conn = http.client.HTTPConnection("127.0.0.1", envoy.listener_port, timeout=30)
    try:
        conn.putrequest("POST", "/v1/chat/completions")
        for name, value in [("content-type", "application/json"), ("x-request-id", rid),
                            ("content-length", str(len(body))), *headers]:
            conn.putheader(name, value)
        conn.endheaders()
        with contextlib.suppress(OSError):  # an early reply may close before the body is sent
            conn.send(body.encode())
        resp = conn.getresponse()
        data = resp.read()
        error = json.loads(data)["error"] if resp.status != 200 else None
        return resp.status, error
    finally:
        conn.close()


def _consumers(envoy: RunningEnvoy, count: int) -> dict[str, Any]:
    """The consumer the access log names for each request id, once the lines of all `count`
    requests (r0...) are there: the log holds the harness's own requests too, so a count of
    lines alone can come before the last request's line."""
    deadline = time.monotonic() + 10
    while True:
        lines = envoy.access_log_lines(expected=count, timeout_s=10)
        found = {line["request_id"]: (line.get("gateway") or {}).get("consumer")
                 for line in lines}
        if all(f"r{i}" in found for i in range(count)) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _served_both_ways(tmp_path: Path, ir: GatewayIR, keys: dict[str, str],
                      requests: list[Request], counted: dict[str, int] | None = None,
                      ) -> tuple[list[tuple[int, Any]], dict[str, Any]]:
    """Serve `ir` with the Lua filters, then with the module, send each the same requests and
    check they answer each the same (status, error body, the access log's consumer); the
    Lua's answers and consumers (by request id), for the corpus checks. `counted`: each of
    its Envoy counters is set to the smaller of the two gateways' values."""
    mock = start_mock_provider(config=MockProviderConfig(name="openai",
                                                         require_key=irs.OPENAI_KEY))
    answers: dict[str, list[tuple[int, Any]]] = {}
    consumers: dict[str, dict[str, Any]] = {}
    try:
        for filters in ("lua", "module"):
            with irs_gateway(tmp_path / filters, with_filters(ir, filters), mock.url,
                             keys=keys) as envoy:
                answers[filters] = [_send(envoy, f"r{i}", *request)
                                    for i, request in enumerate(requests)]
                consumers[filters] = _consumers(envoy, len(requests))
                for name in counted or {}:
                    value = envoy.stat(name)
                    assert counted is not None
                    counted[name] = value if filters == "lua" else min(counted[name], value)
    finally:
        mock.stop()
    for i, request in enumerate(requests):
        assert answers["module"][i] == answers["lua"][i], (request, answers["lua"][i])
        assert consumers["module"].get(f"r{i}") == consumers["lua"].get(f"r{i}"), request
    return answers["lua"], consumers["lua"]


@pytest.mark.parametrize("closed", [False, True], ids=["open-routes", "keys-only"])
def test_module_answers_as_the_lua_does(tmp_path: Path, closed: bool) -> None:
    base = irs.build_ir()
    ir = _closed(base) if closed else base
    answers, _ = _served_both_ways(tmp_path, ir, irs.CONSUMER_KEYS, _requests(21 + closed, 60))
    statuses = {status for status, _ in answers}
    # the corpus reaches every answer the auth filter can give (and some it lets through)
    assert {200, 401, 413} <= statuses, statuses
    if closed:
        assert 403 in statuses


# ---- gateways with JWT policies ---------------------------------------------------------------

ISSUER, OTHER_ISSUER, AUDIENCE = "https://login.example.test/", "https://idp.example.test/", "gw"
# helpdesk's key has two dots: jwt_authn tries it as a token (and the verdict filter runs)
TOKEN_KEYS = {"search-app": "sk-gw-search-0123", "helpdesk": "sk.gw.helpdesk-4567"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signed(key: Any, kid: str, payload: str) -> str:
    """A token over exactly these payload bytes (so escapes, repeats and odd claims can be
    written as they are), RS256."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    head = _b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": kid}).encode())
    body = _b64(payload.encode())
    signature = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{_b64(signature)}"


def _jwks(key: Any, kid: str) -> str:
    numbers = key.public_key().public_numbers()

    def b64int(n: int) -> str:
        return _b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))

    return json.dumps({"keys": [{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
                                 "n": b64int(numbers.n), "e": b64int(numbers.e)}]})


def _token_root(path: Path, jwks_a: str, jwks_b: str, open_route: bool,
                cached: bool = False) -> Path:
    """Routes: sso (issuer A, consumer in `sub`), sso-search (the same, team search only),
    mixed (API keys, or issuer B with the consumer in `azp`), keys (API keys only) and, when
    `open_route`, open (no auth: anonymous clients, and failed tokens, get through).
    `cached`: both issuers with jwt_authn's cache of verified tokens on."""
    path.mkdir(parents=True, exist_ok=True)
    cache = "        cache: {tokens: 100}\n" if cached else ""
    docs = [
        "kind: Gateway\nmetadata: {name: gw}\nspec: {namespace: gw}\n",
        "kind: Provider\nmetadata: {name: openai}\nspec:\n  type: openai\n"
        "  endpoint: https://api.openai.com\n"
        "  auth: {secretRef: {name: openai-credentials, key: api-key}}\n",
        "kind: Model\nmetadata: {name: gpt-4o}\nspec: {provider: openai}\n",
        "kind: Consumer\nmetadata: {name: search-app}\nspec:\n  team: search\n"
        "  apiKeySecretRef: {name: search-app-key, key: key}\n",
        "kind: Consumer\nmetadata: {name: helpdesk}\nspec:\n  team: support\n"
        "  apiKeySecretRef: {name: helpdesk-key, key: key}\n",
        "kind: Consumer\nmetadata: {name: billing-app}\nspec: {team: billing}\n",
        "kind: Policy\nmetadata: {name: sso}\nspec:\n  auth:\n    jwt:\n"
        f"      - issuer: {json.dumps(ISSUER)}\n        audiences: [{AUDIENCE}]\n"
        f"        jwks: {{inline: {json.dumps(jwks_a)}}}\n        consumerClaim: sub\n{cache}",
        "kind: Policy\nmetadata: {name: sso-or-key}\nspec:\n  auth:\n    apiKeys: true\n"
        "    jwt:\n"
        f"      - issuer: {json.dumps(OTHER_ISSUER)}\n        audiences: [{AUDIENCE}]\n"
        f"        jwks: {{inline: {json.dumps(jwks_b)}}}\n        consumerClaim: azp\n{cache}",
        "kind: Policy\nmetadata: {name: keys}\nspec:\n  auth: {apiKeys: true}\n",
        "kind: Policy\nmetadata: {name: search-only}\nspec:\n  allow: {teams: [search]}\n",
        *(f"kind: Route\nmetadata: {{name: {name}}}\nspec:\n"
          f"  backends: [{{model: gpt-4o, weight: 100}}]\n  policies: [{policies}]\n"
          for name, policies in [("sso", "sso"), ("sso-search", "sso, search-only"),
                                 ("mixed", "sso-or-key"), ("keys", "keys")]),
    ]
    if open_route:
        docs.append("kind: Route\nmetadata: {name: open}\nspec:\n"
                    "  backends: [{model: gpt-4o, weight: 100}]\n")
    head = "apiVersion: gatewayctl.dev/v1alpha1\n"
    (path / "gateway.yaml").write_text("---\n".join(head + d for d in docs))
    return path


def _credentials(key_a: Any, key_b: Any, stranger: Any) -> list[str]:
    """Bearer values: tokens of every kind the auth filter tells apart, keys, and non-tokens."""
    now = int(time.time())

    def claims(iss: str = ISSUER, aud: str = AUDIENCE, exp: int = 600, **more: Any) -> str:
        return json.dumps({"iss": iss, "aud": aud, "iat": now, "exp": now + exp, **more})

    def a(payload: str) -> str:
        return _signed(key_a, "a1", payload)

    good = claims()[:-1]  # the claims without their closing brace, to append raw members to
    return [
        *(a(claims(sub=sub)) for sub in ("search-app", "billing-app", "helpdesk", "nobody")),
        a(claims()),  # no consumer claim
        a(claims(sub=7)),  # not a string
        a(claims(sub=["search-app"])),
        a(claims(sub="")),
        a(good + ', "sub": "s\\u0065arch-app"}'),  # an escape in the name
        a(good + ', "s\\u0075b": "helpdesk"}'),  # an escape in the claim's name
        a(good + ', "ctx": {"sub": "nobody", "x": [1, {"y": "}]"}]}, "n": -1.5e3, '
                 '"ok": true, "none": null, "sub": "billing-app"}'),
        a(good + ', "sub": "search-app", "sub": 7}'),  # a repeated member
        a(good + ', "sub": 7, "sub": "helpdesk"}'),
        a(good + ', "sub": "bill\\u0000ing-app"}'),
        a(good + ', "sub": "search-app\\ud800"}'),
        a(good + ', "\\u00e9": "\\ud83d\\ude00", "sub": "helpdesk"}'),
        a(claims(sub="search-app", exp=-600)),  # expired
        a(claims(sub="search-app", aud="someone-else")),
        a(claims(sub="search-app", iss="https://evil.test/")),
        _signed(stranger, "a1", claims(sub="search-app")),  # signed by another key
        *(_signed(key_b, "b1", claims(iss=OTHER_ISSUER, azp=azp))
          for azp in ("search-app", "billing-app", "nobody")),
        _signed(key_b, "b1", claims(iss=OTHER_ISSUER, azp="helpdesk", exp=-600)),
        _signed(key_b, "b1", claims(iss=OTHER_ISSUER, sub="helpdesk")),  # no azp
        *TOKEN_KEYS.values(), "sk-unknown", "a.b.c", "a.b", "e30.e30.e30", "",
    ]


def _token_requests(seed: int, count: int, credentials: list[str]) -> list[Request]:
    """Every credential on every route once, then `count` random mixes (an API key beside a
    token, no credential, bodies over the bounds)."""
    models = ["sso", "sso-search", "mixed", "keys", "open", "no-such-model"]
    out = [(model, [("authorization", "Bearer " + value)], 0)
           for value in credentials for model in models]
    rng = random.Random(seed)
    for _ in range(count):
        headers: list[tuple[str, str]] = []
        if rng.random() < 0.85:
            headers.append(("authorization", "Bearer " + rng.choice(credentials)))
        if rng.random() < 0.2:
            headers.append(("x-api-key", rng.choice([*TOKEN_KEYS.values(), "sk-unknown"])))
        if rng.random() < 0.1:  # a second Authorization value: the two are read together
            headers.append(("authorization", "Bearer " + rng.choice(credentials)))
        padding = rng.choice([0, 0, 0, 0, 2 * 1024 * 1024])
        out.append((rng.choice(models), headers, padding))
    return out


@pytest.mark.parametrize(("open_route", "cached"), [(True, False), (False, False), (True, True)],
                         ids=["open-route", "closed", "open-route-token-cache"])
def test_module_answers_tokens_as_the_lua_does(tmp_path: Path, open_route: bool,
                                               cached: bool) -> None:
    """`open-route-token-cache`: both issuers cache verified tokens; every credential is sent
    on every route, so most good tokens are answered from jwt_authn's cache."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    key_a, key_b, stranger = (rsa.generate_private_key(public_exponent=65537, key_size=2048)
                              for _ in range(3))
    root = _token_root(tmp_path / "root", _jwks(key_a, "a1"), _jwks(key_b, "b1"), open_route,
                       cached)
    ir = compile_root(root).ir
    assert all((p.token_cache is not None) == cached for p in ir.jwt_providers())
    requests = _token_requests(7 + open_route, 80, _credentials(key_a, key_b, stranger))
    hits = "http.gateway.jwt_authn.jwt_cache_hit"
    counted = {hits: 0}
    answers, consumers = _served_both_ways(tmp_path, ir, TOKEN_KEYS, requests, counted)
    # with the cache on, both gateways answered good tokens from it (and only then)
    assert (counted[hits] >= 50) == cached, counted
    codes = {error["code"] for _, error in answers if error is not None}
    named = {c for c in consumers.values() if c}
    # the corpus reaches every token outcome, through the auth filter or the body filter
    assert {"token_expired", "invalid_token", "consumer_not_allowed"} <= codes, codes
    assert {"search-app", "billing-app", "helpdesk"} <= named, named
