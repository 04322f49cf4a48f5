"""A gateway with one provider of each API, for the translation tests.

Routes: `chat-<type>` for each provider type (one backend), `bedrock-to-openai` (a Bedrock
backend falling back to OpenAI), `openai-to-anthropic` and `anthropic-to-gemini` (fallback
across provider types), `badkey-<type>`: the same provider endpoint with a credential the
provider refuses (a wrong key; for Bedrock, a wrong secret access key, so the signature fails),
`guarded-<type>`: a deny pattern and email redaction, and `tokens-<type>`: a token limit.
"""

from __future__ import annotations

import dataclasses

from gatewayctl.ir import (
    BackendIR,
    GatewayIR,
    LimitIR,
    ModelIR,
    PolicyIR,
    ProviderIR,
    ProviderType,
    RouteIR,
    SecretRefIR,
)

KEYS = {
    "openai": "sk-openai-translate-0001",
    "anthropic": "sk-ant-translate-0002",
    "gemini": "gemini-translate-key-0003",
}
AWS_ACCESS_KEY_ID = "GWTESTACCESSKEYID01"
AWS_SECRET_ACCESS_KEY = "gwtest/secret+access/key0000000000000000"
AWS_REGION = "eu-west-1"
AWS_CREDENTIALS_FILE = (
    f"[default]\naws_access_key_id = {AWS_ACCESS_KEY_ID}\n"
    f"aws_secret_access_key = {AWS_SECRET_ACCESS_KEY}\n"
)
PROVIDER_TYPES: tuple[ProviderType, ...] = ("openai", "anthropic", "bedrock", "gemini")
# The upstream model of each provider type's model (a Bedrock id has a `:`).
UPSTREAM = {
    "openai": "gpt-4o-2024-08-06",
    "anthropic": "claude-sonnet-4-5",
    "bedrock": "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "gemini": "gemini-2.5-flash",
}
MAX_OUTPUT = {"anthropic": 1024}
DENIED = "(?i)ignore (all|previous) instructions"
# `guarded-<type>` routes: a deny pattern and email redaction.
GUARD = PolicyIR(sources=("guard",), deny_patterns=(DENIED,), redact=("email",))
# `tokens-<type>` routes: TOKEN_LIMIT tokens per hour for the route, charged with each reply's
# usage (translated to OpenAI's terms).
TOKEN_LIMIT = 100
TOKENS = PolicyIR(sources=("tokens",), token_limits=(
    LimitIR(amount=TOKEN_LIMIT, period_s=3600, by="route", policy="tokens"),))


WRONG_AWS_CREDENTIALS_FILE = AWS_CREDENTIALS_FILE.replace("gwtest/secret", "gwtest/wrong!")


def secrets() -> dict[tuple[str, str], str]:
    out = {(f"{t}-credentials", "api-key"): key for t, key in KEYS.items()}
    out.update({(f"{t}-badkey-credentials", "api-key"): "wrong-" + key for t, key in KEYS.items()})
    out[("bedrock-credentials", "credentials")] = AWS_CREDENTIALS_FILE
    out[("bedrock-badkey-credentials", "credentials")] = WRONG_AWS_CREDENTIALS_FILE
    return out


def _provider(kind: ProviderType, name: str | None = None) -> ProviderIR:
    headers = {
        "openai": ("authorization", "Bearer "),
        "anthropic": ("x-api-key", ""),
        "gemini": ("x-goog-api-key", ""),
        "bedrock": ("", ""),
    }
    key = "credentials" if kind == "bedrock" else "api-key"
    header, prefix = headers[kind]
    name = name or kind
    return ProviderIR(
        name=name,
        type=kind,
        scheme="https",
        host=f"{kind}.provider.test",
        port=443,
        base_path="",
        timeout_ms=30_000,
        max_connections=100,
        credential=SecretRefIR(f"{name}-credentials", key),
        auth_header=header,
        auth_prefix=prefix,
        region=AWS_REGION if kind == "bedrock" else None,
    )


def model_name(kind: str) -> str:
    return f"{kind}-model"


def _model(kind: str, provider: str | None = None) -> ModelIR:
    return ModelIR(
        name=model_name(provider or kind),
        provider=provider or kind,
        upstream_model=UPSTREAM[kind],
        context_window=200_000,
        input_per_million=3.0,
        output_per_million=15.0,
        deprecated=False,
        max_output_tokens=MAX_OUTPUT.get(kind),
    )


def _route(name: str, backends: list[str], fallback: tuple[str, ...] = ()) -> RouteIR:
    weight = 100 // len(backends)
    weights = [weight] * len(backends)
    weights[0] += 100 - sum(weights)
    return RouteIR(
        name=name,
        public_model=name,
        backends=tuple(
            BackendIR(model_name(b), w, "primary") for b, w in zip(backends, weights, strict=True)
        ),
        fallback=tuple(model_name(f) for f in fallback),
        retry_attempts=0,
        per_try_timeout_ms=None,
        timeout_ms=30_000,
        policy=PolicyIR(sources=()),
        prompt=None,
        rollout=None,
    )


def route_name(kind: str) -> str:
    return f"chat-{kind}"


def build_ir() -> GatewayIR:
    routes = [_route(route_name(t), [t]) for t in PROVIDER_TYPES]
    routes += [
        _route("bedrock-to-openai", ["bedrock"], ("openai",)),
        _route("openai-to-anthropic", ["openai"], ("anthropic",)),
        _route("anthropic-to-gemini", ["anthropic"], ("gemini",)),
    ]
    routes += [_route(f"badkey-{t}", [f"{t}-badkey"]) for t in PROVIDER_TYPES]
    routes += [dataclasses.replace(_route(f"guarded-{t}", [t]), policy=GUARD)
               for t in PROVIDER_TYPES]
    routes += [dataclasses.replace(_route(f"tokens-{t}", [t]), policy=TOKENS)
               for t in PROVIDER_TYPES]
    return GatewayIR(
        name="translate",
        namespace="translate",
        listener_port=8080,
        replicas_min=1,
        replicas_max=1,
        target_cpu=70,
        image="envoyproxy/envoy:v1.40.0",
        providers=tuple(_provider(t) for t in PROVIDER_TYPES)
        + tuple(_provider(t, f"{t}-badkey") for t in PROVIDER_TYPES),
        models=tuple(_model(t) for t in PROVIDER_TYPES)
        + tuple(_model(t, f"{t}-badkey") for t in PROVIDER_TYPES),
        routes=tuple(routes),
        consumers=(),
    )
