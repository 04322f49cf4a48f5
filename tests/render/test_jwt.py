"""JWT consumers through a real Envoy: tokens signed with generated keys, verified by Envoy's
jwt_authn, mapped to Consumers by the auth filter; access lists and errors as for API keys;
keys from a URL (through its own cluster) and inline keys rotated by apply."""

from __future__ import annotations

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
AUDIENCE = "ai-gateway"
SEARCH_KEY = "sk-gw-search-app-0123456789"
PROVIDER_KEY = "sk-provider-openai-abcdef"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwks(key: rsa.RSAPrivateKey, kid: str) -> str:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return json.dumps({"keys": [{**public, "kid": kid, "alg": "RS256", "use": "sig"}]})


def _token(key: rsa.RSAPrivateKey, kid: str, *, issuer: str = ISSUER, sub: str = "search-app",
           aud: str = AUDIENCE, expires_in: int = 600) -> str:
    now = int(time.time())
    claims = {"iss": issuer, "sub": sub, "aud": aud, "iat": now, "exp": now + expires_in}
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


def _root(path: Path, inline_jwks: str, jwks_uri: str) -> Path:
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
        "kind: Policy\nmetadata: {name: search-only}\nspec:\n  allow: {teams: [search]}\n",
        "kind: Route\nmetadata: {name: sso}\nspec:\n"
        "  backends: [{model: gpt-4o, weight: 100}]\n  policies: [sso]\n",
        "kind: Route\nmetadata: {name: sso-search}\nspec:\n"
        "  backends: [{model: gpt-4o, weight: 100}]\n  policies: [sso, search-only]\n",
        "kind: Route\nmetadata: {name: mixed}\nspec:\n"
        "  backends: [{model: gpt-4o, weight: 100}]\n  policies: [sso-or-key]\n",
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
    filters: str = "lua"

    def chat(self, model: str, token: str | None = None, **headers: str):
        hdrs = dict(headers)
        if token is not None:
            hdrs["authorization"] = f"Bearer {token}"
        return self.envoy.chat(model, "hello", hdrs)

    def apply(self, inline_jwks: str) -> None:
        """What `apply` does to a running gateway: render the changed root, publish it."""
        root = _root(self.work / "root", inline_jwks, self.jwks.uri)
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
    provider = start_mock_provider(config=MockProviderConfig(name="openai",
                                                             require_key=PROVIDER_KEY))
    secrets = work / "secrets"
    write_secrets(secrets, {("openai-credentials", "api-key"): PROVIDER_KEY,
                            ("search-app-key", "key"): SEARCH_KEY})
    options = loopback_options(work, secrets, provider_overrides={"openai": provider.url})
    root = _root(work / "root", _jwks(key, "k1"), jwks.uri)
    bundle = render_envoy(with_filters(compile_root(root).ir, filters), options)
    try:
        with running_envoy(work / "envoy", bundle, listener_port=options.listener_port,
                           admin_port=options.admin_port,
                           access_log=work / "access.log") as envoy:
            yield JwtGateway(envoy, provider, jwks, options, work / "config", work, key, url_key,
                             filters)
    finally:
        provider.stop()
        jwks.stop()


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
