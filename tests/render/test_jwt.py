"""JWT consumers through a real Envoy: tokens signed with generated keys, verified by Envoy's
jwt_authn, mapped to Consumers by the auth filter; access lists and errors as for API keys;
keys from a URL (through its own cluster) and inline keys rotated by apply."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("jwt")
pytest.importorskip("cryptography")

import jwt  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from gatewayctl.local.mock_provider import MockProviderConfig, start_mock_provider  # noqa: E402
from gatewayctl.pipeline import compile_root  # noqa: E402
from gatewayctl.render.envoy import EnvoyOptions, render_envoy  # noqa: E402
from tests.render.conftest import needs_envoy  # noqa: E402
from tests.render.harness import (  # noqa: E402
    FILTERS,
    RunningEnvoy,
    loopback_options,
    publish,
    require_filters,
    running_envoy,
    with_filters,
    write_secrets,
)

pytestmark = [needs_envoy, pytest.mark.envoy]

ISSUER = "https://login.example.test/"
URL_ISSUER = "https://idp.example.test/"
# Issuers whose verified tokens jwt_authn caches (`cache: {tokens: N}`), with the default clock
# skew (60s) and with 1s.
CACHED_ISSUER = "https://cached.example.test/"
CACHED_SHORT_SKEW_ISSUER = "https://cached-short-skew.example.test/"
REVOCABLE_ISSUER = "https://revocable.example.test/"
AUDIENCE = "ai-gateway"
SEARCH_KEY = "sk-gw-search-app-0123456789"
PROVIDER_KEY = "sk-provider-openai-abcdef"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwks(key: rsa.RSAPrivateKey, kid: str) -> str:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return json.dumps({"keys": [{**public, "kid": kid, "alg": "RS256", "use": "sig"}]})


def _token(key: rsa.RSAPrivateKey, kid: str, *, issuer: str = ISSUER, sub: str = "search-app",
           aud: str = AUDIENCE, expires_in: int = 600, now: int | None = None,
           **more: Any) -> str:
    now = int(time.time()) if now is None else now
    claims = {"iss": issuer, "sub": sub, "aud": aud, "iat": now, "exp": now + expires_in, **more}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


class _JwksServer:
    """Serves one JWKS document at /jwks.json and counts the fetches."""

    def __init__(self, document: str) -> None:
        self.document = document
        self.fetches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                owner.fetches += 1
                body = owner.document.encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _root(path: Path, inline_jwks: str, jwks_uri: str, revocable_uri: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    head = "apiVersion: gatewayctl.dev/v1alpha1\n"
    docs = [
        "kind: Gateway\nmetadata: {name: gw}\nspec: {namespace: gw}\n",
        "kind: Provider\nmetadata: {name: openai}\nspec:\n  type: openai\n"
        "  endpoint: https://api.openai.com\n"
        "  auth: {secretRef: {name: openai-credentials, key: api-key}}\n",
        "kind: Model\nmetadata: {name: gpt-4o}\nspec: {provider: openai}\n",
        "kind: Consumer\nmetadata: {name: search-app}\nspec:\n  team: search\n"
        "  apiKeySecretRef: {name: search-app-key, key: key}\n",
        # A consumer that has no API key: it can only come with a token.
        "kind: Consumer\nmetadata: {name: billing-app}\nspec: {team: billing}\n",
        "kind: Policy\nmetadata: {name: sso}\nspec:\n  auth:\n    jwt:\n"
        f"      - issuer: {json.dumps(ISSUER)}\n        audiences: [{AUDIENCE}]\n"
        f"        jwks: {{inline: {json.dumps(inline_jwks)}}}\n        consumerClaim: sub\n",
        "kind: Policy\nmetadata: {name: sso-or-key}\nspec:\n  auth:\n    apiKeys: true\n"
        "    jwt:\n"
        f"      - issuer: {json.dumps(URL_ISSUER)}\n        audiences: [{AUDIENCE}]\n"
        f"        jwks: {{uri: {json.dumps(jwks_uri)}}}\n",
        # the same keys as sso, and jwt_authn's cache of verified tokens on
        *(f"kind: Policy\nmetadata: {{name: {name}}}\nspec:\n  auth:\n    jwt:\n"
          f"      - issuer: {json.dumps(issuer)}\n        audiences: [{AUDIENCE}]\n"
          f"        jwks: {{inline: {json.dumps(inline_jwks)}}}\n"
          f"        clockSkew: {skew}\n        cache: {{tokens: 100}}\n"
          for name, issuer, skew in [("sso-cached", CACHED_ISSUER, "60s"),
                                     ("sso-cached-short-skew", CACHED_SHORT_SKEW_ISSUER, "1s")]),
        # keys from a URL refreshed every second, and the cache on: a key can be withdrawn
        "kind: Policy\nmetadata: {name: sso-revocable}\nspec:\n  auth:\n    jwt:\n"
        f"      - issuer: {json.dumps(REVOCABLE_ISSUER)}\n        audiences: [{AUDIENCE}]\n"
        f"        jwks: {{uri: {json.dumps(revocable_uri)}, cacheDuration: 1s}}\n"
        "        cache: {tokens: 100}\n",
        "kind: Policy\nmetadata: {name: search-only}\nspec:\n  allow: {teams: [search]}\n",
        "kind: Route\nmetadata: {name: sso}\nspec:\n"
        "  backends: [{model: gpt-4o, weight: 100}]\n  policies: [sso]\n",
        "kind: Route\nmetadata: {name: sso-search}\nspec:\n"
        "  backends: [{model: gpt-4o, weight: 100}]\n  policies: [sso, search-only]\n",
        "kind: Route\nmetadata: {name: mixed}\nspec:\n"
        "  backends: [{model: gpt-4o, weight: 100}]\n  policies: [sso-or-key]\n",
        *(f"kind: Route\nmetadata: {{name: {name}}}\nspec:\n"
          f"  backends: [{{model: gpt-4o, weight: 100}}]\n  policies: [{name}]\n"
          for name in ("sso-cached", "sso-cached-short-skew", "sso-revocable")),
    ]
    (path / "gateway.yaml").write_text("---\n".join(head + d for d in docs))
    return path


@dataclass
class JwtGateway:
    envoy: RunningEnvoy
    provider: Any
    jwks: _JwksServer
    options: EnvoyOptions
    config_dir: Path
    work: Path
    key: rsa.RSAPrivateKey
    url_key: rsa.RSAPrivateKey
    revocable: _JwksServer
    filters: str = "lua"

    def chat(self, model: str, token: str | None = None, **headers: str):
        hdrs = dict(headers)
        if token is not None:
            hdrs["authorization"] = f"Bearer {token}"
        return self.envoy.chat(model, "hello", hdrs)

    def apply(self, inline_jwks: str) -> None:
        """What `apply` does to a running gateway: render the changed root, publish it."""
        root = _root(self.work / "root", inline_jwks, self.jwks.uri, self.revocable.uri)
        ir = with_filters(compile_root(root).ir, self.filters)
        publish(self.config_dir, render_envoy(ir, self.options))


@pytest.fixture(scope="module", params=FILTERS)
def gw(request: pytest.FixtureRequest,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[JwtGateway]:
    """The JWT gateway with Lua filters, and with dataPlaneFilters: module (the compiled auth
    filter, reading jwt_authn's verdict from the headers it is handed over in)."""
    filters = request.param
    require_filters(filters)
    work = tmp_path_factory.mktemp("jwt")
    key, url_key = _key(), _key()
    jwks = _JwksServer(_jwks(url_key, "url-1"))
    revocable = _JwksServer(_jwks(key, "r1"))
    provider = start_mock_provider(config=MockProviderConfig(name="openai",
                                                             require_key=PROVIDER_KEY))
    secrets = work / "secrets"
    write_secrets(secrets, {("openai-credentials", "api-key"): PROVIDER_KEY,
                            ("search-app-key", "key"): SEARCH_KEY})
    options = loopback_options(work, secrets, provider_overrides={"openai": provider.url})
    root = _root(work / "root", _jwks(key, "k1"), jwks.uri, revocable.uri)
    bundle = render_envoy(with_filters(compile_root(root).ir, filters), options)
    try:
        with running_envoy(work / "envoy", bundle, listener_port=options.listener_port,
                           admin_port=options.admin_port,
                           access_log=work / "access.log") as envoy:
            yield JwtGateway(envoy, provider, jwks, options, work / "config", work, key, url_key,
                             revocable,
                             filters)
    finally:
        provider.stop()
        jwks.stop()
        revocable.stop()


def _code(resp) -> str:
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code"}
    return str(body["error"]["code"])


def test_good_token_names_the_consumer_and_never_reaches_the_provider(gw: JwtGateway) -> None:
    token = _token(gw.key, "k1")
    resp = gw.chat("sso", token)
    assert resp.status == 200, resp.body
    sent = gw.provider.requests()[-1]
    assert token not in json.dumps(sent)
    assert sent["headers"]["authorization"] == f"Bearer {PROVIDER_KEY}"
    lines = [x for x in gw.envoy.access_log_lines(expected=2) if x.get("gateway")]
    assert lines[-1]["gateway"]["consumer"] == "search-app"


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [
        (lambda gw: None, 401, "missing_api_key"),
        (lambda gw: _token(gw.key, "k1", expires_in=-600), 401, "token_expired"),
        (lambda gw: _token(gw.key, "k1", aud="someone-else"), 401, "invalid_token"),
        (lambda gw: _token(_key(), "k1"), 401, "invalid_token"),  # signed by another key
        (lambda gw: _token(gw.key, "k1", issuer="https://evil.test/"), 401, "invalid_token"),
        (lambda gw: _token(gw.key, "k1", sub="nobody"), 403, "consumer_not_allowed"),
        (lambda gw: SEARCH_KEY, 401, "invalid_api_key"),  # the route takes tokens only
    ],
    ids=["missing", "expired", "wrong-audience", "wrong-key", "wrong-issuer", "unknown-consumer",
         "api-key-on-token-route"],
)
def test_bad_tokens_are_refused_with_openai_errors(gw: JwtGateway, make, status, code) -> None:
    before = len(gw.provider.requests())
    resp = gw.chat("sso", make(gw))
    assert (resp.status, _code(resp)) == (status, code), resp.body
    assert len(gw.provider.requests()) == before


def test_allow_list_applies_to_token_consumers(gw: JwtGateway) -> None:
    assert gw.chat("sso-search", _token(gw.key, "k1", sub="search-app")).status == 200
    resp = gw.chat("sso-search", _token(gw.key, "k1", sub="billing-app"))
    assert (resp.status, _code(resp)) == (403, "consumer_not_allowed")
    # billing-app has no API key at all: its token is its only credential
    assert gw.chat("sso", _token(gw.key, "k1", sub="billing-app")).status == 200


def test_keys_from_a_url_and_api_keys_both_accepted(gw: JwtGateway) -> None:
    token = _token(gw.url_key, "url-1", issuer=URL_ISSUER)
    assert gw.chat("mixed", token).status == 200
    assert gw.jwks.fetches >= 1
    assert gw.chat("mixed", SEARCH_KEY).status == 200
    assert gw.chat("mixed", None, **{"x-api-key": SEARCH_KEY}).status == 200
    # the other issuer's tokens are not accepted on this route
    resp = gw.chat("mixed", _token(gw.key, "k1"))
    assert (resp.status, _code(resp)) == (401, "invalid_token")


def test_inline_keys_rotated_by_apply(gw: JwtGateway) -> None:
    new_key = _key()
    old_token, new_token = _token(gw.key, "k1"), _token(new_key, "k2")
    assert gw.chat("sso", old_token).status == 200
    assert gw.chat("sso", new_token).status == 401
    gw.apply(_jwks(new_key, "k2"))
    deadline = time.monotonic() + 10
    while gw.chat("sso", new_token).status != 200:
        assert time.monotonic() < deadline, "the rotated JWKS did not apply"
        time.sleep(0.1)
    resp = gw.chat("sso", old_token)
    assert (resp.status, _code(resp)) == (401, "invalid_token")
    gw.apply(_jwks(gw.key, "k1"))  # back, for the other tests of the module
    deadline = time.monotonic() + 10
    while gw.chat("sso", old_token).status != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("route", "sub", "issuer"),
    [("sso", "search-app", ISSUER), ("sso-search", "search-app", ISSUER),
     ("sso-search", "billing-app", ISSUER), ("sso", "billing-app", ISSUER),
     ("mixed", "search-app", URL_ISSUER), ("mixed", "search-app", ISSUER),
     ("sso", "search-app", URL_ISSUER)],
)
def test_explain_agrees_with_envoy_on_token_consumers(gw: JwtGateway, route: str, sub: str,
                                                      issuer: str) -> None:
    from gatewayctl.explain import ExplainRequest, explain_request

    key, kid = (gw.key, "k1") if issuer == ISSUER else (gw.url_key, "url-1")
    served = gw.chat(route, _token(key, kid, issuer=issuer, sub=sub))
    body = json.dumps({"model": route, "messages": [{"role": "user", "content": "hello"}]})
    ir = compile_root(gw.work / "root").ir
    explained = explain_request(ir, ExplainRequest(body.encode(), consumer=sub,
                                                   jwt_issuer=issuer))
    assert explained.status == served.status, (explained.outcome, served.body)


def test_auth_filter_on_a_jwt_gateway_is_the_one_chosen(gw: JwtGateway) -> None:
    """dataPlaneFilters picks the auth filter on a JWT gateway too: the module's under
    `module` (with the verdict filter after jwt_authn), the Lua one under `lua`."""
    dump = gw.envoy.admin("/config_dump?resource=dynamic_listeners")
    assert "gatewayctl.auth" in dump
    assert ("DynamicModuleFilter" in dump) == (gw.filters == "module")
    assert ("gatewayctl.jwt_verdict" in dump) == (gw.filters == "module")
    # and the body filter is the module's too (it reads the principal the auth filter wrote)
    assert ("gatewayctl.body" in dump) == (gw.filters == "module")


@pytest.mark.parametrize("header", ["x-gw-jwt-j0", "x-gw-jwt-j0-failed", "x-gw-jwt-j1"])
def test_verdict_headers_cannot_be_forged_and_never_reach_the_provider(gw: JwtGateway,
                                                                      header: str) -> None:
    """A client's copy of a verdict header names no consumer: a forged payload for
    billing-app (and a forged failure) with no token is refused as a missing credential; a
    good token's payload header is not sent upstream."""
    forged = "eyJzdWIiOiJiaWxsaW5nLWFwcCJ9"  # base64url of {"sub":"billing-app"}
    resp = gw.chat("sso", None, **{header: forged})
    assert (resp.status, _code(resp)) == (401, "missing_api_key"), resp.body
    assert gw.chat("sso", _token(gw.key, "k1"), **{header: forged}).status == 200
    sent = gw.provider.requests()[-1]
    assert not any(name.lower().startswith("x-gw-") for name in sent["headers"]), sent


# ---- jwt_authn's cache of verified tokens (`cache: {tokens: N}`) ------------------------------


def _cache_counts(gw: JwtGateway) -> dict[str, int]:
    """jwt_authn's counters whose names speak of its token cache."""
    out = {}
    for line in gw.envoy.admin("/stats?filter=jwt_authn").splitlines():
        name, _, value = line.partition(": ")
        if "cache" in name and value.strip().isdigit():
            out[name] = int(value)
    return out


def test_token_cache_is_rendered_only_where_asked(gw: JwtGateway) -> None:
    dump = json.loads(gw.envoy.admin("/config_dump?resource=dynamic_listeners"))
    providers = [p for flt in _filters_named(dump, "envoy.filters.http.jwt_authn")
                 for p in flt["typed_config"]["providers"].values()]
    cached = {p["issuer"]: p.get("jwt_cache_config") for p in providers}
    assert cached[CACHED_ISSUER] == {"jwt_cache_size": 100, "jwt_max_token_size": 8192}
    assert cached[CACHED_SHORT_SKEW_ISSUER] == {"jwt_cache_size": 100, "jwt_max_token_size": 8192}
    # the default: no cache, every token's signature checked on every request
    assert cached[ISSUER] is None and cached[URL_ISSUER] is None


def _filters_named(dump: Any, name: str) -> list[dict[str, Any]]:
    found = []
    if isinstance(dump, dict):
        if dump.get("name") == name and "typed_config" in dump:
            found.append(dump)
        for value in dump.values():
            found.extend(_filters_named(value, name))
    elif isinstance(dump, list):
        for value in dump:
            found.extend(_filters_named(value, name))
    return found


HITS = "http.gateway.jwt_authn.jwt_cache_hit"
WORKERS = 2  # the harness's Envoy runs two workers, and each keeps a cache of its own


def test_cached_token_is_accepted_repeatedly_from_the_cache(gw: JwtGateway) -> None:
    """With `cache: {tokens: 100}` a token is verified once per worker and then found in the
    cache (jwt_authn's jwt_cache_hit); the issuers without it (the default) never hit."""
    token = _token(gw.key, "k1", issuer=CACHED_ISSUER)
    before = gw.envoy.stat(HITS)
    ids = {f"cached-{gw.filters}-{i}" for i in range(10)}
    for rid in sorted(ids):
        resp = gw.chat("sso-cached", token, **{"x-request-id": rid})
        assert resp.status == 200, resp.body
    assert gw.envoy.stat(HITS) - before >= 10 - WORKERS
    # every one of them names the token's consumer, hit or not
    consumers = {line["request_id"]: (line.get("gateway") or {}).get("consumer")
                 for line in gw.envoy.access_log_for(ids) if line.get("request_id") in ids}
    assert consumers == dict.fromkeys(ids, "search-app")
    # a token of an issuer without the cache is verified every time: no hit
    uncached = _token(gw.key, "k1")
    before = gw.envoy.stat(HITS)
    for _ in range(5):
        assert gw.chat("sso", uncached).status == 200
    assert gw.envoy.stat(HITS) == before
    # a cached token still names its consumer for the route's allow list and errors
    resp = gw.chat("sso-cached", _token(gw.key, "k1", issuer=CACHED_ISSUER, sub="nobody"))
    assert (resp.status, _code(resp)) == (403, "consumer_not_allowed")


def test_cached_token_is_refused_once_expired(gw: JwtGateway) -> None:
    """A token cached while valid is refused when it expires: its exp is 57s ago, inside the
    issuer's 60s clock skew for 3 more seconds; the gateway answers from the cache, then
    token_expired (bounded wait), and keeps refusing it."""
    now = int(time.time())
    token = _token(gw.key, "k1", issuer=CACHED_ISSUER, expires_in=-57, now=now)
    before = gw.envoy.stat(HITS)
    first = gw.chat("sso-cached", token)
    assert first.status == 200, first.body
    deadline = time.monotonic() + 15
    while (resp := gw.chat("sso-cached", token)).status == 200:
        assert time.monotonic() < deadline, "the cached token was never refused"
        time.sleep(0.05)
    assert time.time() > now + 3  # not before it expired
    assert (resp.status, _code(resp)) == (401, "token_expired")
    assert gw.envoy.stat(HITS) > before  # it was served from the cache while valid
    for _ in range(4):
        resp = gw.chat("sso-cached", token)
        assert (resp.status, _code(resp)) == (401, "token_expired")


def test_cached_token_expiry_uses_the_issuers_clock_skew(gw: JwtGateway) -> None:
    """On a hit jwt_authn checks exp (and the audience) again with the issuer's `clockSkew`
    (1s here): a token cached while valid is refused just after exp + 1s, as a token not yet
    cached is; only the signature check is skipped."""
    now = int(time.time())
    token = _token(gw.key, "k1", issuer=CACHED_SHORT_SKEW_ISSUER, expires_in=2, now=now)
    before = gw.envoy.stat(HITS)
    for _ in range(10):
        resp = gw.chat("sso-cached-short-skew", token)
        assert resp.status == 200, resp.body
    assert gw.envoy.stat(HITS) - before >= 10 - WORKERS
    deadline = time.monotonic() + 10
    while (resp := gw.chat("sso-cached-short-skew", token)).status == 200:
        assert time.monotonic() < deadline, "the cached token was never refused"
        time.sleep(0.05)
    assert (resp.status, _code(resp)) == (401, "token_expired")
    # refused once exp + clockSkew is past (jwt_authn compares whole seconds), not 60s later
    assert now + 3 <= time.time() < now + 6


def test_cached_token_outlives_its_withdrawn_key_until_it_expires(gw: JwtGateway) -> None:
    """The documented cost of the cache: the identity provider withdraws the key from its
    JWKS; once the gateway has fetched the new JWKS (cacheDuration 1s), a token of that key not
    yet cached is refused, but a cached one is still accepted (until its exp)."""
    token = _token(gw.key, "r1", issuer=REVOCABLE_ISSUER)
    for _ in range(20):  # into both workers' caches
        resp = gw.chat("sso-revocable", token)
        assert resp.status == 200, resp.body
    gw.revocable.document = _jwks(_key(), "r2")  # the key withdrawn
    try:
        deadline = time.monotonic() + 20
        for n in itertools.count():
            fresh = _token(gw.key, "r1", issuer=REVOCABLE_ISSUER, jti=f"{gw.filters}-{n}")
            resp = gw.chat("sso-revocable", fresh)
            if resp.status == 401:
                break
            assert time.monotonic() < deadline, "the new JWKS was never fetched"
            time.sleep(0.2)
        assert _code(resp) == "invalid_token"
        for _ in range(4):
            assert gw.chat("sso-revocable", token).status == 200
    finally:
        gw.revocable.document = _jwks(gw.key, "r1")
