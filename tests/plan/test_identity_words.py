"""Plan wording of JWT issuers, the response cache and output guardrails (policy_diff)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from gatewayctl.ir import CacheIR, JwtProviderIR, PolicyIR, SecretRefIR
from gatewayctl.plan.policy_diff import compare_policies

BASE = PolicyIR(sources=("p",))
ISSUER = JwtProviderIR(issuer="https://login.example.com/", audiences=("ai-gateway",),
                       consumer_claim="sub", clock_skew_s=60,
                       jwks_uri="https://login.example.com/jwks.json")


def _words(before: PolicyIR, after: PolicyIR) -> list[tuple[str, object, object, str]]:
    return [(d.field, d.before, d.after, d.note) for d in compare_policies(before, after)]


def test_issuer_added_and_removed() -> None:
    after = replace(BASE, jwt=(ISSUER,))
    [(field, before, now, note)] = _words(BASE, after)
    assert field == "JWT issuer" and before is None
    assert now == ("https://login.example.com/ (audiences ai-gateway; keys from "
                   "https://login.example.com/jwks.json; consumer from claim sub; clock skew 60s; "
                   "no token cache)")
    assert note == "loosened: issuer added"
    [(_, _, _, note)] = _words(after, BASE)
    assert note == "tightened: issuer removed"


def test_token_cache_on_off_and_resized_is_one_change_of_that_issuer() -> None:
    cached = replace(ISSUER, token_cache=100)
    [(field, before, now, note)] = _words(replace(BASE, jwt=(ISSUER,)),
                                          replace(BASE, jwt=(cached,)))
    assert field == "JWT token cache (https://login.example.com/)"
    assert (before, now) == ("no token cache", "verified tokens cached, 100 per worker")
    assert note == ("loosened: a cached token is accepted without its signature checked until "
                    "it expires, even after its key leaves the JWKS")
    [(_, _, _, note)] = _words(replace(BASE, jwt=(cached,)), replace(BASE, jwt=(ISSUER,)))
    assert note == "tightened: every token's signature checked on every request"
    bigger = replace(ISSUER, token_cache=5000)
    [(_, before, now, note)] = _words(replace(BASE, jwt=(cached,)), replace(BASE, jwt=(bigger,)))
    assert (before, now, note) == ("verified tokens cached, 100 per worker",
                                   "verified tokens cached, 5,000 per worker",
                                   "token cache 100 -> 5,000 per worker")
    # a new issuer with the cache on says so in its own words
    [(_, _, now, note)] = _words(BASE, replace(BASE, jwt=(cached,)))
    assert str(now).endswith("clock skew 60s; verified tokens cached, 100 per worker)")
    assert note == "loosened: issuer added"


def test_rotated_inline_keys_and_secret_keys_are_changes() -> None:
    inline = replace(ISSUER, jwks_uri=None, jwks_inline='{"keys":[{"kty":"RSA","kid":"k1"}]}')
    rotated = replace(inline, jwks_inline='{"keys":[{"kty":"RSA","kid":"k2"}]}')
    words = _words(replace(BASE, jwt=(inline,)), replace(BASE, jwt=(rotated,)))
    assert [w[3] for w in words] == ["loosened: issuer added", "tightened: issuer removed"]
    assert "inline keys [k2]" in str(words[0][2]) and "inline keys [k1]" in str(words[1][1])
    secret = replace(ISSUER, jwks_uri=None, jwks_secret=SecretRefIR("idp-jwks", "jwks.json"))
    [(_, _, now, _)] = _words(BASE, replace(BASE, jwt=(secret,)))
    assert "keys from Secret idp-jwks/jwks.json" in str(now)


def test_cache_ttl_and_sharing() -> None:
    on = replace(BASE, cache=CacheIR(ttl_s=600))
    [(field, before, now, note)] = _words(BASE, on)
    assert (field, before) == ("response cache", None)
    assert now == ("TTL 600s, per consumer, every request, up to 67,108,864 bytes "
                   "(1,048,576 per entry)")
    assert note.startswith("cache on")
    [(_, _, _, note)] = _words(on, replace(on, cache=CacheIR(ttl_s=60)))
    assert note == "cache TTL 600s -> 60s"
    [(_, _, _, note)] = _words(on, replace(on, cache=CacheIR(ttl_s=600, by="route")))
    assert note == "loosened: cached answers now shared across consumers"


def test_output_patterns_action_and_redaction() -> None:
    after = replace(BASE, output_deny_patterns=("(?i)internal use only",), output_redact=("email",))
    words = _words(BASE, after)
    assert [(w[0], w[3]) for w in words] == [
        ("output deny patterns", "tightened: added (?i)internal use only"),
        ("output redact", "tightened: added email"),
    ]
    logged = replace(after, output_action="log")
    assert _words(after, logged) == [("output guardrail action", "block", "log", "loosened")]


def _jwt_root(path: Path, cache: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "gateway.yaml").write_text(
        "apiVersion: gatewayctl.dev/v1alpha1\nkind: Gateway\nmetadata: {name: gw}\n"
        "spec: {namespace: gw}\n---\n"
        "apiVersion: gatewayctl.dev/v1alpha1\nkind: Provider\nmetadata: {name: openai}\n"
        "spec: {type: openai, endpoint: https://api.openai.com, "
        "auth: {secretRef: {name: openai, key: api-key}}}\n---\n"
        "apiVersion: gatewayctl.dev/v1alpha1\nkind: Model\nmetadata: {name: gpt-4o}\n"
        "spec: {provider: openai}\n---\n"
        "apiVersion: gatewayctl.dev/v1alpha1\nkind: Policy\nmetadata: {name: sso}\nspec:\n"
        "  auth:\n    jwt:\n      - issuer: https://login.example.com/\n"
        "        jwks: {uri: https://login.example.com/jwks.json}\n" + cache + "---\n"
        "apiVersion: gatewayctl.dev/v1alpha1\nkind: Route\nmetadata: {name: chat}\n"
        "spec: {backends: [{model: gpt-4o, weight: 100}], policies: [sso]}\n")
    return path


def test_plan_of_the_manifests_shows_the_token_cache_change(tmp_path: Path) -> None:
    from gatewayctl.pipeline import compile_root
    from gatewayctl.plan.manifest_diff import diff_gateway_ir

    before = compile_root(_jwt_root(tmp_path / "a", "")).ir
    after = compile_root(_jwt_root(tmp_path / "b", "        cache: {tokens: 500}\n")).ir
    changes = diff_gateway_ir(before, after)
    details = [(c.kind, d.field, d.before, d.after) for c in changes for d in c.details]
    assert details == [("Policy", "JWT token cache (https://login.example.com/)",
                        "no token cache", "verified tokens cached, 500 per worker")]
