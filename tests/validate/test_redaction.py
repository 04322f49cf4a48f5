"""The two tiers of gatewayctl.redaction: credential shapes (GW402) and what output masks."""

from __future__ import annotations

import pytest

from gatewayctl.redaction import find_credential, looks_secret, redact

ORDINARY = [
    "gpt-4o-2024-08-06",
    "claude-3-5-sonnet-20241022",
    "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "meta-llama/Llama-3.1-70B-Instruct",
    "https://github.com/google/re2/wiki/Syntax",
    "https://myres.openai.azure.com/openai",
    "envoyproxy/envoy:v1.40.0",
    "You are a support assistant for {{ product }}. Answer in {{ language }}.",
    "(?i)ignore (all|previous) instructions",
    "valid fields here: apiKeySecretRef, budget, team",
]

CREDENTIALS = {
    "sk-proj-Abcdefghijklmnop1234": "an API key (sk-...)",
    "Authorization: Bearer abcdefghijklmnop1234": "a bearer token",
    "AKIAABCDEFGHIJKLMNOP": "an AWS access key",
    "glpat-abcdefghijklmnopqrst": "a GitLab token",
    "ghp_" + "a1" * 18: "a GitHub token",
    "AIza" + "B" * 35: "a Google API key",
    "hf_" + "aB1" * 10: "a Hugging Face token",
    "xoxb-1234567890-abcdef": "a Slack token",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl": "a JSON Web Token",
    "-----BEGIN RSA PRIVATE KEY-----": "a private key",
    "https://user:hunter2@example.com": "a password in a URL",
}

RANDOM_LOOKING = [
    "Zq7Hk2Lm9Xv4Rt8Yb1Nc6Wd3Zf5Gs0Pe",  # 32 mixed-case letters and digits
    "dXNlcjpwYXNzd29yZGxvbmdlcnRoYW50aGlydHl0d28=",  # a Docker `auth` value
    "0123456789abcdef0123456789abcdef",  # an Azure OpenAI key: 32 hex digits
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_values_are_neither_credentials_nor_masked(text: str) -> None:
    assert find_credential(text) is None
    assert not looks_secret(text)
    assert redact(text) == text


@pytest.mark.parametrize(("text", "label"), sorted(CREDENTIALS.items()))
def test_credential_shapes_are_found_and_masked(text: str, label: str) -> None:
    assert find_credential(text) == label
    assert looks_secret(text)
    assert "****" in redact(text)


@pytest.mark.parametrize("text", RANDOM_LOOKING)
def test_random_looking_tokens_are_masked_but_not_credentials(text: str) -> None:
    assert find_credential(text) is None  # not an error in a manifest...
    assert redact(f"auth: {text} end") == "auth: **** end"  # ...but never printed


@pytest.mark.parametrize(("text", "shown"), [
    ("redis: {address: r:6379, password: hunter2}", "redis: {address: r:6379, password: ****}"),
    ('password: "two words"', "password: ****"),
    ("rediss://:hunter2@redis.example.com:6380", "rediss://:****@redis.example.com:6380"),
    ("a password goes in passwordSecretRef: {name: ..., key: ...}",
     "a password goes in passwordSecretRef: {name: ..., key: ...}"),
])
def test_a_password_is_masked_by_where_it_stands(text: str, shown: str) -> None:
    """A short password looks like any word: its key or its place in a URL gives it away."""
    assert redact(text) == shown
    assert "hunter2" not in redact("rediss://gateway:hunter2@redis:6380")
