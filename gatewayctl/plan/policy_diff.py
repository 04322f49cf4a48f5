"""Effective policy of a route, before and after: each difference loosened or tightened.

Rules (documented in docs/plan-and-apply.md): requiring a key, narrowing the allowed consumers,
adding or lowering a rate or token limit, lowering the body limit, adding deny patterns or
redactions, and `log` -> `block` tighten; the opposite loosens. A limit's strictness is its
rate (amount / period), so 600/minute -> 20/second is a loosening. Pure functions over the IR.
"""

from __future__ import annotations

from typing import Any

from gatewayctl.ir import LimitIR, PolicyIR
from gatewayctl.plan.model import Detail

TIGHTENED = "tightened"
LOOSENED = "loosened"

_PERIODS = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}


def _period(seconds: int) -> str:
    return _PERIODS.get(seconds, f"{seconds}s")


def format_limit(limit: LimitIR, unit: str) -> str:
    return f"{limit.amount:,} {unit}/{_period(limit.period_s)} per {limit.by}"


def policy_view(policy: PolicyIR) -> dict[str, Any]:
    """The effective policy as plain JSON, for a change's before and after."""
    return {
        "policies": list(policy.sources),
        "api_keys": policy.api_keys,
        "allow_consumers": None if policy.allow_consumers is None
        else list(policy.allow_consumers),
        "rate_limits": [format_limit(x, "requests") for x in policy.rate_limits],
        "token_limits": [format_limit(x, "tokens") for x in policy.token_limits],
        "max_request_bytes": policy.max_request_bytes,
        "deny_patterns": list(policy.deny_patterns),
        "guardrail_action": policy.guard_action,
        "redact": list(policy.redact),
    }


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


def _limit_details(kind: str, unit: str, before: tuple[LimitIR, ...],
                   after: tuple[LimitIR, ...]) -> list[Detail]:
    def key(x: LimitIR) -> tuple[str, str]:
        return (x.policy, x.by)

    old = {key(x): x for x in before}
    new = {key(x): x for x in after}
    out: list[Detail] = []
    for k in sorted(set(old) | set(new)):
        field = f"{kind} (policy {k[0]}, per {k[1]})"
        b, a = old.get(k), new.get(k)
        if a is None and b is not None:
            out.append(Detail(field, format_limit(b, unit), None, f"{LOOSENED}: limit removed"))
        elif b is None and a is not None:
            out.append(Detail(field, None, format_limit(a, unit), f"{TIGHTENED}: limit added"))
        elif a is not None and b is not None and a != b:
            rate_b, rate_a = b.amount / b.period_s, a.amount / a.period_s
            verdict = LOOSENED if rate_a > rate_b else TIGHTENED if rate_a < rate_b \
                else "unchanged rate"
            out.append(Detail(field, format_limit(b, unit), format_limit(a, unit), verdict))
    return out


def compare_policies(before: PolicyIR, after: PolicyIR) -> tuple[Detail, ...]:
    """Each effective difference, with whether it loosens or tightens the route."""
    out: list[Detail] = []
    if before.api_keys != after.api_keys:
        out.append(Detail("API key required", before.api_keys, after.api_keys,
                          TIGHTENED if after.api_keys else LOOSENED))
    out.extend(_allow_details(before.allow_consumers, after.allow_consumers))
    out.extend(_limit_details("rate limit", "requests", before.rate_limits, after.rate_limits))
    out.extend(_limit_details("token limit", "tokens", before.token_limits, after.token_limits))
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
