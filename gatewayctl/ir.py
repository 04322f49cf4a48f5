"""The intermediate representation: the resolved gateway, ready to render.

Plain frozen data, sorted, serialisable to JSON and back. It knows nothing of YAML, Envoy or
Kubernetes: `compile/` builds it from manifests, `render/` turns it into configuration, and the
live objects carry it so that a later plan can compare against what is actually running.

Everything a renderer needs is resolved here: final route weights after rollouts, fallback
chains, policies merged with the Gateway's defaults, prompts split into literal text and
variables, consumer keys and provider credentials by reference only (never values).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

IR_VERSION = "gatewayctl.dev/ir/v1"

ProviderType = Literal[
    "openai", "azure-openai", "anthropic", "openai-compatible", "bedrock", "gemini"
]
# The API a provider speaks: clients always speak OpenAI's; the gateway translates for others.
ProviderApi = Literal["openai", "anthropic", "bedrock", "gemini"]
BackendRole = Literal["primary", "stable", "canary"]
DataPlaneFilters = Literal["auto", "lua", "module"]  # Gateway.spec.dataPlaneFilters


def resolve_data_plane_filters(requested: DataPlaneFilters, *, local: bool,
                               module_ready: bool | None = None) -> DataPlaneFilters:
    """What `dataPlaneFilters: auto` means; `lua` and `module` are returned as they are.

    The one place auto is decided (docs/data-plane.md, "Compiled filters"):
    * where gatewayctl does not run Envoy itself (`local` False: Kubernetes, Helm, `render`,
      on an image gatewayctl does not build and that may not have the module): the Lua filters;
    * for the Envoy gatewayctl runs itself (`local`: `up`, `--live local`): the compiled
      module when it was built and checked against that Envoy (`module_ready`), else the Lua
      filters. Before that check (`module_ready` None) auto stays auto: the local gateway
      prepares the module when it renders (local/module.py, prepare_module).
    """
    if requested != "auto" or (local and module_ready is None):
        return requested
    return "module" if local and module_ready else "lua"

_NATIVE_APIS: dict[str, ProviderApi] = {
    "anthropic": "anthropic",
    "bedrock": "bedrock",
    "gemini": "gemini",
}


def provider_api(provider_type: ProviderType) -> ProviderApi:
    """The API of a provider type: `openai` for the OpenAI-speaking ones."""
    return _NATIVE_APIS.get(provider_type, "openai")


@dataclass(frozen=True)
class SecretRefIR:
    """A key of a Kubernetes Secret, mounted as a file at <secrets_dir>/<name>/<key>."""

    name: str
    key: str


@dataclass(frozen=True)
class ProviderIR:
    name: str
    type: ProviderType
    scheme: Literal["http", "https"]
    host: str
    port: int
    base_path: str  # "" or a prefix like "/openai"; request paths are appended
    timeout_ms: int
    max_connections: int
    credential: SecretRefIR | None
    # How the credential is sent: header name and value prefix ("authorization", "Bearer ").
    # bedrock: the credential is an AWS credentials file that Envoy's SigV4 signer reads.
    auth_header: str
    auth_prefix: str
    region: str | None = None  # bedrock: the AWS region requests are signed for

    @property
    def api(self) -> ProviderApi:
        return provider_api(self.type)


@dataclass(frozen=True)
class ModelIR:
    name: str
    provider: str
    upstream_model: str
    context_window: int | None
    input_per_million: float
    output_per_million: float
    deprecated: bool | str  # False, True, or an ISO date
    max_output_tokens: int | None = None  # default max_tokens where the provider needs one


@dataclass(frozen=True)
class BackendIR:
    model: str
    weight: int  # 0..100; the weights of one route sum to 100
    role: BackendRole


@dataclass(frozen=True)
class ThresholdIR:
    """One analysis metric of a rollout: the canary fails when it exceeds a bound."""

    metric: str
    max: float | None = None  # absolute bound (a ratio, a count)
    max_ms: int | None = None  # absolute bound written as a duration ("4s")
    max_increase_pct: float | None = None  # bound relative to the stable backend
    query: str | None = None  # custom PromQL


@dataclass(frozen=True)
class RolloutIR:
    name: str
    stable: str
    canary: str
    step: int  # 1-based; 0 = not started
    steps: tuple[int, ...]  # canary weight at each step
    state: Literal["progressing", "paused", "aborted", "completed"]
    canary_weight: int
    canary_header: str
    pauses_ms: tuple[int | None, ...] = ()  # each step's pause (None: wait for a promote)
    thresholds: tuple[ThresholdIR, ...] = ()
    analysis_window_ms: int = 300_000
    analysis_min_requests: int = 100


@dataclass(frozen=True)
class PromptPartIR:
    """Literal text (variable is None) or a request-time variable with an optional default."""

    text: str = ""
    variable: str | None = None
    default: str | None = None


@dataclass(frozen=True)
class PromptVersionIR:
    version: int
    weight: int
    template: str
    parts: tuple[PromptPartIR, ...]
    required: tuple[str, ...]  # variables that must be in prompt_variables
    variables: tuple[str, ...]  # every declared variable


@dataclass(frozen=True)
class PromptIR:
    name: str
    active: tuple[PromptVersionIR, ...]  # sorted by version; weights sum to 100
    # Every version's template text, so a plan can flag an edited existing version.
    texts: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class LimitIR:
    """A request or token budget: `amount` per `period_s` seconds, keyed by consumer or route."""

    amount: int
    period_s: int
    by: Literal["consumer", "route"]
    policy: str


@dataclass(frozen=True)
class AllowRuleIR:
    """One attached policy's allow list as written: who it names, directly or by team."""

    policy: str
    consumers: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()


@dataclass(frozen=True)
class JwtProviderIR:
    """An issuer whose tokens Envoy's jwt_authn verifies; `consumer_claim` names the Consumer.
    Exactly one of jwks_uri, jwks_inline (public keys) and jwks_secret is set."""

    issuer: str
    audiences: tuple[str, ...]
    consumer_claim: str
    clock_skew_s: int
    jwks_uri: str | None = None
    jwks_inline: str | None = None
    jwks_secret: SecretRefIR | None = None
    jwks_cache_s: int = 300
    # jwt_authn's cache of verified tokens, per worker; None: off (every token verified).
    token_cache: int | None = None


@dataclass(frozen=True)
class CacheIR:
    """The effective response cache of a route (the strictest of its policies')."""

    ttl_s: int
    by: Literal["consumer", "route"] = "consumer"
    mode: Literal["always", "on-request"] = "always"
    max_bytes: int = 64 * 1024 * 1024
    max_entry_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class PolicyIR:
    """The effective policy of one route: its defaults and own policies merged, strictest wins.

    allow_consumers is the resolved set of consumers allowed (listed ones plus members of
    listed teams); None means every authenticated consumer (or anyone, without api_keys).
    allow_rules keeps each policy's list as written, so that a plan can say who gains or loses
    access by a change of intent (a team replaced by its one member today).
    """

    sources: tuple[str, ...]
    api_keys: bool = False
    allow_consumers: tuple[str, ...] | None = None
    rate_limits: tuple[LimitIR, ...] = ()
    token_limits: tuple[LimitIR, ...] = ()
    max_request_bytes: int | None = None
    deny_patterns: tuple[str, ...] = ()
    guard_action: Literal["block", "log"] = "block"
    redact: tuple[str, ...] = ()
    allow_rules: tuple[AllowRuleIR, ...] = ()
    # Issuers whose tokens the route accepts (the union of its policies'); API keys are
    # accepted beside them only with api_keys.
    jwt: tuple[JwtProviderIR, ...] = ()
    cache: CacheIR | None = None
    output_deny_patterns: tuple[str, ...] = ()
    output_action: Literal["block", "log"] = "block"
    output_redact: tuple[str, ...] = ()


@dataclass(frozen=True)
class RouteIR:
    name: str
    public_model: str
    backends: tuple[BackendIR, ...]  # in manifest order; zero-weight backends kept
    fallback: tuple[str, ...]  # model names, tried in order after the backend fails
    retry_attempts: int
    per_try_timeout_ms: int | None
    timeout_ms: int
    policy: PolicyIR
    prompt: PromptIR | None
    rollout: RolloutIR | None


@dataclass(frozen=True)
class ConsumerIR:
    name: str
    team: str | None
    api_key: SecretRefIR | None  # None: the consumer authenticates with JWTs only
    budget_usd_per_month: float | None
    # Over budget -> 429 (needs LimitsIR.scope "global"); otherwise the budget only alerts.
    budget_enforce: bool = False


@dataclass(frozen=True)
class KubernetesIR:
    """Gateway.spec.kubernetes: Kubernetes' own structures (resources, tolerations, affinity)
    as plain JSON values; None or empty means gatewayctl's default."""

    resources: dict[str, dict[str, str]] | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    affinity: dict[str, Any] = field(default_factory=dict)
    priority_class_name: str | None = None
    service_type: str = "ClusterIP"
    service_annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    pod_monitor: bool = False
    pod_monitor_interval: str = "30s"
    pod_monitor_labels: dict[str, str] = field(default_factory=dict)
    network_policy: bool = True
    # The response cache's store service (global scope): gatewayctl's own image; the default
    # is the manifests' (`gatewayctl:<version>`, the Dockerfile's tag).
    cache_store_image: str = "gatewayctl:0.1.0"


@dataclass(frozen=True)
class LimitsIR:
    """Gateway.spec.limits: where the counts of request limits, token limits and enforced
    budgets live.

    replica: each Envoy counts alone (local_ratelimit), so N replicas admit up to N x a limit.
    global: Envoy's rate limit filter asks a rate limit service (envoyproxy/ratelimit on
    Kubernetes) that counts in the Redis at redis_address, so a limit holds across replicas.
    failure_mode says what a request that needs the service gets when it cannot answer.
    The services that use Redis log in with AUTH when redis_password is set (as
    redis_username, an ACL user, when that is set too) and speak TLS when redis_tls is,
    verifying Redis's certificate against redis_ca (or the system's CAs).
    """

    scope: Literal["replica", "global"] = "replica"
    redis_address: str | None = None
    redis_username: str | None = None
    redis_password: SecretRefIR | None = None
    redis_tls: bool = False
    redis_ca: SecretRefIR | None = None
    failure_mode: Literal["open", "closed"] = "open"
    timeout_ms: int = 100


@dataclass(frozen=True)
class GatewayIR:
    name: str
    namespace: str
    listener_port: int
    replicas_min: int
    replicas_max: int
    target_cpu: int
    image: str
    providers: tuple[ProviderIR, ...]
    models: tuple[ModelIR, ...]
    routes: tuple[RouteIR, ...]
    consumers: tuple[ConsumerIR, ...]
    kubernetes: KubernetesIR = field(default_factory=KubernetesIR)
    limits: LimitsIR = field(default_factory=LimitsIR)
    # Which implementation runs the gateway's own HTTP filters: Lua or the compiled dynamic
    # module (render/envoy/dynamic_module.py), where it has the filter. "auto" only in an IR
    # compiled for the Envoy gatewayctl runs itself, until the module is prepared for it
    # (resolve_data_plane_filters).
    data_plane_filters: DataPlaneFilters = "lua"
    version: str = IR_VERSION

    def jwt_providers(self) -> tuple[JwtProviderIR, ...]:
        """Every distinct issuer configuration of the routes, in a stable order."""
        found = {p for r in self.routes for p in r.policy.jwt}
        return tuple(sorted(found, key=lambda p: json.dumps(to_dict(p), sort_keys=True)))

    def consumer_and_jwks_secrets(self) -> list[SecretRefIR]:
        """Secret keys the gateway reads besides provider credentials: consumer API keys and
        JWKS files."""
        refs = [c.api_key for c in self.consumers if c.api_key is not None]
        return refs + [p.jwks_secret for p in self.jwt_providers() if p.jwks_secret is not None]

    def provider(self, name: str) -> ProviderIR:
        return next(p for p in self.providers if p.name == name)

    def model(self, name: str) -> ModelIR:
        return next(m for m in self.models if m.name == name)

    def route(self, name: str) -> RouteIR:
        return next(r for r in self.routes if r.name == name)

    def native_apis(self, route: RouteIR) -> tuple[ProviderApi, ...]:
        """The APIs other than OpenAI's of the providers any attempt of the route can reach
        (its backends and fallbacks), sorted: what its requests are translated to."""
        models = {m.name: m for m in self.models}
        providers = {p.name: p for p in self.providers}
        reached = {b.model for b in route.backends} | set(route.fallback)
        apis = {providers[models[m].provider].api for m in reached}
        return tuple(sorted(api for api in apis if api != "openai"))


def to_dict(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_dict(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_dict(v) for v in value]
    return value


def to_json(ir: GatewayIR, *, indent: int | None = 2) -> str:
    return json.dumps(to_dict(ir), indent=indent, sort_keys=True, ensure_ascii=False) + (
        "\n" if indent else ""
    )


@functools.cache
def _hints(tp: type) -> dict[str, Any]:
    return typing.get_type_hints(tp)


def _build(tp: Any, data: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _build(arg, data)
            except (TypeError, ValueError, KeyError):
                continue
        raise ValueError(f"cannot read {data!r} as {tp}")
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], item) for item in data)
        return tuple(_build(a, item) for a, item in zip(args, data, strict=True))
    if origin is Literal:
        if data not in typing.get_args(tp):
            raise ValueError(f"{data!r} is not one of {typing.get_args(tp)}")
        return data
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise TypeError(f"expected an object for {tp.__name__}")
        hints = _hints(tp)
        kwargs = {
            f.name: _build(hints[f.name], data[f.name])
            for f in dataclasses.fields(tp)
            if f.name in data
        }
        return tp(**kwargs)
    if tp is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if tp in (int, str, bool, float):
        if not isinstance(data, tp) or (tp is int and isinstance(data, bool)):
            raise TypeError(f"expected {tp.__name__}, got {type(data).__name__}")
        return data
    return data


def from_dict(data: dict[str, Any]) -> GatewayIR:
    ir = _build(GatewayIR, data)
    assert isinstance(ir, GatewayIR)
    return ir


def from_json(text: str) -> GatewayIR:
    return from_dict(json.loads(text))
