"""explain's output: text for people, JSON (model.to_json_value) for tools.

Both show text taken from the request (the model asked for, prompt variables in the rendered
system message): anything shaped like a credential is masked (gatewayctl.redaction), as in
every output of gatewayctl.
"""

from __future__ import annotations

import json

from gatewayctl.explain.model import Explanation, LimitInfo, number, to_json_value
from gatewayctl.output import paint
from gatewayctl.redaction import redact


def format_json(exp: Explanation) -> str:
    return redact(json.dumps(to_json_value(exp), indent=2, sort_keys=False,
                             ensure_ascii=False)) + "\n"


def _money(value: float) -> str:
    return f"${value:.6f}"


def _indent(text: str, prefix: str = "      ") -> str:
    return "\n".join(prefix + line for line in text.splitlines() or [""])


def _scope(lim: LimitInfo) -> str:
    if lim.scope == "replica":
        return f"replica: each Envoy counts alone, up to {number(lim.effective)} at max replicas"
    if lim.scope == "global":
        return "global: all replicas together"
    return "reported: alerts only, nothing refused"


def _use(lim: LimitInfo) -> str:
    if lim.used is None:
        return ""
    if lim.exhausted:
        return f"; used {number(lim.used)}: EXHAUSTED, 429"
    if not lim.enforced and lim.used >= lim.amount:
        return f"; used {number(lim.used)}: over, alerts only"
    return f"; used {number(lim.used)}: {number(lim.amount - lim.used)} left"


def format_text(exp: Explanation, *, colour: bool = False) -> str:
    ok = exp.outcome.forwarded
    status = paint(str(exp.status), "green" if ok else "red", colour)
    lines = [f"status:   {status} {exp.outcome.reason}"]
    who = exp.principal + (", canary header set" if exp.canary_header else "")
    model = "(not read)" if exp.requested_model is None else repr(exp.requested_model)
    lines.append(f"request:  POST {exp.path} model={model} from {who}")
    if exp.route is None:
        lines.append("route:    none")
        return redact("\n".join(lines)) + "\n"
    lines.append(f"route:    {exp.route} (public model {exp.public_model})")
    if exp.backends:
        lines.append("backends:")
        for b in exp.backends:
            cost = f"; about {_money(b.cost_usd)} for this request" if exp.cost_usd else ""
            lines.append(f"  {b.weight:>3}%  {b.model} ({b.role}; {b.provider}, upstream "
                         f"{b.upstream_model}{cost})")
    chain = [f"{exp.retry_attempts} more attempt(s) on the chosen backend"] \
        if exp.retry_attempts else []
    chain += [f"then {m}" for m in exp.fallback]
    lines.append("fallback: " + (", ".join(chain) if chain else "none"))
    if exp.prompt_name is not None:
        lines.append(f"prompt:   {exp.prompt_name}")
        for branch in exp.branches:
            lines.append(f"  version {branch.version} ({branch.weight}% of requests): "
                         f"{branch.outcome.status} {branch.outcome.code}")
            if branch.system_message is not None:
                lines.append("    system message:")
                lines.append(_indent(branch.system_message))
    if exp.limits:
        lines.append("limits:")
        for lim in exp.limits:
            unit = {"requests": "requests", "tokens": "tokens", "budget": "USD"}[lim.kind]
            lines.append(f"  {number(lim.amount)} {unit} per {lim.per}, {lim.key} ({_scope(lim)}; "
                         f"{lim.policy})" + _use(lim))
    guard = exp.guard
    if guard is not None:
        if guard.action is None:
            text = "no deny patterns"
        elif guard.matched:
            text = f"{guard.verdict}: {', '.join(repr(p) for p in guard.matched)}"
        else:
            text = f"pass (action {guard.action})"
        lines.append(f"guards:   {text}; body limit {guard.max_request_bytes} bytes")
        if guard.redact:
            done = ", ".join(f"{n} {k}" for k, n in guard.redactions) or "nothing found"
            lines.append(f"  redact {', '.join(guard.redact)}: {done}")
    if exp.cache is not None:
        who = "shared by the route's consumers" if exp.cache.shared else "per consumer"
        lines.append(f"cache:    {'cacheable' if exp.cache.cacheable else 'not cacheable'} "
                     f"({who}, TTL {exp.cache.ttl_s}s): {exp.cache.reason}")
        lines.append(f"  store: {exp.cache.store}")
    if exp.cost_usd:
        lines.append(f"cost:     about {_money(exp.cost_usd)} (prompt tokens ~ bytes/4 of the "
                     "text sent; completion: max_tokens, or 300)")
    else:
        lines.append("cost:     none (not forwarded)")
    return redact("\n".join(lines)) + "\n"
