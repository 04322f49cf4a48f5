"""The eight manifest kinds of SPEC section 1, as frozen pydantic models.

Field names follow the SPEC exactly. Each model checks only what it can see on its own;
references between objects are checked in `checks.py`.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import Field, HttpUrl, ValidationInfo, field_validator, model_validator

from gatewayctl.manifests.gateway_kubernetes import KubernetesSettings
from gatewayctl.manifests.types import (
    DurationMs,
    ModelName,
    Name,
    Percent,
    PublicModelName,
    SecretRef,
    Strict,
    invalid,
    manifest_duration_ms,
)

API_VERSION = "gatewayctl.dev/v1alpha1"

PositiveInt = Annotated[int, Field(gt=0, strict=True)]
Weight = Annotated[int, Field(ge=0, le=100, strict=True)]


class Metadata(Strict):
    name: Annotated[str, Field(min_length=1, max_length=253)]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


# --- Gateway ---------------------------------------------------------------------------------


class Listener(Strict):
    port: Annotated[int, Field(ge=1, le=65535, strict=True)] = 8080


class Replicas(Strict):
    min: Annotated[int, Field(ge=1, strict=True)] = 2
    max: Annotated[int, Field(ge=1, strict=True)] = 10
    targetCPUUtilization: Annotated[int, Field(ge=1, le=100, strict=True)] = 70

    @model_validator(mode="after")
    def _min_le_max(self) -> Replicas:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


RedisUsername = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@-]+$")]


class Redis(Strict):
    """The user's Redis (global limits and the shared response cache): where, how to log in
    (AUTH, an ACL user optional) and whether to speak TLS. docs/data-plane.md, "Limits"."""

    # host:port, no scheme (a rediss:// URL is tls: true)
    address: Annotated[str, Field(min_length=3, pattern=r"^[A-Za-z0-9._-]+:[0-9]{1,5}$")]
    # AUTH: the password is a key of a Kubernetes Secret, never a value in the manifests
    passwordSecretRef: SecretRef | None = None
    username: RedisUsername | None = None  # an ACL user (Redis 6+); default: Redis's "default"
    tls: bool = False  # the server's certificate is verified (system CAs, or caSecretRef)
    caSecretRef: SecretRef | None = None  # a PEM bundle of the CAs that sign Redis's certificate

    @field_validator("address", mode="before")
    @classmethod
    def _plain_address(cls, value: Any) -> Any:
        # A URL may carry a password (redis://:secret@host): refuse it without echoing it.
        if isinstance(value, str) and ("://" in value or "@" in value):
            raise invalid(
                "address is host:port, without a scheme or credentials",
                "write the host and port only, e.g. redis.example.com:6380; rediss:// is "
                "tls: true, and a password goes in passwordSecretRef: {name: ..., key: ...}",
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _no_literal_password(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password" in data:
            raise invalid(
                "a password is never written in the manifests",
                "store it in a Kubernetes Secret and refer to it with "
                "passwordSecretRef: {name: ..., key: ...}; rotate the exposed one",
            )
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Redis:
        if self.username is not None and self.passwordSecretRef is None:
            raise invalid(
                "username needs passwordSecretRef (an ACL user logs in with a password)",
                "add passwordSecretRef: {name: ..., key: ...}, or remove username to log in "
                "as Redis's default user",
            )
        if self.caSecretRef is not None and not self.tls:
            raise invalid(
                "caSecretRef is only used with tls: true",
                "set tls: true (Redis speaks TLS), or remove caSecretRef",
            )
        return self


class Limits(Strict):
    """Where limit counts live: per Envoy (replica) or shared through Redis (global)."""

    scope: Literal["replica", "global"] = "replica"
    redis: Redis | None = None
    # When the rate limit service (or its Redis) fails: open admits the request, closed
    # answers 429; either way routes without limits never ask the service.
    failureMode: Literal["open", "closed"] = "open"
    timeout: DurationMs = 100

    @model_validator(mode="after")
    def _redis_for_global(self) -> Limits:
        if self.scope == "global" and self.redis is None:
            raise ValueError(
                "scope global needs redis: {address: host:port} (the counts live in Redis)"
            )
        return self


_STOCK_ENVOY = ("envoyproxy/envoy", "docker.io/envoyproxy/envoy",
                "index.docker.io/envoyproxy/envoy")


def is_stock_envoy_image(image: str) -> bool:
    """The upstream Envoy image (envoyproxy/envoy, any tag or digest), which has no module."""
    repository = image.split("@", 1)[0]
    slash = repository.rfind("/")
    colon = repository.rfind(":")
    if colon > slash:
        repository = repository[:colon]
    return repository in _STOCK_ENVOY


class GatewaySpec(Strict):
    namespace: Name
    listener: Listener = Field(default_factory=Listener)
    replicas: Replicas = Field(default_factory=Replicas)
    image: Annotated[str, Field(min_length=1)] = "envoyproxy/envoy:v1.40.0"
    defaultPolicies: list[Name] = Field(default_factory=list)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    limits: Limits = Field(default_factory=Limits)
    # lua: the gateway's filters run in Envoy's Lua; module: gatewayctl's compiled filter (an
    # Envoy dynamic module) where it has one, which needs an image with the module
    # (docker/envoy-module.Dockerfile), not the stock envoyproxy/envoy; auto (default): the
    # module where gatewayctl runs Envoy itself and can build it, else Lua
    # (ir.resolve_data_plane_filters).
    dataPlaneFilters: Literal["auto", "lua", "module"] = "auto"

    @field_validator("dataPlaneFilters")
    @classmethod
    def _module_image(cls, filters: str, info: ValidationInfo) -> str:
        image = info.data.get("image")
        if filters == "module" and isinstance(image, str) and is_stock_envoy_image(image):
            raise ValueError(
                f"module needs an Envoy image with gatewayctl's module, and {image} is the "
                f"stock Envoy image: build docker/envoy-module.Dockerfile and set image to "
                f"it, or use dataPlaneFilters: lua"
            )
        return filters


# --- Provider --------------------------------------------------------------------------------

ProviderType = Literal[
    "openai", "azure-openai", "anthropic", "openai-compatible", "bedrock", "gemini"
]
# An AWS region name, and where a Bedrock runtime endpoint's host names one
# (bedrock-runtime.us-east-1.amazonaws.com, bedrock-runtime-fips.us-west-2.amazonaws.com,
# vpce-...bedrock-runtime.eu-west-1.vpce.amazonaws.com).
AWS_REGION_PATTERN = r"^[a-z]{2}(-[a-z]+)+-[0-9]+$"
_BEDROCK_HOST_REGION = re.compile(r"bedrock-runtime(?:-fips)?\.([a-z]{2}(?:-[a-z]+)+-[0-9]+)\.")


def bedrock_region(host: str) -> str | None:
    """The AWS region a Bedrock runtime endpoint's host names, if it names one."""
    found = _BEDROCK_HOST_REGION.search(host)
    return found.group(1) if found else None


class ProviderAuth(Strict):
    secretRef: SecretRef


class ProviderSpec(Strict):
    type: ProviderType
    endpoint: HttpUrl
    auth: ProviderAuth | None = None
    timeout: DurationMs = 60_000
    maxConnections: PositiveInt = 1024
    # bedrock only: the region requests are signed for (default: the one the endpoint names)
    region: Annotated[
        str | None, Field(pattern=AWS_REGION_PATTERN, validate_default=True)
    ] = None

    @field_validator("region")
    @classmethod
    def _region_for_bedrock(cls, region: str | None, info: ValidationInfo) -> str | None:
        kind, endpoint = info.data.get("type"), info.data.get("endpoint")
        if kind is None or endpoint is None:
            return region  # reported on those fields
        if kind != "bedrock":
            if region is not None:
                raise invalid(
                    "region is set on a provider that is not of type bedrock",
                    "only AWS SigV4 signing (type: bedrock) uses a region; remove it",
                )
            return region
        if region is None and bedrock_region(endpoint.host or "") is None:
            raise invalid(
                "the bedrock provider's region is not set and its endpoint does not name one",
                "set region (e.g. us-east-1), or use the regional endpoint "
                "https://bedrock-runtime.REGION.amazonaws.com",
            )
        return region

    @field_validator("endpoint")
    @classmethod
    def _only_where_requests_go(cls, url: HttpUrl) -> HttpUrl:
        # The gateway appends the client's path (/v1/chat/completions, ...) to the endpoint's
        # path and sends nothing else of it: a query string or fragment would be dropped.
        if url.query is not None:
            raise invalid(
                "the endpoint has a query string, which the gateway would not send",
                "give scheme, host, port and path only; requests go to the endpoint's path "
                "followed by the OpenAI path (/v1/chat/completions). Azure OpenAI: use the v1 "
                "API, https://RESOURCE.openai.azure.com/openai, which needs no api-version",
            )
        if url.fragment is not None:
            raise invalid(
                "the endpoint has a fragment (#...), which is never sent",
                "remove the fragment: give scheme, host, port and path only",
            )
        if url.username is not None or url.password is not None:
            raise invalid(
                "the endpoint holds a user name or password",
                "credentials go in auth.secretRef, never in the endpoint",
            )
        return url


# --- Model -----------------------------------------------------------------------------------


class Pricing(Strict):
    inputPerMillion: Annotated[float, Field(ge=0)] = 0.0
    outputPerMillion: Annotated[float, Field(ge=0)] = 0.0


class ModelSpec(Strict):
    provider: Name
    upstreamModel: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    contextWindow: PositiveInt | None = None
    # The default `max_tokens` of a request that sets none, where the provider's API needs
    # one (anthropic; also sent to bedrock and gemini when set).
    maxOutputTokens: PositiveInt | None = None
    pricing: Pricing = Field(default_factory=Pricing)
    deprecated: bool | dt.date = False

    @field_validator("maxOutputTokens")
    @classmethod
    def _output_fits_context(cls, output: int | None, info: ValidationInfo) -> int | None:
        window = info.data.get("contextWindow")
        if window is not None and output is not None and output > window:
            raise invalid(
                "maxOutputTokens is larger than contextWindow",
                "a reply cannot be longer than the model's whole context window",
            )
        return output


# --- Route -----------------------------------------------------------------------------------


class Backend(Strict):
    model: ModelName
    weight: Weight


class Retry(Strict):
    attempts: Annotated[int, Field(ge=0, le=10, strict=True)] = 0
    perTryTimeout: DurationMs | None = None


class PromptBinding(Strict):
    name: Name


class RouteSpec(Strict):
    model: PublicModelName | None = None
    backends: Annotated[list[Backend], Field(min_length=1)]
    fallback: list[ModelName] = Field(default_factory=list)
    retry: Retry = Field(default_factory=Retry)
    timeout: DurationMs = 120_000
    policies: list[Name] = Field(default_factory=list)
    prompt: PromptBinding | None = None


# --- Prompt ----------------------------------------------------------------------------------

VariableName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class Variable(Strict):
    required: bool = False


class PromptVersion(Strict):
    version: PositiveInt
    template: Annotated[str, Field(min_length=1, max_length=100_000)]
    variables: dict[VariableName, Variable] = Field(default_factory=dict)


class ActiveVersion(Strict):
    version: PositiveInt
    weight: Weight = 100


class PromptSpec(Strict):
    versions: Annotated[list[PromptVersion], Field(min_length=1)]
    active: Annotated[list[ActiveVersion], Field(min_length=1)]


# --- Policy ----------------------------------------------------------------------------------

Per = Literal["second", "minute", "hour", "day"]
RedactKind = Literal["email", "credit-card", "phone", "ssn"]


ClaimName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.:/-]*$", max_length=128)]
# Public keys only: a JWKS whose keys hold a private or symmetric part is a credential
# (checks.py, GW410) and belongs in a Secret.
_JWKS_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k", "oth")


class Jwks(Strict):
    """Where an issuer's signing keys come from: exactly one of uri, inline, secretRef."""

    uri: HttpUrl | None = None
    inline: Annotated[str, Field(min_length=2, max_length=65536)] | None = None
    secretRef: SecretRef | None = None
    # How long Envoy keeps keys fetched from uri before fetching them again.
    cacheDuration: DurationMs = 300_000

    @model_validator(mode="after")
    def _exactly_one(self) -> Jwks:
        given = [n for n in ("uri", "inline", "secretRef") if getattr(self, n) is not None]
        if len(given) != 1:
            raise invalid(
                f"jwks needs exactly one source, got {len(given)}"
                + (f" ({', '.join(given)})" if given else ""),
                "give uri (fetched through its own cluster), inline (a JWKS document with "
                "public keys) or secretRef (a mounted JWKS file, for air-gapped setups)",
            )
        if self.inline is not None:
            _check_public_jwks(self.inline)
        return self


def _check_public_jwks(text: str) -> None:
    import json

    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise invalid(f"jwks.inline is not JSON: {exc}", 'give a JWKS: {"keys": [...]}') from exc
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list) or not keys:
        raise invalid("jwks.inline has no keys", 'a JWKS is {"keys": [{"kty": ...}, ...]}')
    for key in keys:
        if not isinstance(key, dict) or key.get("kty") not in ("RSA", "EC", "OKP"):
            raise invalid(
                "jwks.inline holds a key that is not an RSA, EC or OKP public key",
                "symmetric (oct) keys are secrets: put such a JWKS in a Secret and use "
                "jwks.secretRef",
            )
        private = [m for m in _JWKS_PRIVATE_MEMBERS if m in key]
        if private:
            raise invalid(
                f"jwks.inline holds private key material ({', '.join(private)})",
                "publish only the public keys in the manifest; a private key never belongs "
                "in Git",
            )


TOKEN_CACHE_MAX = 10_000


class TokenCache(Strict):
    """jwt_authn's cache of verified tokens of one issuer, per Envoy worker. A cached token is
    accepted without its signature checked again until it expires (exp, issuer, audience and
    clockSkew are checked on every hit): a key withdrawn from the JWKS does not stop it."""

    tokens: Annotated[int, Field(strict=True, json_schema_extra={
        "minimum": 1, "maximum": TOKEN_CACHE_MAX})]

    @field_validator("tokens")
    @classmethod
    def _bounded(cls, value: int) -> int:
        if not 1 <= value <= TOKEN_CACHE_MAX:
            raise invalid(
                f"cache.tokens must be 1 to {TOKEN_CACHE_MAX:,}",
                "the verified tokens each Envoy worker keeps (each up to 8 KiB); omit cache "
                "to check every token's signature on every request",
            )
        return value


class JwtIssuer(Strict):
    """One identity provider whose tokens name a Consumer."""

    issuer: Annotated[str, Field(min_length=1, max_length=1024)]
    audiences: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    jwks: Jwks
    # The claim whose value is a Consumer's name (a top-level claim of the token).
    consumerClaim: ClaimName = "sub"
    clockSkew: DurationMs = 60_000
    # Off unless set: jwt_authn then keeps this many verified tokens per Envoy worker and skips
    # their signature check when they come again (docs/manifests.md, "JWT consumers").
    cache: TokenCache | None = None

    @field_validator("clockSkew")
    @classmethod
    def _whole_seconds(cls, value: int) -> int:
        # jwt_authn counts the skew in whole seconds and reads 0 as its default of 60s.
        if value < 1000:
            raise invalid("clockSkew must be at least 1s",
                          "jwt_authn reads a skew under 1s as its default of 60s; give 1s or more")
        return value


class PolicyAuth(Strict):
    apiKeys: bool = False
    jwt: list[JwtIssuer] = Field(default_factory=list)


class Allow(Strict):
    consumers: list[Name] = Field(default_factory=list)
    teams: list[Name] = Field(default_factory=list)


class RateLimit(Strict):
    requests: PositiveInt
    per: Per = "minute"
    by: Literal["consumer", "route"] = "consumer"


class TokenLimit(Strict):
    tokens: PositiveInt
    per: Per = "minute"
    by: Literal["consumer", "route"] = "consumer"


class Guardrails(Strict):
    maxRequestBytes: Annotated[int, Field(ge=1, le=64 * 1024 * 1024, strict=True)] | None = None
    denyPatterns: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    action: Literal["block", "log"] = "block"
    redact: list[RedactKind] = Field(default_factory=list)


class OutputGuardrails(Strict):
    """Deny patterns and redaction on what the model returns (message text, tool-call
    arguments), for whole and streamed responses. Patterns are RE2, also compiled into the
    body filter's automaton (GW405 names what it cannot compile). block: a whole answer
    becomes a 403 `output_blocked` error, a stream ends with finish_reason content_filter;
    the matched text is never sent. log: the answer passes, the hit is logged and counted."""

    denyPatterns: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    action: Literal["block", "log"] = "block"
    redact: list[RedactKind] = Field(default_factory=list)


class Cache(Strict):
    """Exact-match response cache of the routes this policy is on."""

    ttl: DurationMs
    # Entries of one consumer are never served to another unless by: route.
    by: Literal["consumer", "route"] = "consumer"
    # always: every request is looked up and stored; on-request: only requests that send
    # `x-gateway-cache: use`. Either way `cache-control: no-cache` / `no-store` are honoured.
    mode: Literal["always", "on-request"] = "always"
    # Bound of the bytes kept for these routes by each Envoy worker, and of one entry.
    maxBytes: Annotated[int, Field(ge=1024, le=1024 * 1024 * 1024, strict=True)] = 64 * 1024 * 1024
    maxEntryBytes: Annotated[int, Field(ge=256, le=64 * 1024 * 1024, strict=True)] = 1024 * 1024


class PolicySpec(Strict):
    auth: PolicyAuth | None = None
    allow: Allow | None = None
    rateLimit: RateLimit | None = None
    tokenLimit: TokenLimit | None = None
    guardrails: Guardrails | None = None
    outputGuardrails: OutputGuardrails | None = None
    cache: Cache | None = None


# --- Consumer --------------------------------------------------------------------------------


class Budget(Strict):
    usdPerMonth: Annotated[float, Field(gt=0)]
    # true: over budget, requests get 429 (x-gateway-limit: budget); needs limits.scope global
    enforce: bool = False


class ConsumerSpec(Strict):
    team: Name | None = None
    # Omitted: the consumer authenticates only with JWTs (Policy.spec.auth.jwt).
    apiKeySecretRef: SecretRef | None = None
    budget: Budget | None = None


# --- Rollout ---------------------------------------------------------------------------------

RolloutState = Literal["progressing", "paused", "aborted", "completed"]
BUILTIN_METRICS = ("error-rate", "latency-p95", "cost-per-request", "tokens-per-request")


class Step(Strict):
    weight: Weight
    pause: DurationMs | None = None


class Metric(Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
    max: float | str | None = None
    maxIncrease: Percent | None = None
    query: str | None = None  # custom PromQL; `{{ backend }}` stands for the backend's cluster

    @field_validator("max")
    @classmethod
    def _max_is_number_or_duration(cls, value: float | str | None) -> float | str | None:
        if isinstance(value, str):
            manifest_duration_ms(value)
        return value

    @model_validator(mode="after")
    def _one_threshold(self) -> Metric:
        if (self.max is None) == (self.maxIncrease is None):
            raise ValueError("give exactly one of max or maxIncrease")
        if self.name not in BUILTIN_METRICS and self.query is None:
            raise ValueError(
                f'"{self.name}" is not a built-in metric ({", ".join(BUILTIN_METRICS)}); '
                "a custom metric needs a query"
            )
        return self


class Analysis(Strict):
    metrics: list[Metric] = Field(default_factory=list)
    window: DurationMs = 300_000
    minRequests: PositiveInt = 100


class RolloutSpec(Strict):
    route: Name
    stable: ModelName
    canary: ModelName
    steps: Annotated[list[Step], Field(min_length=1)]
    step: Annotated[int, Field(ge=0, strict=True)] = 0
    state: RolloutState = "progressing"
    canaryHeader: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")] = "x-gateway-canary"
    analysis: Analysis = Field(default_factory=Analysis)


# --- RequestTest -----------------------------------------------------------------------------

Endpoint = Literal["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
HeaderName = Annotated[str, Field(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", max_length=256)]


class Expect(Strict):
    status: Annotated[int, Field(ge=100, le=599, strict=True)] | None = None
    route: Name | None = None
    models: Annotated[list[ModelName], Field(min_length=1)] | None = None
    promptVersion: PositiveInt | None = None
    redacted: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _expects_something(self) -> Expect:
        if (self.status, self.route, self.models, self.promptVersion) == (None,) * 4 \
                and not self.redacted:
            raise invalid("the case expects nothing, so it could never fail",
                          "give at least one of status, route, models, promptVersion, "
                          "redacted")
        return self


class Used(Strict):
    """What the case's limit buckets already hold this period (offline runs: explain --used)."""

    requests: Annotated[int, Field(ge=0, strict=True)] | None = None
    tokens: Annotated[int, Field(ge=0, strict=True)] | None = None
    budget: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None  # USD spent

    @model_validator(mode="after")
    def _says_something(self) -> Used:
        if (self.requests, self.tokens, self.budget) == (None, None, None):
            raise invalid("used names no count", "give requests, tokens or budget (USD)")
        return self


class RequestTestCase(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    consumer: Name | None = None  # the request carries this consumer's API key
    # ...or, with consumer, a valid JWT of this issuer naming it (offline runs only: gatewayctl
    # holds no issuer's signing key; a live case sends its token in headers)
    jwtIssuer: Annotated[str, Field(min_length=1)] | None = None
    # ...and the limit counts it meets (offline runs only: a live gateway has its own counts)
    used: Used | None = None
    headers: dict[HeaderName, str] = Field(default_factory=dict)
    path: Endpoint = "/v1/chat/completions"
    request: dict[str, Any]  # the JSON body the client sends
    expect: Expect

    @model_validator(mode="after")
    def _issuer_names_a_consumer(self) -> RequestTestCase:
        if self.jwtIssuer is not None and self.consumer is None:
            raise invalid("jwtIssuer needs consumer: the token names that consumer",
                          "add consumer: NAME beside jwtIssuer")
        return self


class RequestTestSpec(Strict):
    cases: Annotated[list[RequestTestCase], Field(min_length=1)]


SPEC_MODELS: dict[str, type[Strict]] = {
    "Gateway": GatewaySpec,
    "Provider": ProviderSpec,
    "Model": ModelSpec,
    "Route": RouteSpec,
    "Prompt": PromptSpec,
    "Policy": PolicySpec,
    "Consumer": ConsumerSpec,
    "Rollout": RolloutSpec,
    "RequestTest": RequestTestSpec,
}
KINDS = tuple(SPEC_MODELS)
