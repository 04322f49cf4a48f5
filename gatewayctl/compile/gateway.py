"""Compiling a checked ManifestSet into a GatewayIR."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from gatewayctl.errors import GatewayctlError
from gatewayctl.ir import (
    AllowRuleIR,
    BackendIR,
    CacheIR,
    ConsumerIR,
    GatewayIR,
    JwtProviderIR,
    KubernetesIR,
    LimitIR,
    LimitsIR,
    ModelIR,
    PolicyIR,
    PromptIR,
    PromptPartIR,
    PromptVersionIR,
    ProviderIR,
    RolloutIR,
    RouteIR,
    SecretRefIR,
    ThresholdIR,
    resolve_data_plane_filters,
)
from gatewayctl.manifests.documents import Manifest
from gatewayctl.manifests.gateway_kubernetes import KubernetesSettings
from gatewayctl.manifests.kinds import (
    Cache,
    ConsumerSpec,
    JwtIssuer,
    Limits,
    Metric,
    ModelSpec,
    PolicySpec,
    PromptSpec,
    ProviderSpec,
    RolloutSpec,
    RouteSpec,
    bedrock_region,
)
from gatewayctl.manifests.manifest_set import ManifestSet
from gatewayctl.manifests.prompts import TextPart, parse_template
from gatewayctl.manifests.types import SecretRef, manifest_duration_ms

PERIOD_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}

# How each provider type expects its credential. bedrock's is no header: its secret holds an
# AWS credentials file, read by Envoy's request-signing filter (SigV4).
AUTH_HEADERS = {
    "openai": ("authorization", "Bearer "),
    "openai-compatible": ("authorization", "Bearer "),
    "azure-openai": ("api-key", ""),
    "anthropic": ("x-api-key", ""),
    "gemini": ("x-goog-api-key", ""),
    "bedrock": ("", ""),
}


def compile_provider(m: Manifest[ProviderSpec]) -> ProviderIR:
    spec = m.spec
    url = urlsplit(str(spec.endpoint))
    scheme: Literal["http", "https"] = "https" if url.scheme == "https" else "http"
    header, prefix = AUTH_HEADERS[spec.type]
    cred = spec.auth.secretRef if spec.auth else None
    return ProviderIR(
        name=m.name,
        type=spec.type,
        scheme=scheme,
        host=url.hostname or "",
        port=url.port or (443 if scheme == "https" else 80),
        base_path=url.path.rstrip("/"),
        timeout_ms=spec.timeout,
        max_connections=spec.maxConnections,
        credential=SecretRefIR(cred.name, cred.key) if cred else None,
        auth_header=header,
        auth_prefix=prefix,
        region=_region(spec, url.hostname or ""),
    )


def _region(spec: ProviderSpec, host: str) -> str | None:
    """bedrock: the region given, else the one the endpoint names (the schema needs one)."""
    if spec.type != "bedrock":
        return None
    return spec.region or bedrock_region(host)


def compile_model(m: Manifest[ModelSpec]) -> ModelIR:
    spec = m.spec
    deprecated: bool | str = (
        spec.deprecated if isinstance(spec.deprecated, bool) else spec.deprecated.isoformat()
    )
    return ModelIR(
        name=m.name,
        provider=spec.provider,
        upstream_model=spec.upstreamModel or m.name,
        context_window=spec.contextWindow,
        input_per_million=spec.pricing.inputPerMillion,
        output_per_million=spec.pricing.outputPerMillion,
        deprecated=deprecated,
        max_output_tokens=spec.maxOutputTokens,
    )


def rollout_canary_weight(spec: RolloutSpec) -> int:
    """The canary's share for the rollout's state and step (SPEC: aborted = 0)."""
    if spec.state == "aborted" or spec.step == 0:
        return 0
    if spec.state == "completed":
        return 100
    return spec.steps[min(spec.step, len(spec.steps)) - 1].weight


def compile_rollout(m: Manifest[RolloutSpec]) -> RolloutIR:
    spec = m.spec
    return RolloutIR(
        name=m.name,
        stable=spec.stable,
        canary=spec.canary,
        step=spec.step,
        steps=tuple(s.weight for s in spec.steps),
        state=spec.state,
        canary_weight=rollout_canary_weight(spec),
        canary_header=spec.canaryHeader,
        pauses_ms=tuple(s.pause for s in spec.steps),
        thresholds=tuple(compile_threshold(m) for m in spec.analysis.metrics),
        analysis_window_ms=spec.analysis.window,
        analysis_min_requests=spec.analysis.minRequests,
    )


def compile_threshold(metric: Metric) -> ThresholdIR:
    bound = metric.max
    return ThresholdIR(
        metric=metric.name,
        max=float(bound) if isinstance(bound, (int, float)) else None,
        max_ms=manifest_duration_ms(bound) if isinstance(bound, str) else None,
        max_increase_pct=metric.maxIncrease,
        query=metric.query,
    )


def compile_prompt(m: Manifest[PromptSpec]) -> PromptIR:
    versions = {v.version: v for v in m.spec.versions}
    active = []
    for act in sorted(m.spec.active, key=lambda a: a.version):
        ver = versions[act.version]
        parts = tuple(
            PromptPartIR(text=p.text)
            if isinstance(p, TextPart)
            else PromptPartIR(variable=p.name, default=p.default)
            for p in parse_template(ver.template)
        )
        active.append(
            PromptVersionIR(
                version=ver.version,
                weight=act.weight,
                template=ver.template,
                parts=parts,
                required=tuple(sorted(n for n, v in ver.variables.items() if v.required)),
                variables=tuple(sorted(ver.variables)),
            )
        )
    texts = tuple(sorted((v.version, v.template) for v in m.spec.versions))
    return PromptIR(name=m.name, active=tuple(active), texts=texts)


def compile_jwt(issuer: JwtIssuer) -> JwtProviderIR:
    jwks = issuer.jwks
    secret = jwks.secretRef
    return JwtProviderIR(
        issuer=issuer.issuer,
        audiences=tuple(issuer.audiences),
        consumer_claim=issuer.consumerClaim,
        clock_skew_s=issuer.clockSkew // 1000,
        jwks_uri=str(jwks.uri) if jwks.uri is not None else None,
        jwks_inline=jwks.inline,
        jwks_secret=SecretRefIR(secret.name, secret.key) if secret else None,
        jwks_cache_s=max(1, jwks.cacheDuration // 1000),
        token_cache=issuer.cache.tokens if issuer.cache is not None else None,
    )


def merge_caches(caches: list[Cache]) -> CacheIR | None:
    """Several policies with a cache: the shortest TTL and smallest bounds; entries shared
    across consumers, or stored for every request, only when each policy says so."""
    if not caches:
        return None
    return CacheIR(
        ttl_s=max(1, min(c.ttl for c in caches) // 1000),
        by="route" if all(c.by == "route" for c in caches) else "consumer",
        mode="always" if all(c.mode == "always" for c in caches) else "on-request",
        max_bytes=min(c.maxBytes for c in caches),
        max_entry_bytes=min(c.maxEntryBytes for c in caches),
    )


def merge_policies(
    names: list[str],
    policies: dict[str, Manifest[PolicySpec]],
    consumers: dict[str, Manifest[ConsumerSpec]],
) -> PolicyIR:
    """Every attached policy applies: allow lists intersect, the stricter limit wins."""
    sources = tuple(dict.fromkeys(names))
    specs = [(n, policies[n].spec) for n in sources]
    allowed: set[str] | None = None
    rules: list[AllowRuleIR] = []
    rate: list[LimitIR] = []
    tokens: list[LimitIR] = []
    max_bytes: int | None = None
    patterns: list[str] = []
    redact: set[str] = set()
    blocks = False
    jwt: list[JwtProviderIR] = []
    out_patterns: list[str] = []
    out_redact: set[str] = set()
    out_blocks = False
    for name, spec in specs:
        if spec.allow and (spec.allow.consumers or spec.allow.teams):
            rules.append(AllowRuleIR(name, tuple(spec.allow.consumers), tuple(spec.allow.teams)))
            members = set(spec.allow.consumers) | {
                c for c, m in consumers.items() if m.spec.team in spec.allow.teams
            }
            allowed = members if allowed is None else allowed & members
        if spec.rateLimit:
            rl = spec.rateLimit
            rate.append(LimitIR(rl.requests, PERIOD_SECONDS[rl.per], rl.by, name))
        if spec.tokenLimit:
            tl = spec.tokenLimit
            tokens.append(LimitIR(tl.tokens, PERIOD_SECONDS[tl.per], tl.by, name))
        guard = spec.guardrails
        if guard:
            if guard.maxRequestBytes is not None:
                max_bytes = (
                    guard.maxRequestBytes
                    if max_bytes is None
                    else min(max_bytes, guard.maxRequestBytes)
                )
            patterns.extend(guard.denyPatterns)
            if guard.denyPatterns and guard.action == "block":
                blocks = True
            redact.update(guard.redact)
        if spec.auth is not None:
            jwt.extend(compile_jwt(issuer) for issuer in spec.auth.jwt)
        out = spec.outputGuardrails
        if out:
            out_patterns.extend(out.denyPatterns)
            out_blocks = out_blocks or (bool(out.denyPatterns) and out.action == "block")
            out_redact.update(out.redact)
    return PolicyIR(
        sources=sources,
        api_keys=any(s.auth is not None and s.auth.apiKeys for _, s in specs),
        allow_consumers=tuple(sorted(allowed)) if allowed is not None else None,
        rate_limits=tuple(rate),
        token_limits=tuple(tokens),
        max_request_bytes=max_bytes,
        deny_patterns=tuple(dict.fromkeys(patterns)),
        guard_action="block" if blocks or not patterns else "log",
        redact=tuple(sorted(redact)),
        allow_rules=tuple(rules),
        jwt=tuple(dict.fromkeys(jwt)),
        cache=merge_caches([s.cache for _, s in specs if s.cache is not None]),
        output_deny_patterns=tuple(dict.fromkeys(out_patterns)),
        output_action="block" if out_blocks or not out_patterns else "log",
        output_redact=tuple(sorted(out_redact)),
    )


def compile_route(
    m: Manifest[RouteSpec],
    ms: ManifestSet,
    defaults: list[str],
    prompts: dict[str, PromptIR],
    rollouts: dict[str, RolloutIR],
) -> RouteIR:
    spec = m.spec
    rollout = rollouts.get(m.name)
    if rollout is not None:
        cw = rollout.canary_weight
        backends: tuple[BackendIR, ...] = (
            BackendIR(rollout.stable, 100 - cw, "stable"),
            BackendIR(rollout.canary, cw, "canary"),
        )
    else:
        backends = tuple(BackendIR(b.model, b.weight, "primary") for b in spec.backends)
    return RouteIR(
        name=m.name,
        public_model=spec.model or m.name,
        backends=backends,
        fallback=tuple(spec.fallback),
        retry_attempts=spec.retry.attempts,
        per_try_timeout_ms=spec.retry.perTryTimeout,
        timeout_ms=spec.timeout,
        policy=merge_policies([*defaults, *spec.policies], ms.policies, ms.consumers),
        prompt=prompts[spec.prompt.name] if spec.prompt else None,
        rollout=rollout,
    )


def compile_kubernetes(spec: KubernetesSettings) -> KubernetesIR:
    resources = None
    if spec.resources is not None:
        resources = {
            kind: {k: str(v) for k, v in getattr(spec.resources, kind).model_dump().items() if v}
            for kind in ("requests", "limits")
        }
    return KubernetesIR(
        resources=resources,
        node_selector=dict(sorted(spec.nodeSelector.items())),
        tolerations=tuple(t.model_dump(exclude_none=True) for t in spec.tolerations),
        affinity=spec.affinity.model_dump(exclude_none=True) if spec.affinity else {},
        priority_class_name=spec.priorityClassName,
        service_type=spec.service.type,
        service_annotations=dict(sorted(spec.service.annotations.items())),
        labels=dict(sorted(spec.labels.items())),
        annotations=dict(sorted(spec.annotations.items())),
        pod_monitor=spec.podMonitor.enabled,
        pod_monitor_interval=spec.podMonitor.interval,
        pod_monitor_labels=dict(sorted(spec.podMonitor.labels.items())),
        network_policy=spec.networkPolicy.enabled,
        cache_store_image=spec.cacheStoreImage,
    )


def compile_limits(spec: Limits) -> LimitsIR:
    redis = spec.redis

    def ref(secret: SecretRef | None) -> SecretRefIR | None:
        return SecretRefIR(secret.name, secret.key) if secret is not None else None

    return LimitsIR(
        scope=spec.scope,
        redis_address=redis.address if redis else None,
        redis_username=redis.username if redis else None,
        redis_password=ref(redis.passwordSecretRef) if redis else None,
        redis_tls=redis.tls if redis else False,
        redis_ca=ref(redis.caSecretRef) if redis else None,
        failure_mode=spec.failureMode,
        timeout_ms=spec.timeout,
    )


def compile_gateway(ms: ManifestSet, *, local: bool = False) -> GatewayIR:
    """The IR of a manifest set that validated without errors. `local`: for the Envoy
    gatewayctl runs itself (`up`, `--live local`), where `dataPlaneFilters: auto` is decided
    when the module is prepared; otherwise auto is the Lua filters."""
    gw = ms.gateway
    if gw is None:
        raise GatewayctlError(f"no Gateway in {ms.root}", hint="run gatewayctl validate first")
    rollouts: dict[str, RolloutIR] = {}
    for ro in ms.rollouts.values():
        # Of several rollouts for one route only one may be active (checked); a finished one
        # keeps describing the route only if no other rollout does.
        current = rollouts.get(ro.spec.route)
        if current is None or current.state in ("aborted", "completed"):
            rollouts[ro.spec.route] = compile_rollout(ro)
    prompts = {name: compile_prompt(p) for name, p in ms.prompts.items()}
    defaults = list(gw.spec.defaultPolicies)
    return GatewayIR(
        name=gw.name,
        namespace=gw.spec.namespace,
        listener_port=gw.spec.listener.port,
        replicas_min=gw.spec.replicas.min,
        replicas_max=gw.spec.replicas.max,
        target_cpu=gw.spec.replicas.targetCPUUtilization,
        image=gw.spec.image,
        data_plane_filters=resolve_data_plane_filters(gw.spec.dataPlaneFilters, local=local),
        providers=tuple(compile_provider(p) for p in ms.providers.values()),
        models=tuple(compile_model(m) for m in ms.models.values()),
        routes=tuple(compile_route(r, ms, defaults, prompts, rollouts) for r in ms.routes.values()),
        kubernetes=compile_kubernetes(gw.spec.kubernetes),
        limits=compile_limits(gw.spec.limits),
        consumers=tuple(
            ConsumerIR(
                name=c.name,
                team=c.spec.team,
                api_key=(
                    SecretRefIR(c.spec.apiKeySecretRef.name, c.spec.apiKeySecretRef.key)
                    if c.spec.apiKeySecretRef is not None
                    else None
                ),
                budget_usd_per_month=c.spec.budget.usdPerMonth if c.spec.budget else None,
                budget_enforce=bool(c.spec.budget and c.spec.budget.enforce),
            )
            for c in ms.consumers.values()
        ),
    )
