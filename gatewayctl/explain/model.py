"""What explain says about one request: plain frozen values and their JSON form.

The JSON keys are the contract (SPEC section 7): `route`, `status`, `reason`, `backends`
(`model`, `weight`, ...), `fallback`, `prompt`, `limits`, `guardrails`, `cost_usd`; after
them `cache`, on routes with a response cache only. What the
gateway would forward (`Branch.forwarded`) stays in the value for `gatewayctl test` and the
tests; it is not printed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Stage = Literal["path", "auth", "body", "route", "access", "prompt", "translate", "guardrails",
                "limits",
                "upstream"]


@dataclass(frozen=True)
class Outcome:
    """A status and why: the gateway's error code (or "forwarded") and a sentence."""

    status: int
    code: str
    stage: Stage
    message: str

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.message}"

    @property
    def forwarded(self) -> bool:
        return self.code == "forwarded"


@dataclass(frozen=True)
class BackendChoice:
    model: str
    weight: int  # share of the requests this one would reach, percent
    role: str  # primary, stable, canary
    provider: str
    upstream_model: str
    cost_usd: float  # this request's estimated cost on this model


@dataclass(frozen=True)
class GuardVerdict:
    action: Literal["block", "log"] | None  # None: the route has no deny patterns
    verdict: Literal["pass", "blocked", "logged", "not-checked"]
    matched: tuple[str, ...] = ()  # the deny patterns that match
    redactions: tuple[tuple[str, int], ...] = ()  # (kind, count), in the gateway's order
    redact: tuple[str, ...] = ()  # the kinds the route redacts
    max_request_bytes: int | None = None


@dataclass(frozen=True)
class Branch:
    """The request's path from the prompt stage on, for one prompt version (or the only path
    on a route without a prompt): a version is picked at random per request, and what follows
    (a missing variable, a pattern in the rendered prompt) may differ between versions."""

    version: int | None
    weight: int  # percent of requests that take this branch
    outcome: Outcome
    system_message: str | None = None
    guard: GuardVerdict | None = None
    forwarded: dict[str, Any] | None = field(default=None, compare=False)
    prompt_tokens: int = 0
    completion_tokens: int = 0


def number(value: float) -> str:
    """An amount as people write it: 2000000, 499.99 (not 2e+06)."""
    return str(int(value)) if value == int(value) else f"{value:.6f}".rstrip("0")


@dataclass(frozen=True)
class LimitInfo:
    kind: Literal["requests", "tokens", "budget"]
    amount: float
    per: str  # second, minute, hour, day, month
    by: str  # consumer, route
    key: str  # the bucket this request counts against
    # replica (each Envoy counts alone), global (one count for every replica), or reported
    # (a budget that alerts and refuses nothing)
    scope: str
    policy: str  # the policy (or consumer, for a budget) it comes from
    # What the whole gateway admits: amount x replicas.max in replica scope, else amount.
    effective: float = 0.0
    enforced: bool = True  # false: a reported budget
    # What the bucket already holds in this period (explain --used), None: not given.
    used: float | None = None

    @property
    def exhausted(self) -> bool:
        """The next request is refused. A request limit, and a token limit counted in each
        replica, charge 1 when the request arrives: the bucket must leave room for it (used <
        amount). Global token limits and budgets only check when it arrives (0 hits) and charge
        the usage when it is done (render/envoy/global_limits.py): refused once the count is
        over the amount."""
        if not self.enforced or self.used is None:
            return False
        if self.scope == "global" and self.kind in ("tokens", "budget"):
            return self.used > self.amount
        return self.used >= self.amount


@dataclass(frozen=True)
class CacheVerdict:
    """The response cache's part in the request (routes with a cache only): whether its
    answer may be stored, whether it is looked up first, and why."""

    cacheable: bool
    lookup: bool
    shared: bool  # entries served to every consumer of the route
    ttl_s: int
    reason: str
    store: str = ""  # where the entries live: per Envoy worker, or shared through Redis


@dataclass(frozen=True)
class Explanation:
    path: str
    requested_model: str | None
    principal: str  # "consumer NAME", "an unknown key", "no key"
    consumer: str | None
    canary_header: bool
    route: str | None
    public_model: str | None
    outcome: Outcome
    backends: tuple[BackendChoice, ...] = ()
    fallback: tuple[str, ...] = ()
    retry_attempts: int = 0
    prompt_name: str | None = None
    branches: tuple[Branch, ...] = ()
    limits: tuple[LimitInfo, ...] = ()
    guard: GuardVerdict | None = None
    cost_usd: float = 0.0
    cache: CacheVerdict | None = None

    @property
    def status(self) -> int:
        return self.outcome.status

    @property
    def models(self) -> tuple[str, ...]:
        """The models that may answer when the request is forwarded (fallbacks aside)."""
        return tuple(b.model for b in self.backends if b.weight > 0)

    @property
    def prompt_versions(self) -> tuple[int, ...]:
        """The prompt versions a forwarded (or guard-, limit-checked) request may get: the
        versions whose branch got past the prompt stage."""
        return tuple(b.version for b in self.branches if b.version is not None
                     and b.outcome.stage not in ("prompt",))


def _round(value: float) -> float:
    return round(value, 8)


def to_json_value(exp: Explanation) -> dict[str, Any]:
    prompt: dict[str, Any] | None = None
    if exp.prompt_name is not None:
        prompt = {
            "name": exp.prompt_name,
            "versions": [
                {
                    "version": b.version,
                    "weight": b.weight,
                    "status": b.outcome.status,
                    "reason": b.outcome.reason,
                    "system_message": b.system_message,
                }
                for b in exp.branches
            ],
        }
    guard = exp.guard
    guardrails: dict[str, Any] | None = None
    if guard is not None:
        guardrails = {
            "action": guard.action,
            "verdict": guard.verdict,
            "matched": list(guard.matched),
            "redact": list(guard.redact),
            "redacted": [{"kind": k, "count": n} for k, n in guard.redactions],
            "max_request_bytes": guard.max_request_bytes,
        }
    out: dict[str, Any] = {
        "route": exp.route,
        "status": exp.outcome.status,
        "reason": exp.outcome.reason,
        "backends": [
            {
                "model": b.model,
                "weight": b.weight,
                "role": b.role,
                "provider": b.provider,
                "upstream_model": b.upstream_model,
                "cost_usd": _round(b.cost_usd),
            }
            for b in exp.backends
        ],
        "fallback": list(exp.fallback),
        "prompt": prompt,
        "limits": [
            {
                "kind": lim.kind,
                "amount": lim.amount,
                "per": lim.per,
                "by": lim.by,
                "key": lim.key,
                "scope": lim.scope,
                "policy": lim.policy,
                "effective_amount": lim.effective,
                "enforced": lim.enforced,
                "used": lim.used,
                "exhausted": lim.exhausted,
            }
            for lim in exp.limits
        ],
        "guardrails": guardrails,
        "cost_usd": _round(exp.cost_usd),
    }
    if exp.cache is not None:  # routes with a response cache only
        out["cache"] = {
            "cacheable": exp.cache.cacheable,
            "lookup": exp.cache.lookup,
            "shared": exp.cache.shared,
            "ttl_s": exp.cache.ttl_s,
            "reason": exp.cache.reason,
            "store": exp.cache.store,
        }
    return out
