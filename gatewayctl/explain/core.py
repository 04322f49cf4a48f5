"""explain: what the compiled gateway does with one request, computed from the IR alone.

The decisions follow the rendered data plane in its own order (docs/data-plane.md):

1. path: only POST /v1/chat/completions, /v1/completions, /v1/embeddings reach a route (404);
2. auth filter (lua/auth.lua, headers only, before the body is read): no route open to the
   principal -> 401 (no or an unknown key) or 403 (a consumer no route allows); a body over
   the principal's bound (the largest limit of the routes it may use) -> 413;
3. body filter (lua/gateway.lua): empty body 400, not a JSON object 400, no string `model`
   400, unknown model 404; the route's own body limit 413; the route's key rule 401; its allow
   list 403; `prompt_variables` not an object 400; then per prompt version (picked by weight):
   a missing required variable 400, a rendered prompt over the body limit 413;
   on a route with native providers (anthropic, bedrock, gemini), the body as forwarded
   (prompt injected, redacted) must translate for every one of their APIs, else 400 with the
   translation's code and message (explain/native.py);
4. RBAC: a deny pattern on the text the provider would read -> 403 (`block`) or logged (`log`);
5. request and token limits -> 429 once exhausted (explain assumes they are not: it lists
   them);
6. the router: the canary header, else the weighted backends; retries and fallbacks.

Pure: a value in, a value out. It reads no secret (a key in a header is taken as an unknown
key: `consumer` names whose key the request carries) and runs no Envoy. The differential test
holds it equal to a real Envoy running the same IR.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from gatewayctl.explain.cache import cache_verdict
from gatewayctl.explain.jsonbody import BodyError, decode_body, encode_utf8, lua_encode
from gatewayctl.explain.model import (
    BackendChoice,
    Branch,
    Explanation,
    GuardVerdict,
    LimitInfo,
    Outcome,
    number,
)
from gatewayctl.explain.native import refusal
from gatewayctl.explain.text import (
    carried_text,
    count_marks,
    deny_matches,
    guard_text,
    redact,
)
from gatewayctl.ir import GatewayIR, PromptVersionIR, RouteIR
from gatewayctl.render.envoy.body import (
    KEY,
    jwt_caps,
    open_to,
    principal_caps,
    route_body_limit,
)
from gatewayctl.render.envoy.jwt import provider_names, route_providers
from gatewayctl.render.envoy.names import ENDPOINTS

# Assumed when the request does not bound its completion (the plan's cost assumption).
DEFAULT_COMPLETION_TOKENS = 300
BYTES_PER_TOKEN = 4
ASSUMED = "(limits assumed not exhausted)"
PERIOD_WORDS = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}


@dataclass(frozen=True)
class ExplainRequest:
    """One request as a client sends it. `consumer`: the request carries that consumer's key
    (in `Authorization: Bearer`); otherwise a key header is taken as an unknown key."""

    body: bytes
    path: str = "/v1/chat/completions"
    headers: tuple[tuple[str, str], ...] = ()
    consumer: str | None = None
    # The consumer comes with a valid JWT of this issuer instead of its API key.
    jwt_issuer: str | None = None
    # What the request's limit buckets already hold in this period: (kind, amount), kind
    # requests, tokens or budget (USD); explain cannot know live counts.
    used: tuple[tuple[str, float], ...] = ()


class UnknownIssuer(ValueError):
    pass


class UnknownConsumer(ValueError):
    pass


def _header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    values = [v for k, v in headers if k.lower() == name]
    return ",".join(values) if values else None


_WS = " \t\n\v\f\r"


def presented_key(headers: Sequence[tuple[str, str]]) -> str | None:
    """The key auth.lua finds: `Authorization: Bearer <key>` (any case), else x-api-key, else
    api-key; surrounding whitespace trimmed, an empty one is none."""
    auth = _header(headers, "authorization")
    if auth is not None and auth[:6].lower() == "bearer" and auth[6:7] and auth[6] in _WS:
        bearer = auth[7:].strip(_WS)
        if bearer:
            return bearer
    for name in ("x-api-key", "api-key"):
        value = _header(headers, name)
        if value is not None and value.strip(_WS):
            return value.strip(_WS)
    return None


def _per(period_s: int) -> str:
    return PERIOD_WORDS.get(period_s, f"{period_s}s")


LIMIT_KINDS = ("requests", "tokens", "budget")  # the gateway's order of the limit filters


def _limits(ir: GatewayIR, route: RouteIR, consumer: str | None,
            used: dict[str, float]) -> tuple[LimitInfo, ...]:
    who = consumer or "anonymous"
    scope = ir.limits.scope
    times = 1 if scope == "global" else ir.replicas_max
    out: list[LimitInfo] = []
    for kind, limits in (("requests", route.policy.rate_limits),
                         ("tokens", route.policy.token_limits)):
        for lim in limits:
            key = (f"consumer {who} on route {route.name}" if lim.by == "consumer"
                   else f"route {route.name}")
            out.append(LimitInfo(kind, lim.amount, _per(lim.period_s), lim.by, key,  # type: ignore[arg-type]
                                 scope, lim.policy, lim.amount * times, True, used.get(kind)))
    if consumer is not None:
        c = next((c for c in ir.consumers if c.name == consumer), None)
        if c is not None and c.budget_usd_per_month is not None:
            enforced = c.budget_enforce and scope == "global"
            out.append(LimitInfo("budget", c.budget_usd_per_month, "month", "consumer",
                                 f"consumer {consumer}", "global" if enforced else "reported",
                                 consumer, c.budget_usd_per_month, enforced,
                                 used.get("budget")))
    return tuple(out)


_LIMIT_WORDS = {"requests": "requests", "tokens": "tokens", "budget": "USD"}


def _refused_by_limit(limits: Sequence[LimitInfo]) -> Outcome | None:
    """429 from the first exhausted limit, in the gateway's order (request limits, token
    limits, the enforced budget), or None."""
    for kind in LIMIT_KINDS:
        for lim in limits:
            if lim.kind == kind and lim.exhausted:
                holds = (f"{number(lim.used or 0)} of {number(lim.amount)} "
                         f"{_LIMIT_WORDS[kind]} per {lim.per}")
                if kind == "budget":
                    return _reject(429, "budget_exceeded", "limits",
                                   f"consumer budget spent ({holds} used); "
                                   "x-gateway-limit: budget, on every route until the window "
                                   "renews")
                return _reject(429, "rate_limit_exceeded", "limits",
                               f"{kind[:-1]} limit of {lim.key} exhausted ({holds} used; "
                               f"{lim.scope} scope); x-gateway-limit: {kind}")
    return None


def _backends(ir: GatewayIR, route: RouteIR, canary: bool) -> tuple[BackendChoice, ...]:
    rollout = route.rollout
    if canary and rollout is not None and any(b.model == rollout.canary for b in route.backends):
        chosen = [(rollout.canary, 100, "canary")]
    else:
        chosen = [(b.model, b.weight, b.role) for b in route.backends if b.weight > 0]
        if not chosen:  # the renderer's defensive default
            chosen = [(route.backends[0].model, 100, route.backends[0].role)]
    out = []
    for name, weight, role in chosen:
        model = ir.model(name)
        out.append(BackendChoice(name, weight, role, model.provider, model.upstream_model, 0.0))
    return tuple(out)


def _completion_tokens(request: dict[str, Any], endpoint: str) -> int:
    if endpoint == "embeddings":
        return 0
    for key in ("max_completion_tokens", "max_tokens"):
        value = request.get(key)
        if isinstance(value, float) and not isinstance(value, bool) and value >= 0 \
                and math.isfinite(value):
            return int(value)
    return DEFAULT_COMPLETION_TOKENS


def _render_prompt(version: PromptVersionIR, variables: dict[str, Any],
                   limit: int) -> tuple[str | None, str | None, bool]:
    """(text, missing variable, too large) as gateway.lua's render_prompt decides them."""
    for name in version.required:
        if variables.get(name) is None:
            return None, name, False
    out: list[str] = []
    size = 0
    for part in version.parts:
        if part.variable is None:
            value = part.text
        else:
            raw = variables.get(part.variable)
            if raw is None:
                value = part.default or ""
            elif isinstance(raw, str):
                value = raw
            else:
                value = lua_encode(raw)
        size += len(encode_utf8(value))
        if size > limit:
            return None, None, True
        out.append(value)
    return "".join(out), None, False


def _reject(status: int, code: str, stage: str, message: str) -> Outcome:
    return Outcome(status, code, stage, message)  # type: ignore[arg-type]


def _branch(
    ir: GatewayIR,
    route: RouteIR,
    request: dict[str, Any],
    endpoint: str,
    version: PromptVersionIR | None,
    weight: int,
) -> Branch:
    """From the prompt stage to the router, for one prompt version (or none)."""
    limit = route_body_limit(route)
    req = dict(request)
    variables = req.pop("prompt_variables", None)
    system_message: str | None = None
    if version is not None:
        text, missing, too_large = _render_prompt(version, variables or {}, limit)
        if too_large:
            return Branch(version.version, weight, _reject(
                413, "prompt_too_large", "prompt",
                f"prompt version {version.version} rendered with these variables would be "
                f"larger than the route's body limit ({limit} bytes)"))
        if text is None:
            return Branch(version.version, weight, _reject(
                400, "missing_prompt_variable", "prompt",
                f"prompt version {version.version} needs the variable `{missing}` in "
                "`prompt_variables`"))
        system_message = text
        if endpoint == "chat":
            messages = req.get("messages")
            req["messages"] = [{"role": "system", "content": text},
                               *(messages if isinstance(messages, list) else [])]
        elif endpoint == "completions" and isinstance(req.get("prompt"), str):
            req["prompt"] = text + "\n\n" + req["prompt"]
    number = version.version if version is not None else None
    policy = route.policy
    matched: tuple[str, ...] = ()
    if policy.deny_patterns:
        matched = tuple(deny_matches(policy.deny_patterns, carried_text(guard_text(req))))
    forwarded = redact(req, policy.redact) if policy.redact else req
    redactions = tuple(count_marks(req, forwarded).items()) if policy.redact else ()
    action = policy.guard_action if policy.deny_patterns else None
    verdict = "pass"
    if matched:
        verdict = "blocked" if action == "block" else "logged"
    guard = GuardVerdict(action, verdict, matched, redactions,  # type: ignore[arg-type]
                         tuple(policy.redact), limit)
    prompt_tokens = math.ceil(len(encode_utf8(guard_text(forwarded))) / BYTES_PER_TOKEN)
    completion = _completion_tokens(request, endpoint)
    native = ir.native_apis(route)
    refused = refusal(forwarded, native) if native else None
    if refused is not None:
        # gateway.lua answers it before the RBAC filter and the limits see the request
        return Branch(number, weight, _reject(400, refused[0], "translate", refused[1]),
                      system_message, guard, None)
    if verdict == "blocked":
        outcome = _reject(403, "content_blocked", "guardrails",
                          f"deny pattern {matched[0]!r} matches the text the provider would "
                          "read (action: block)")
        return Branch(number, weight, outcome, system_message, guard, None)
    logged = " (a deny pattern matched: logged, action log)" if verdict == "logged" else ""
    outcome = Outcome(200, "forwarded", "upstream",
                      f"forwarded to route {route.name}{logged}; the status is the provider's "
                      + ASSUMED)
    return Branch(number, weight, outcome, system_message, guard, forwarded,
                  prompt_tokens, completion)


def _limited(branch: Branch, refused: Outcome | None) -> Branch:
    """A branch that got past the guardrails, after the limits with known counts."""
    if not branch.outcome.forwarded:
        return branch
    if refused is not None:
        return replace(branch, outcome=refused, forwarded=None)
    message = branch.outcome.message.replace(ASSUMED, "(limits not exhausted at the counts "
                                                      "given)")
    return replace(branch, outcome=replace(branch.outcome, message=message))


def _main_branch(branches: Sequence[Branch]) -> Branch:
    return max(branches, key=lambda b: (b.weight, -(b.version or 0)))


def explain_request(ir: GatewayIR, request: ExplainRequest) -> Explanation:
    """What the gateway compiled into `ir` does with `request`."""
    exp = _explain(ir, request)
    route = next((r for r in ir.routes if r.name == exp.route), None)
    if route is None:
        return exp
    return replace(exp, cache=cache_verdict(ir, route, request.headers, exp.outcome.forwarded))


def _explain(ir: GatewayIR, request: ExplainRequest) -> Explanation:
    if request.consumer is not None and all(c.name != request.consumer for c in ir.consumers):
        raise UnknownConsumer(request.consumer)
    headers = request.headers
    key = presented_key(headers)
    consumer = request.consumer
    names = provider_names(ir)
    via = KEY
    if request.jwt_issuer is not None:
        # the first provider of that issuer, as jwt_authn tries them (lua/jwt.lua)
        via = next((n for p, n in names.items() if p.issuer == request.jwt_issuer), "")
        if not via or consumer is None:
            raise UnknownIssuer(request.jwt_issuer)
        key = None
    if consumer is not None:
        principal = f"consumer {consumer}" + (
            f" (JWT of {request.jwt_issuer})" if request.jwt_issuer else "")
    elif key is not None:
        principal = "an unknown key"
    else:
        principal = "no key"
    canary = False
    path = request.path.split("?", 1)[0]
    base = Explanation(path=path, requested_model=None, principal=principal, consumer=consumer,
                       canary_header=False, route=None, public_model=None,
                       outcome=_reject(404, "not_found", "path", ""))

    endpoint = ENDPOINTS.get(path)
    if endpoint is None:
        listing = ("; the model list, GET /v1/models and GET /v1/models/{model}, answers GET "
                   "only" if path == "/v1/models" or path.startswith("/v1/models/") else "")
        return replace(base, outcome=_reject(
            404, "not_found", "path", f"{path} is not an endpoint of the gateway (POST "
            f"/v1/chat/completions, /v1/completions or /v1/embeddings){listing}"))

    # -- the auth filter: headers only ----------------------------------------------------------
    anonymous_cap, consumer_caps = principal_caps(ir)
    if consumer is None:
        cap = anonymous_cap
    elif via == KEY:
        cap = consumer_caps.get(consumer)
    else:
        cap = jwt_caps(ir)[via].get(consumer)
    peek_model = _peek_model(request.body)
    if cap is None:
        not_read = f" (the body is not read; {peek_model})" if peek_model else ""
        if consumer is not None:
            return replace(base, outcome=_reject(
                403, "consumer_not_allowed", "auth",
                f"no route of this gateway allows consumer {consumer}{not_read}"))
        if key is None:
            return replace(base, outcome=_reject(
                401, "missing_api_key", "auth",
                f"every route needs an API key and the request has none{not_read}"))
        return replace(base, outcome=_reject(
            401, "invalid_api_key", "auth",
            "every route needs an API key and the key presented is no consumer's (explain "
            f"reads no secret: name the consumer with --consumer){not_read}"))
    size = len(request.body)
    if size > cap:
        return replace(base, outcome=_reject(
            413, "request_too_large", "auth",
            f"the body is {size} bytes; {principal} may send at most {cap} (the largest body "
            "limit among the routes it may use)"))
    coding = (_header(headers, "content-encoding") or "").strip(_WS).lower()
    if coding not in ("", "identity"):
        return replace(base, outcome=_reject(
            415, "unsupported_content_encoding", "auth",
            "the body is declared coded (Content-Encoding); the guardrails read it as sent, "
            "so the gateway takes uncompressed bodies only"))

    # -- the body filter --------------------------------------------------------------------------
    try:
        body = decode_body(request.body)
    except BodyError as err:
        return replace(base, outcome=_reject(400, err.code, "body", str(err)))
    model = body.get("model")
    if not isinstance(model, str):
        return replace(base, outcome=_reject(400, "missing_model", "body",
                                             "the request names no string `model`"))
    base = replace(base, requested_model=model)
    route = next((r for r in ir.routes if r.public_model == model), None)
    if route is None:
        shown = model if len(model) <= 80 else model[:80] + "..."
        return replace(base, outcome=_reject(404, "model_not_found", "route",
                                             f"no route serves the model `{shown}`"))
    rollout = route.rollout
    if rollout is not None:
        canary = _header(headers, rollout.canary_header) == "always"
    base = replace(
        base, route=route.name, public_model=route.public_model, canary_header=canary,
        backends=_backends(ir, route, canary),
        fallback=route.fallback, retry_attempts=route.retry_attempts,
        prompt_name=route.prompt.name if route.prompt else None,
        limits=_limits(ir, route, consumer, dict(request.used)),
    )
    native = ir.native_apis(route)
    if native and endpoint != "chat":
        return replace(base, outcome=_reject(
            400, "unsupported_endpoint", "route",
            f"route {route.name} reaches providers of other APIs ({', '.join(native)}), whose "
            "requests the gateway translates: it serves /v1/chat/completions only"))
    limit = route_body_limit(route)
    if size > limit:
        return replace(base, outcome=_reject(
            413, "request_too_large", "route",
            f"the body is {size} bytes; route {route.name} accepts at most {limit}"))
    policy = route.policy
    if consumer is not None and not open_to(route, consumer, via, route_providers(route, names)):
        accepted = (policy.api_keys or not policy.jwt) if via == KEY else via in route_providers(
            route, names)
        if not accepted and (policy.api_keys or policy.jwt):
            if via == KEY:
                return replace(base, outcome=_reject(
                    401, "invalid_api_key", "access",
                    f"route {route.name} takes JWTs only, not API keys"))
            return replace(base, outcome=_reject(
                401, "invalid_token", "access",
                f"route {route.name} does not take tokens of {request.jwt_issuer}"))
        if not accepted:
            consumer = None  # a credential the route does not take: anonymous there
    if (policy.api_keys or policy.jwt) and consumer is None:
        if key is not None:
            return replace(base, outcome=_reject(
                401, "invalid_api_key", "access",
                f"route {route.name} needs an API key and the key presented is no consumer's "
                "(explain reads no secret: name the consumer with --consumer)"))
        return replace(base, outcome=_reject(
            401, "missing_api_key", "access", f"route {route.name} needs an API key"))
    if policy.allow_consumers is not None and (consumer is None
                                               or consumer not in policy.allow_consumers):
        allowed = ", ".join(policy.allow_consumers) or "nobody"
        return replace(base, outcome=_reject(
            403, "consumer_not_allowed", "access",
            f"route {route.name} allows {allowed}; {principal} is not among them"))
    if route.prompt is not None and "prompt_variables" in body \
            and not isinstance(body["prompt_variables"], dict):
        return replace(base, outcome=_reject(400, "invalid_prompt_variables", "prompt",
                                             "`prompt_variables` must be an object"))

    # -- per prompt version: prompt, guardrails, limits, router ----------------------------------
    if route.prompt is not None:
        versions = [v for v in route.prompt.active if v.weight > 0]
        branches = [_branch(ir, route, body, endpoint, v, v.weight) for v in versions]
    else:
        branches = [_branch(ir, route, body, endpoint, None, 100)]
    refused = _refused_by_limit(base.limits)
    known = all(lim.used is not None for lim in base.limits if lim.enforced)
    if refused is not None or (known and base.limits):
        branches = [_limited(b, refused) for b in branches]
    main = _main_branch(branches)
    outcome = main.outcome
    statuses = {b.outcome.status for b in branches}
    if len(statuses) > 1:
        split = "; ".join(f"version {b.version} ({b.weight}%): {b.outcome.status}"
                          for b in branches)
        outcome = replace(outcome, message=f"{outcome.message} [the prompt version decides: "
                                           f"{split}]")
    backends = base.backends
    cost = 0.0
    if any(b.outcome.forwarded for b in branches):
        priced = []
        for choice in backends:
            m = ir.model(choice.model)
            per_branch = [
                b.weight / 100 * (b.prompt_tokens * m.input_per_million
                                  + b.completion_tokens * m.output_per_million) / 1e6
                for b in branches if b.outcome.forwarded
            ]
            priced.append(replace(choice, cost_usd=sum(per_branch)))
        backends = tuple(priced)
        cost = sum(c.weight / 100 * c.cost_usd for c in backends)
    return replace(base, outcome=outcome, branches=tuple(branches), guard=main.guard,
                   backends=backends, cost_usd=cost)


def _peek_model(body: bytes) -> str | None:
    """For a message only: which route the body's model names, if it can be read."""
    try:
        model = decode_body(body).get("model")
    except BodyError:
        return None
    return f"it asks for model `{model}`" if isinstance(model, str) and len(model) < 200 else None
