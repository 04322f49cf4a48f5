"""Effective policy of a route, before and after: each difference loosened or tightened.

Rules (documented in docs/plan-and-apply.md): requiring a key, narrowing the allowed consumers,
adding or lowering a rate or token limit, lowering the body limit, adding deny patterns or
redactions, and `log` -> `block` tighten; the opposite loosens. A limit is a token bucket: its
rate (amount / period) and its burst (amount: what a client may spend at once) are compared
apart, so 600/minute -> 20/second loosens the rate (10/s -> 20/s) and tightens the burst
(600 -> 20): "changed". An allow list is compared as written too (teams and consumers per
policy), so a change of intent shows even when today's allowed set is the same. Pure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from gatewayctl.ir import CacheIR, JwtProviderIR, LimitIR, PolicyIR
from gatewayctl.plan.model import Detail

TIGHTENED = "tightened"
LOOSENED = "loosened"

_PERIODS = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}


def _period(seconds: int) -> str:
    return _PERIODS.get(seconds, f"{seconds}s")


def format_limit(limit: LimitIR, unit: str) -> str:
    return f"{limit.amount:,} {unit}/{_period(limit.period_s)} per {limit.by}"


def limit_view(limit: LimitIR) -> dict[str, Any]:
    """A limit as structured data: amount per period, keyed by, and its bucket."""
    return {"amount": limit.amount, "period_s": limit.period_s, "per": _period(limit.period_s),
            "by": limit.by, "policy": limit.policy,
            "rate_per_second": round(limit.amount / limit.period_s, 6), "burst": limit.amount}


def policy_view(policy: PolicyIR) -> dict[str, Any]:
    """The effective policy as plain JSON, for a change's before and after."""
    return {
        "policies": list(policy.sources),
        "api_keys": policy.api_keys,
        "allow_consumers": None if policy.allow_consumers is None
        else list(policy.allow_consumers),
        "allow_rules": [{"policy": r.policy, "consumers": list(r.consumers),
                         "teams": list(r.teams)} for r in policy.allow_rules],
        "rate_limits": [limit_view(x) for x in policy.rate_limits],
        "token_limits": [limit_view(x) for x in policy.token_limits],
        "max_request_bytes": policy.max_request_bytes,
        "deny_patterns": list(policy.deny_patterns),
        "guardrail_action": policy.guard_action,
        "redact": list(policy.redact),
        "jwt_issuers": [jwt_text(p) for p in policy.jwt],
        "cache": cache_text(policy.cache),
        "output_deny_patterns": list(policy.output_deny_patterns),
        "output_guardrail_action": policy.output_action,
        "output_redact": list(policy.output_redact),
    }


def jwt_text(p: JwtProviderIR) -> str:
    """An accepted issuer in reviewers' words: who, for whom, keys from where, which claim."""
    if p.jwks_uri is not None:
        keys = f"keys from {p.jwks_uri}"
    elif p.jwks_secret is not None:
        keys = f"keys from Secret {p.jwks_secret.name}/{p.jwks_secret.key}"
    else:
        keys = f"inline keys {_key_ids(p.jwks_inline or '')}"
    audiences = ", ".join(p.audiences) or "any audience"
    return (f"{p.issuer} (audiences {audiences}; {keys}; consumer from claim "
            f"{p.consumer_claim}; clock skew {p.clock_skew_s}s; {token_cache_text(p)})")


def token_cache_text(p: JwtProviderIR) -> str:
    if p.token_cache is None:
        return "no token cache"
    return f"verified tokens cached, {p.token_cache:,} per worker"


def _key_ids(jwks: str) -> str:
    import hashlib
    import json

    try:
        keys = json.loads(jwks).get("keys", [])
        kids = [str(k.get("kid")) for k in keys if isinstance(k, dict) and k.get("kid")]
    except (ValueError, AttributeError):
        kids = []
    digest = hashlib.sha256(jwks.encode()).hexdigest()[:12]
    return f"[{', '.join(kids)}] sha256:{digest}" if kids else f"sha256:{digest}"


def cache_text(cache: CacheIR | None) -> str | None:
    if cache is None:
        return None
    shared = "shared by all consumers" if cache.by == "route" else "per consumer"
    mode = "every request" if cache.mode == "always" else "requests sending x-gateway-cache: use"
    return (f"TTL {cache.ttl_s}s, {shared}, {mode}, up to {cache.max_bytes:,} bytes "
            f"({cache.max_entry_bytes:,} per entry)")


def _token_cache_details(before: PolicyIR, after: PolicyIR) -> list[Detail]:
    """An issuer that stays but whose cache of verified tokens changes: one change in its own
    words (a cached token keeps passing after its key is withdrawn, until it expires)."""
    old, new = _by_rest(before), _by_rest(after)
    out = []
    for rest in sorted(set(old) & set(new), key=jwt_text):
        b, a = old[rest].token_cache, new[rest].token_cache
        if b == a:
            continue
        if b is None:
            verdict = (f"{LOOSENED}: a cached token is accepted without its signature checked "
                       "until it expires, even after its key leaves the JWKS")
        elif a is None:
            verdict = f"{TIGHTENED}: every token's signature checked on every request"
        else:
            verdict = f"token cache {b:,} -> {a:,} per worker"
        out.append(Detail(f"JWT token cache ({rest.issuer})", token_cache_text(old[rest]),
                          token_cache_text(new[rest]), verdict))
    return out


def _by_rest(policy: PolicyIR) -> dict[JwtProviderIR, JwtProviderIR]:
    """Each issuer by its configuration without the token cache, where that is one issuer."""
    rests = [replace(p, token_cache=None) for p in policy.jwt]
    return {rest: p for rest, p in zip(rests, policy.jwt, strict=True) if rests.count(rest) == 1}


def _jwt_details(before: PolicyIR, after: PolicyIR) -> list[Detail]:
    out = _token_cache_details(before, after)
    recached = set(_by_rest(before)) & set(_by_rest(after))
    old = {jwt_text(p) for p in before.jwt if replace(p, token_cache=None) not in recached}
    new = {jwt_text(p) for p in after.jwt if replace(p, token_cache=None) not in recached}
    for text in sorted(new - old):
        out.append(Detail("JWT issuer", None, text, f"{LOOSENED}: issuer added"))
    for text in sorted(old - new):
        out.append(Detail("JWT issuer", text, None, f"{TIGHTENED}: issuer removed"))
    return out


def _cache_details(before: CacheIR | None, after: CacheIR | None) -> list[Detail]:
    if before == after:
        return []
    if before is None:
        verdict = "cache on: repeated requests are answered from the cache"
    elif after is None:
        verdict = "cache off"
    elif after.by == "route" and before.by != "route":
        verdict = f"{LOOSENED}: cached answers now shared across consumers"
    else:
        verdict = f"cache TTL {before.ttl_s}s -> {after.ttl_s}s" if before.ttl_s != after.ttl_s \
            else "cache settings changed"
    return [Detail("response cache", cache_text(before), cache_text(after), verdict)]


def _output_details(before: PolicyIR, after: PolicyIR) -> list[Detail]:
    out = []
    deny = _set_detail("output deny patterns", before.output_deny_patterns,
                       after.output_deny_patterns, True)
    if deny:
        out.append(deny)
    if before.output_action != after.output_action:
        out.append(Detail("output guardrail action", before.output_action, after.output_action,
                          TIGHTENED if after.output_action == "block" else LOOSENED))
    redact = _set_detail("output redact", before.output_redact, after.output_redact, True)
    if redact:
        out.append(redact)
    return out


def _set_detail(field: str, before: tuple[str, ...], after: tuple[str, ...],
                added_tightens: bool) -> Detail | None:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    if not added and not removed:
        return None
    parts = ([f"added {', '.join(added)}"] if added else []) + (
        [f"removed {', '.join(removed)}"] if removed else [])
    if added and removed:
        verdict = "changed"
    else:
        verdict = TIGHTENED if bool(added) == added_tightens else LOOSENED
    return Detail(field, ", ".join(before) or None, ", ".join(after) or None,
                  f"{verdict}: {'; '.join(parts)}")


Describe = Callable[[LimitIR, str], str]


def _limit_details(kind: str, unit: str, before: tuple[LimitIR, ...],
                   after: tuple[LimitIR, ...], shown: tuple[Describe, Describe] | None = None,
                   ) -> list[Detail]:
    """shown: how a limit reads before and after (its effective amount, limits_diff.py)."""
    was, now = shown or (format_limit, format_limit)
    def key(x: LimitIR) -> tuple[str, str]:
        return (x.policy, x.by)

    old = {key(x): x for x in before}
    new = {key(x): x for x in after}
    out: list[Detail] = []
    for k in sorted(set(old) | set(new)):
        field = f"{kind} (policy {k[0]}, per {k[1]})"
        b, a = old.get(k), new.get(k)
        if a is None and b is not None:
            out.append(Detail(field, was(b, unit), None, f"{LOOSENED}: limit removed"))
        elif b is None and a is not None:
            out.append(Detail(field, None, now(a, unit), f"{TIGHTENED}: limit added"))
        elif a is not None and b is not None and a != b:
            out.append(Detail(field, was(b, unit), now(a, unit), limit_verdict(b, a, unit)))
    return out


def _rate(limit: LimitIR, unit: str) -> str:
    per_second = limit.amount / limit.period_s
    return f"{per_second:.4g} {unit}/second"


def limit_verdict(before: LimitIR, after: LimitIR, unit: str) -> str:
    """Rate and burst compared apart: loosened, tightened, or changed (one of each)."""
    rate_b, rate_a = before.amount / before.period_s, after.amount / after.period_s
    rate = (rate_a > rate_b) - (rate_a < rate_b)
    burst = (after.amount > before.amount) - (after.amount < before.amount)
    parts = []
    if rate:
        parts.append(f"rate {LOOSENED if rate > 0 else TIGHTENED} ({_rate(before, unit)} -> "
                     f"{_rate(after, unit)})")
    if burst:
        parts.append(f"burst {LOOSENED if burst > 0 else TIGHTENED} ({before.amount:,} -> "
                     f"{after.amount:,} at once)")
    if not parts:
        return "unchanged rate and burst"
    if rate * burst < 0:
        return "changed: " + "; ".join(parts)
    verdict = LOOSENED if (rate or burst) > 0 else TIGHTENED
    return f"{verdict}: " + "; ".join(parts)


def _rule_text(consumers: tuple[str, ...], teams: tuple[str, ...]) -> str | None:
    parts = ([f"teams {', '.join(teams)}"] if teams else []) + (
        [f"consumers {', '.join(consumers)}"] if consumers else [])
    return "; ".join(parts) or None


def _rule_details(before: PolicyIR, after: PolicyIR,
                  members: dict[str, tuple[str, ...]]) -> list[Detail]:
    """Allow lists as written: who gains or loses access by name or by team."""
    old = {r.policy: r for r in before.allow_rules}
    new = {r.policy: r for r in after.allow_rules}
    out: list[Detail] = []
    for policy in sorted(set(old) | set(new)):
        b, a = old.get(policy), new.get(policy)
        if b == a:
            continue
        b_teams, a_teams = set(b.teams if b else ()), set(a.teams if a else ())
        b_names, a_names = set(b.consumers if b else ()), set(a.consumers if a else ())
        notes = []
        for team in sorted(b_teams - a_teams):
            today = ", ".join(members.get(team, ())) or "no consumer today"
            notes.append(f"team {team} no longer grants access (its members: {today}; "
                         "members added later get no access through it)")
        for team in sorted(a_teams - b_teams):
            today = ", ".join(members.get(team, ())) or "no consumer today"
            notes.append(f"team {team} now grants access (its members: {today}, and any "
                         "added later)")
        for name in sorted(a_names - b_names):
            notes.append(f"{name} allowed by name")
        for name in sorted(b_names - a_names):
            notes.append(f"{name} no longer allowed by name")
        out.append(Detail(f"allow list (policy {policy})",
                          _rule_text(b.consumers, b.teams) if b else None,
                          _rule_text(a.consumers, a.teams) if a else None, "; ".join(notes)))
    return out


def compare_policies(before: PolicyIR, after: PolicyIR,
                     members: dict[str, tuple[str, ...]] | None = None,
                     shown: tuple[Describe, Describe] | None = None) -> tuple[Detail, ...]:
    """Each effective difference, with whether it loosens or tightens the route; `members`
    (team -> consumers) words changes of the allow lists as written."""
    out: list[Detail] = []
    if before.api_keys != after.api_keys:
        out.append(Detail("API key required", before.api_keys, after.api_keys,
                          TIGHTENED if after.api_keys else LOOSENED))
    out.extend(_allow_details(before.allow_consumers, after.allow_consumers))
    out.extend(_rule_details(before, after, members or {}))
    out.extend(_limit_details("rate limit", "requests", before.rate_limits, after.rate_limits,
                              shown))
    out.extend(_limit_details("token limit", "tokens", before.token_limits, after.token_limits,
                              shown))
    if before.max_request_bytes != after.max_request_bytes:
        b, a = before.max_request_bytes, after.max_request_bytes
        looser = a is None or (b is not None and a > b)
        out.append(Detail("max request bytes", b, a, LOOSENED if looser else TIGHTENED))
    deny = _set_detail("deny patterns", before.deny_patterns, after.deny_patterns, True)
    if deny:
        out.append(deny)
    if before.guard_action != after.guard_action:
        out.append(Detail("guardrail action", before.guard_action, after.guard_action,
                          TIGHTENED if after.guard_action == "block" else LOOSENED))
    redact = _set_detail("redact", before.redact, after.redact, True)
    if redact:
        out.append(redact)
    out.extend(_jwt_details(before, after))
    out.extend(_cache_details(before.cache, after.cache))
    out.extend(_output_details(before, after))
    return tuple(out)


def _allow_details(before: tuple[str, ...] | None,
                   after: tuple[str, ...] | None) -> list[Detail]:
    if before == after:
        return []
    if before is None and after is not None:
        return [Detail("allowed consumers", "any consumer", ", ".join(after) or "none",
                       f"{TIGHTENED}: only the listed consumers")]
    if after is None and before is not None:
        return [Detail("allowed consumers", ", ".join(before) or "none", "any consumer",
                       f"{LOOSENED}: every consumer with a key")]
    assert before is not None and after is not None
    detail = _set_detail("allowed consumers", before, after, added_tightens=False)
    return [detail] if detail else []
