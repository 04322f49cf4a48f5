"""The gateway as a LiteLLM proxy config (`render --target litellm`), and what it cannot say.

Each Route becomes a model group (`model_name` = the public model) with one deployment per
backend that gets traffic: `litellm_params.model` is `<provider prefix>/<upstreamModel>`,
`api_base` the provider's endpoint (LiteLLM's OpenAI base includes `/v1`), `api_key` an
`os.environ/` reference named after the provider's secretRef (`openai-credentials`/`api-key`
-> `OPENAI_CREDENTIALS_API_KEY`: the value is never read), `weight` the backend's share
(simple-shuffle), `num_retries` and `timeout` the route's, `rpm`/`tpm` a route-wide
per-minute limit split by weight, prices in `model_info`. Fallback models become
`router_settings.fallbacks` to the group that serves exactly that model: a route whose only
backend it is, else an extra group `fallback/<model>`. Routes that need a key make LiteLLM
require its master key (`os.environ/LITELLM_MASTER_KEY`).

Everything else gatewayctl does (prompts, guardrails, body limits, consumers' own keys, allow
lists, budgets, per-consumer limits, the canary header, provider connection settings) has no
equivalent in a LiteLLM config file and is listed in `LiteLLMExport.not_expressed`, never
dropped silently. `litellm_view` is the part both express: importing an export gives it back.

Pure and deterministic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from gatewayctl.ir import GatewayIR, LimitIR, ProviderIR, RouteIR, SecretRefIR

PREFIX = {"openai": "openai", "openai-compatible": "openai", "azure-openai": "azure",
          "anthropic": "anthropic", "gemini": "gemini", "bedrock": "bedrock"}
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"
FALLBACK_GROUP = "fallback/"
NO_KEY = "none"


@dataclass(frozen=True)
class LiteLLMExport:
    config: dict[str, Any]
    not_expressed: tuple[str, ...]

    def text(self) -> str:
        head = ["# LiteLLM proxy config rendered by gatewayctl (render --target litellm).",
                "# Secrets are os.environ/ references; set those variables for the proxy."]
        if self.not_expressed:
            head.append("# Not expressed in this file (gatewayctl features LiteLLM's config "
                        "has no equivalent for):")
            head += [f"#   - {line}" for line in self.not_expressed]
        body = yaml.safe_dump(self.config, sort_keys=False, width=100, allow_unicode=True)
        return "\n".join(head) + "\n" + body


def env_name(ref: SecretRefIR) -> str:
    return re.sub(r"[^A-Z0-9]", "_", f"{ref.name}_{ref.key}".upper())


def api_base(provider: ProviderIR) -> str:
    default = 443 if provider.scheme == "https" else 80
    port = "" if provider.port == default else f":{provider.port}"
    base = f"{provider.scheme}://{provider.host}{port}{provider.base_path}"
    # gatewayctl appends /v1/chat/completions; LiteLLM's OpenAI clients append
    # /chat/completions to a base that ends in /v1. Anthropic's appends /v1/messages.
    if provider.type in ("openai", "openai-compatible"):
        return base + "/v1"
    return base


def _split(total: int, weights: list[int]) -> list[int]:
    """total split by weights, largest remainder first, summing exactly to total."""
    whole = sum(weights)
    shares = [total * w // whole for w in weights]
    rest = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in rest[: total - sum(shares)]:
        shares[i] += 1
    return shares


def _per_minute(limits: tuple[LimitIR, ...]) -> int | None:
    for lim in limits:
        if lim.by == "route" and lim.period_s == 60:
            return lim.amount
    return None


def _fallback_groups(ir: GatewayIR) -> dict[str, str]:
    """Model -> the group a fallback to it names."""
    single: dict[str, str] = {}
    for route in sorted(ir.routes, key=lambda r: r.public_model):
        live = [b for b in route.backends if b.weight > 0]
        if len(live) == 1 and not route.fallback:
            single.setdefault(live[0].model, route.public_model)
    wanted = {m for r in ir.routes for m in r.fallback}
    return {m: single.get(m, FALLBACK_GROUP + m) for m in sorted(wanted)}


def _per_token(per_million: float) -> float:
    return float(f"{per_million / 1e6:.12g}")


def _deployment(ir: GatewayIR, group: str, model_name: str, weight: int,
                route: RouteIR | None, rpm: int | None, tpm: int | None) -> dict[str, Any]:
    model = ir.model(model_name)
    provider = ir.provider(model.provider)
    params: dict[str, Any] = {"model": f"{PREFIX[provider.type]}/{model.upstream_model}"}
    if provider.type == "bedrock":
        # LiteLLM signs with boto3's credential chain (the AWS_* variables, a profile, the
        # pod's role): the region and the endpoint, no key (render_litellm notes the file).
        params["aws_region_name"] = provider.region
        params["aws_bedrock_runtime_endpoint"] = api_base(provider)
    else:
        params["api_base"] = api_base(provider)
        # LiteLLM's clients refuse to send without a key: a provider that needs none gets the
        # conventional placeholder, which `import litellm` reads back as no credential.
        params["api_key"] = (f"os.environ/{env_name(provider.credential)}"
                             if provider.credential is not None else NO_KEY)
    params["weight"] = weight
    if route is not None:
        params["num_retries"] = route.retry_attempts
        params["timeout"] = route.timeout_ms / 1000
    if rpm is not None:
        params["rpm"] = rpm
    if tpm is not None:
        params["tpm"] = tpm
    info: dict[str, Any] = {"id": f"{group}/{model.name}", "gatewayctl_model": model.name,
                            "input_cost_per_token": _per_token(model.input_per_million),
                            "output_cost_per_token": _per_token(model.output_per_million)}
    if model.context_window is not None:
        info["max_input_tokens"] = model.context_window
    return {"model_name": group, "litellm_params": params, "model_info": info}


def _route_notes(route: RouteIR) -> list[str]:
    p = route.policy
    notes = []
    if route.prompt is not None:
        notes.append(f"route {route.name}: prompt {route.prompt.name} (the system message "
                     "injection and its A/B split)")
    if p.deny_patterns or p.redact:
        notes.append(f"route {route.name}: guardrails (deny patterns, redaction)")
    if p.max_request_bytes is not None:
        notes.append(f"route {route.name}: maxRequestBytes {p.max_request_bytes}")
    if p.allow_consumers is not None:
        notes.append(f"route {route.name}: allow list (LiteLLM's per-key model access needs "
                     "its database)")
    for lim in (*p.rate_limits, *p.token_limits):
        if lim.by != "route" or lim.period_s != 60:
            notes.append(f"route {route.name}: limit of {lim.amount} per {lim.period_s}s by "
                         f"{lim.by} (policy {lim.policy}; only per-minute route limits map to "
                         "rpm/tpm)")
    if len([x for x in p.rate_limits if x.by == "route" and x.period_s == 60]) > 1:
        notes.append(f"route {route.name}: several per-minute request limits (the first "
                     "becomes rpm)")
    if route.rollout is not None:
        notes.append(f"route {route.name}: rollout {route.rollout.name}'s canary header (the "
                     "current weights are exported)")
    if route.per_try_timeout_ms is not None:
        notes.append(f"route {route.name}: per-try timeout")
    return notes


def render_litellm(ir: GatewayIR) -> LiteLLMExport:
    groups = _fallback_groups(ir)
    model_list: list[dict[str, Any]] = []
    notes: list[str] = []
    fallbacks: list[dict[str, list[str]]] = []
    for route in sorted(ir.routes, key=lambda r: r.public_model):
        live = [b for b in route.backends if b.weight > 0]
        weights = [b.weight for b in live]
        rpm = _per_minute(route.policy.rate_limits)
        tpm = _per_minute(route.policy.token_limits)
        rpms = _split(rpm, weights) if rpm is not None else [None] * len(live)
        tpms = _split(tpm, weights) if tpm is not None else [None] * len(live)
        for b, r, t in zip(live, rpms, tpms, strict=True):
            model_list.append(_deployment(ir, route.public_model, b.model, b.weight, route, r, t))
        if route.fallback:
            fallbacks.append({route.public_model: [groups[m] for m in route.fallback]})
        notes += _route_notes(route)
    for model, group in groups.items():
        if group.startswith(FALLBACK_GROUP):
            model_list.append(_deployment(ir, group, model, 100, None, None, None))
            notes.append(f"fallback model {model}: LiteLLM falls back to model groups, so the "
                         f"extra group {group} serves it (clients can call it too)")
    for provider in ir.providers:
        if provider.timeout_ms != 60_000 or provider.max_connections != 1024:
            notes.append(f"provider {provider.name}: timeout and maxConnections")
        if provider.type == "bedrock" and provider.credential is not None:
            notes.append(f"provider {provider.name}: its AWS credentials file (give the proxy "
                         "AWS_SHARED_CREDENTIALS_FILE, or a role: LiteLLM uses boto3's chain)")
    if ir.consumers:
        notes.append("consumers' own API keys, teams and budgets (LiteLLM's virtual keys live "
                     "in its database); routes that need a key use the master key")
    config: dict[str, Any] = {"model_list": model_list}
    router: dict[str, Any] = {"routing_strategy": "simple-shuffle"}
    if fallbacks:
        router["fallbacks"] = fallbacks
    config["router_settings"] = router
    config["litellm_settings"] = {"drop_params": False}
    if any(r.policy.api_keys for r in ir.routes):
        config["general_settings"] = {"master_key": f"os.environ/{MASTER_KEY_ENV}"}
        if not all(r.policy.api_keys for r in ir.routes):
            notes.append("routes without api keys (the master key applies to every model)")
    return LiteLLMExport(config, tuple(notes))


# -- what both express ------------------------------------------------------------------------

def litellm_view(ir: GatewayIR) -> dict[str, Any]:
    """The gateway as far as a LiteLLM config expresses it: public models, their weighted
    upstream models (type, endpoint, credential or not, prices), fallback models, retries,
    timeout, per-minute route limits; and whether clients need a key (one master key for the
    whole proxy: per route it is not expressed)."""

    def target(name: str) -> dict[str, Any]:
        m = ir.model(name)
        p = ir.provider(m.provider)
        return {"upstream": m.upstream_model, "type": PREFIX[p.type], "base": api_base(p),
                "credential": p.credential is not None,
                "price": (round(m.input_per_million, 6), round(m.output_per_million, 6))}

    routes = {}
    for r in ir.routes:
        live = [b for b in r.backends if b.weight > 0]
        routes[r.public_model] = {
            "backends": sorted((b.weight, tuple(sorted(target(b.model).items())))
                               for b in live),
            "fallback": [target(m)["upstream"] for m in r.fallback],
            "retries": r.retry_attempts,
            "timeout_ms": r.timeout_ms,
            "rpm": _per_minute(r.policy.rate_limits),
            "tpm": _per_minute(r.policy.token_limits),
        }
    return {"routes": routes, "keys": any(r.policy.api_keys for r in ir.routes)}
