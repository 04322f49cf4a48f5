"""Hand-built GatewayIR values for the renderer tests: one route per data-plane behaviour."""

from __future__ import annotations

from dataclasses import replace

from gatewayctl.ir import (
    BackendIR,
    ConsumerIR,
    GatewayIR,
    LimitIR,
    ModelIR,
    PolicyIR,
    PromptIR,
    PromptPartIR,
    PromptVersionIR,
    ProviderIR,
    RolloutIR,
    RouteIR,
    SecretRefIR,
)

OPENAI_KEY = "sk-openai-test-0001"
ANTHROPIC_KEY = "sk-ant-test-0002"
REJECTED_KEY = "sk-rejected-test-0003"
BULK_BYTES = 8 * 1024 * 1024
CONSUMER_KEYS = {"search-app": "gw-key-search", "helpdesk": "gw-key-helpdesk"}

# Everything that could break out of a Lua literal or a config string.
HOSTILE_TEXT = (
    "q\"uo'te ]] ]==] [[x]] %s %d \\ back\\\\slash\nnew\r\tline é漢\U0001f600 nul:\x00 end"
)
HOSTILE_PATTERN = r'\]\]==\]"%s\\ü'
HOSTILE_TRIGGER = ']]==]"%s\\ü'

GUARD_PATTERN = "(?i)ignore (all|previous) instructions"


def _provider(name: str, credential: str | None, header: str, prefix: str) -> ProviderIR:
    return ProviderIR(
        name=name,
        type="openai",
        scheme="https",
        host=f"api.{name}.example.com",
        port=443,
        base_path="",
        timeout_ms=60000,
        max_connections=100,
        credential=SecretRefIR(name=f"{name}-credentials", key="api-key") if credential else None,
        auth_header=header,
        auth_prefix=prefix,
    )


def _model(name: str, provider: str, upstream: str | None = None, prices=(2.5, 10.0)) -> ModelIR:
    return ModelIR(
        name=name,
        provider=provider,
        upstream_model=upstream or name,
        context_window=128000,
        input_per_million=prices[0],
        output_per_million=prices[1],
        deprecated=False,
    )


def _route(
    name: str,
    backends: list[tuple[str, int]],
    *,
    public: str | None = None,
    fallback: tuple[str, ...] = (),
    attempts: int = 0,
    policy: PolicyIR | None = None,
    prompt: PromptIR | None = None,
    rollout: RolloutIR | None = None,
) -> RouteIR:
    return RouteIR(
        name=name,
        public_model=public or name,
        backends=tuple(BackendIR(model=m, weight=w, role="primary") for m, w in backends),
        fallback=fallback,
        retry_attempts=attempts,
        per_try_timeout_ms=5000,
        timeout_ms=20000,
        policy=policy or PolicyIR(sources=()),
        prompt=prompt,
        rollout=rollout,
    )


def _text(t: str) -> PromptPartIR:
    return PromptPartIR(text=t)


def _var(name: str, default: str | None = None) -> PromptPartIR:
    return PromptPartIR(variable=name, default=default)


SUPPORT_PROMPT = PromptIR(
    name="support-assistant",
    active=(
        PromptVersionIR(
            version=3,
            weight=90,
            template="You are a support assistant for {{ product }}. "
            "Answer in {{ language | default('English') }}.",
            parts=(
                _text("You are a support assistant for "),
                _var("product"),
                _text(". Answer in "),
                _var("language", "English"),
                _text("."),
            ),
            required=("product",),
            variables=("language", "product"),
        ),
        PromptVersionIR(
            version=4,
            weight=10,
            template="You help {{ product }} customers. Be brief.",
            parts=(_text("You help "), _var("product"), _text(" customers. Be brief.")),
            required=("product",),
            variables=("product",),
        ),
    ),
)

HOSTILE_PROMPT = PromptIR(
    name="hostile",
    active=(
        PromptVersionIR(
            version=1,
            weight=100,
            template=HOSTILE_TEXT,
            parts=(_text(HOSTILE_TEXT), _var("x", 'd"ef]]ault\\')),
            required=(),
            variables=("x",),
        ),
    ),
)


def build_ir(listener_port: int = 8080) -> GatewayIR:
    providers = (
        _provider("anthropic", ANTHROPIC_KEY, "x-api-key", ""),
        _provider("down", None, "authorization", "Bearer "),
        _provider("openai", OPENAI_KEY, "authorization", "Bearer "),
        # Its endpoint (tests/render/conftest.py) rejects every credential and echoes it.
        _provider("rejecting", REJECTED_KEY, "authorization", "Bearer "),
    )
    models = (
        _model("claude-sonnet", "anthropic", "claude-sonnet-4-5", (3.0, 15.0)),
        _model("flaky-429", "openai"),
        _model("flaky-503", "openai"),
        _model("ghost", "down"),
        _model("gpt-4o-2024-08-06", "openai"),
        _model("gpt-4o-2024-11-20", "openai"),
        _model("llama-3.1-70b", "openai", "meta-llama/Llama-3.1-70B-Instruct", (0.2, 0.2)),
        _model("text-embedding-3-small", "openai", prices=(0.02, 0.0)),
        _model("rejected-model", "rejecting"),
    )
    rollout = RolloutIR(
        name="chat-canary",
        stable="gpt-4o-2024-08-06",
        canary="gpt-4o-2024-11-20",
        step=1,
        steps=(10, 50, 100),
        state="progressing",
        canary_weight=10,
        canary_header="x-gateway-canary",
    )
    routes = (
        _route(
            "chat",
            [("gpt-4o-2024-08-06", 90), ("gpt-4o-2024-11-20", 10)],
            rollout=rollout,
        ),
        _route("llama", [("llama-3.1-70b", 100)], public="llama-70b"),
        _route("embed", [("text-embedding-3-small", 100)], public="text-embedding-3-small"),
        _route("fallback503", [("flaky-503", 100)], fallback=("claude-sonnet",), attempts=1),
        _route("fallback429", [("flaky-429", 100)], fallback=("claude-sonnet",)),
        _route("down", [("ghost", 100)], fallback=("gpt-4o-2024-08-06",), attempts=1),
        _route(
            "keys",
            [("gpt-4o-2024-08-06", 100)],
            policy=PolicyIR(sources=("p",), api_keys=True, allow_consumers=("search-app",)),
        ),
        _route(
            "limited",
            [("gpt-4o-2024-08-06", 100)],
            policy=PolicyIR(
                sources=("p",),
                api_keys=True,
                rate_limits=(LimitIR(amount=3, period_s=3600, by="consumer", policy="p"),),
            ),
        ),
        _route(
            "tokens",
            [("gpt-4o-2024-08-06", 100)],
            policy=PolicyIR(
                sources=("p",),
                api_keys=True,
                token_limits=(LimitIR(amount=100, period_s=3600, by="consumer", policy="p"),),
            ),
        ),
        _route(
            "guarded",
            [("gpt-4o-2024-08-06", 100)],
            policy=PolicyIR(
                sources=("g",),
                max_request_bytes=2048,
                deny_patterns=(GUARD_PATTERN, HOSTILE_PATTERN),
                guard_action="block",
                redact=("credit-card", "email", "phone", "ssn"),
            ),
        ),
        _route(
            "logged",
            [("gpt-4o-2024-08-06", 100)],
            policy=PolicyIR(sources=("g",), deny_patterns=(GUARD_PATTERN,), guard_action="log"),
        ),
        _route("assistant", [("gpt-4o-2024-08-06", 100)], prompt=SUPPORT_PROMPT),
        _route(
            "guarded-assistant",
            [("gpt-4o-2024-08-06", 100)],
            prompt=SUPPORT_PROMPT,
            policy=PolicyIR(
                sources=("g",),
                max_request_bytes=4096,
                deny_patterns=(GUARD_PATTERN,),
                guard_action="block",
                redact=("credit-card", "email"),
            ),
        ),
        # The one route with a large body limit, for one consumer only.
        _route(
            "bulk",
            [("gpt-4o-2024-08-06", 100)],
            policy=PolicyIR(
                sources=("b",),
                api_keys=True,
                allow_consumers=("search-app",),
                max_request_bytes=BULK_BYTES,
            ),
        ),
        _route("rejected", [("rejected-model", 100)]),
        _route(
            "hostile",
            [("gpt-4o-2024-08-06", 100)],
            public="weird/model:v1.0_x",
            prompt=HOSTILE_PROMPT,
        ),
    )
    consumers = tuple(
        ConsumerIR(
            name=n,
            team="t",
            api_key=SecretRefIR(name=f"{n}-key", key="key"),
            budget_usd_per_month=None,
        )
        for n in sorted(CONSUMER_KEYS)
    )
    return GatewayIR(
        name="test-gateway",
        namespace="ai",
        listener_port=listener_port,
        replicas_min=1,
        replicas_max=1,
        target_cpu=70,
        image="envoyproxy/envoy:v1.40.0",
        providers=providers,
        models=models,
        routes=tuple(sorted(routes, key=lambda r: r.name)),
        consumers=consumers,
    )


def with_weights(ir: GatewayIR, route: str, weights: dict[str, int]) -> GatewayIR:
    routes = tuple(
        replace(r, backends=tuple(replace(b, weight=weights[b.model]) for b in r.backends))
        if r.name == route
        else r
        for r in ir.routes
    )
    return replace(ir, routes=routes)
