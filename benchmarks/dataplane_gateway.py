"""The gateway under test: a manifest root with one route per policy feature, compiled and rendered.

Every route but bench-anthropic sends to the same model on one `openai-compatible` provider (the
mock). Routes:

    bench-none        no policy
    bench-auth        API keys (one consumer, key file in the secrets dir) + allow list
    bench-ratelimit   request limit by route, set far above what the benchmark can send
    bench-tokenlimit  token limit by route, likewise
    bench-guardrails  deny pattern + redaction (email, credit-card) + size limit
    bench-outguard    output guardrails: a deny pattern and email redaction on the reply (the
                      reply is read, checked and rewritten by outguard.lua); left out with
                      `outguard=False`, which renders the gateway with no output-guardrail
                      code at all
    bench-prompt      a prompt with two variables injected as the system message
    bench-full        all of the above, with both limits by consumer (as teams use them)
    bench-cache       the response cache alone (`cache: {ttl: 10m}`): the benchmark's variants
                      cache-hit (the same request every time: answered from the worker's store
                      after the first) and cache-miss (`cache-control: no-cache`: never served
                      from the store, every answer copied and stored, as a miss does); only
                      with `cache=True` (a gateway of its own in the benchmarks), since a cache
                      on one route costs the others ~8k instructions per request
    bench-anthropic   bench-full's policies and prompt on a model of an `anthropic` provider (the
                      same mock, answering Anthropic's Messages API): every request and reply
                      is translated (docs/data-plane.md); left out with `anthropic=False`, which
                      renders the gateway with no translation code at all

The access log cannot be switched off per route (the listener always logs), so its cost is
measured with a second Envoy whose rendered listener has the `access_log` entry removed
(`strip_access_log`); everything else in that config is byte-identical.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from gatewayctl.ir import JwtProviderIR, LimitsIR
from gatewayctl.pipeline import compile_root
from gatewayctl.render.envoy import loopback_options, render_envoy
from gatewayctl.render.envoy.bundle import dump_compact

PROVIDER = "bench"
UPSTREAM_MODEL = "gpt-4o"
ANTHROPIC_PROVIDER = "bench-anthropic"
ANTHROPIC_MODEL = "claude-3-5-sonnet-20241022"
CONSUMER_KEY = "sk-bench-0123456789abcdef0123456789abcdef"
FEATURES = ("none", "auth", "ratelimit", "tokenlimit", "guardrails", "outguard", "prompt",
            "full")
PROMPT_VARIABLES = {"product": "Acme Cloud", "language": "English"}

_HEAD = "apiVersion: gatewayctl.dev/v1alpha1\n"

_POLICIES = {
    "auth": "  auth: {apiKeys: true}\n  allow: {consumers: [bench-app]}\n",
    # A limit by consumer needs auth on the route; the single-feature routes limit by route.
    "ratelimit": "  rateLimit: {requests: 100000000, per: minute, by: route}\n",
    "tokenlimit": "  tokenLimit: {tokens: 1000000000, per: minute, by: route}\n",
    "ratelimit-consumer": "  rateLimit: {requests: 100000000, per: minute, by: consumer}\n",
    "tokenlimit-consumer": "  tokenLimit: {tokens: 1000000000, per: minute, by: consumer}\n",
    "guardrails": (
        "  guardrails:\n"
        "    maxRequestBytes: 65536\n"
        "    denyPatterns: ['(?i)ignore (all|previous) instructions']\n"
        "    action: block\n"
        "    redact: [email, credit-card]\n"
    ),
    "outguard": (
        "  outputGuardrails:\n"
        "    denyPatterns: ['(?i)internal use only']\n"
        "    action: block\n"
        "    redact: [email]\n"
    ),
}


FULL_POLICIES = ["auth", "ratelimit-consumer", "tokenlimit-consumer", "guardrails"]
CACHE_POLICY = "  cache: {ttl: 10m}\n"
# The cache variants: the route bench-cache, and the headers of each (a miss: no-cache).
CACHE_VARIANTS = {"cache-hit": {}, "cache-miss": {"cache-control": "no-cache"}}
CACHE_ROUTE = "cache"


def route_model(feature: str) -> str:
    """The public model name a client sends to reach a feature's route."""
    return f"bench-{feature}"


def write_root(root: Path, listener_port: int, anthropic: bool = True, cache: bool = False,
               outguard: bool = True) -> Path:
    """Write the manifest root; the consumer key itself goes to the secrets dir, not here."""
    root.mkdir(parents=True, exist_ok=True)
    docs = [
        _HEAD + "kind: Gateway\nmetadata: {name: bench}\nspec:\n  namespace: bench\n"
        f"  listener: {{port: {listener_port}}}\n",
        _HEAD + f"kind: Provider\nmetadata: {{name: {PROVIDER}}}\nspec:\n"
        "  type: openai-compatible\n  endpoint: http://127.0.0.1:9\n"
        "  auth: {secretRef: {name: bench-upstream, key: api-key}}\n"
        "  timeout: 30s\n  maxConnections: 1024\n",
        _HEAD + f"kind: Model\nmetadata: {{name: bench-model}}\nspec:\n  provider: {PROVIDER}\n"
        f"  upstreamModel: {UPSTREAM_MODEL}\n"
        "  pricing: {inputPerMillion: 2.5, outputPerMillion: 10}\n",
        _HEAD + "kind: Consumer\nmetadata: {name: bench-app}\nspec:\n  team: bench\n"
        "  apiKeySecretRef: {name: bench-app-key, key: key}\n",
        _HEAD + "kind: Prompt\nmetadata: {name: bench-prompt}\nspec:\n  versions:\n"
        "    - version: 1\n"
        '      template: "You are a support assistant for {{ product }}. '
        "Answer in {{ language | default('English') }}.\"\n"
        "      variables: {product: {required: true}, language: {required: false}}\n"
        "  active: [{version: 1, weight: 100}]\n",
    ]
    for name, body in _POLICIES.items():
        docs.append(_HEAD + f"kind: Policy\nmetadata: {{name: p-{name}}}\nspec:\n{body}")
    for feature in FEATURES:
        if feature == "outguard" and not outguard:
            continue
        policies = {"none": [], "prompt": [], "full": FULL_POLICIES}.get(feature, [feature])
        route = (
            _HEAD + f"kind: Route\nmetadata: {{name: {route_model(feature)}}}\nspec:\n"
            "  backends: [{model: bench-model, weight: 100}]\n  timeout: 30s\n"
            f"  policies: [{', '.join('p-' + p for p in policies)}]\n"
        )
        if feature in ("prompt", "full"):
            route += "  prompt: {name: bench-prompt}\n"
        docs.append(route)
    if cache:
        docs += [
            _HEAD + f"kind: Policy\nmetadata: {{name: p-cache}}\nspec:\n{CACHE_POLICY}",
            _HEAD + f"kind: Route\nmetadata: {{name: {route_model(CACHE_ROUTE)}}}\nspec:\n"
            "  backends: [{model: bench-model, weight: 100}]\n  timeout: 30s\n"
            "  policies: [p-cache]\n",
        ]
    if anthropic:
        docs += [
            _HEAD + f"kind: Provider\nmetadata: {{name: {ANTHROPIC_PROVIDER}}}\nspec:\n"
            "  type: anthropic\n  endpoint: http://127.0.0.1:9\n"
            "  auth: {secretRef: {name: bench-upstream, key: api-key}}\n"
            "  timeout: 30s\n  maxConnections: 1024\n",
            _HEAD + "kind: Model\nmetadata: {name: bench-claude}\nspec:\n"
            f"  provider: {ANTHROPIC_PROVIDER}\n  upstreamModel: {ANTHROPIC_MODEL}\n"
            "  maxOutputTokens: 1024\n  pricing: {inputPerMillion: 3, outputPerMillion: 15}\n",
            _HEAD + f"kind: Route\nmetadata: {{name: {route_model('anthropic')}}}\nspec:\n"
            "  backends: [{model: bench-claude, weight: 100}]\n  timeout: 30s\n"
            f"  policies: [{', '.join('p-' + p for p in FULL_POLICIES)}]\n"
            "  prompt: {name: bench-prompt}\n",
        ]
    (root / "gateway.yaml").write_text("---\n".join(docs))
    return root


def write_secrets(secrets_dir: Path) -> None:
    for name, key, value in (
        ("bench-app-key", "key", CONSUMER_KEY),
        ("bench-upstream", "api-key", "sk-upstream-not-checked"),
    ):
        (secrets_dir / name).mkdir(parents=True, exist_ok=True)
        (secrets_dir / name / key).write_text(value + "\n")


def render_gateway(
    work: Path,
    upstream_url: str,
    listener_port: int,
    admin_port: int,
    access_log: Path | None,
    anthropic: bool = True,
    cache: bool = False,
    outguard: bool = True,
    filters: str = "lua",
    shared: tuple[str, str] | None = None,
    jwt: JwtProviderIR | None = None,
) -> Path:
    """Compile a fresh manifest root in work, render it, write bootstrap + LDS/CDS files.

    Returns the bootstrap path. `access_log=None`: the same config without the access log.
    `anthropic=False`: without the route bench-anthropic and its provider. `cache=True`: with
    the route bench-cache (and so the cache filter, key module and cache counters; the other
    routes' numbers stay comparable with earlier runs only without it). `outguard=False`:
    without the route bench-outguard (no output-guardrail code in the gateway; the other
    routes measure the same with it: docs/performance.md#output-guardrails). `filters`: the
    Gateway's dataPlaneFilters ("module": Envoy needs the module's search path set). `shared`:
    the rate limit service's and the cache store service's addresses: `limits.scope: global`,
    so the cache's store is the one shared through Redis (no limit or budget is set: no route
    calls the rate limit service). `jwt`: every route that takes API keys takes this issuer's
    tokens too (bench_token() gives one naming bench-app).
    """
    root = write_root(work / "root", listener_port, anthropic, cache, outguard)
    secrets_dir = work / "secrets"
    write_secrets(secrets_dir)
    config_dir = work / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    ir = dataclasses.replace(compile_root(root).ir, data_plane_filters=filters)
    if shared is not None:
        ir = dataclasses.replace(
            ir, limits=LimitsIR(scope="global", redis_address="127.0.0.1:6379"))
    if jwt is not None:
        ir = dataclasses.replace(ir, routes=tuple(
            dataclasses.replace(r, policy=dataclasses.replace(r.policy, jwt=(jwt,)))
            if r.policy.api_keys else r for r in ir.routes))
    options = loopback_options(
        admin_port=admin_port,
        listener_port=listener_port,
        secrets_dir=str(secrets_dir),
        config_dir=str(config_dir),
        access_log_path=str(access_log or work / "unused.log"),
        provider_overrides={PROVIDER: upstream_url, ANTHROPIC_PROVIDER: upstream_url},
        ratelimit_address=shared[0] if shared else None,
        cache_store_address=shared[1] if shared else None,
    )
    bundle = render_envoy(ir, options)
    lds = bundle.lds if access_log is not None else strip_access_log(bundle.lds)
    (config_dir / "cds.json").write_text(dump_compact(bundle.cds))
    (config_dir / "rds.json").write_text(dump_compact(bundle.rds))
    (config_dir / "lds.json").write_text(dump_compact(lds))
    bootstrap = work / "bootstrap.json"
    bootstrap.write_text(dump_compact(bundle.bootstrap))  # JSON is YAML to Envoy
    return bootstrap


BENCH_ISSUER = "https://login.bench.test/"


def bench_jwt() -> tuple[JwtProviderIR, str]:
    """A token issuer with inline keys (RS256, generated here) and a token of it naming
    bench-app, valid for a day. Needs PyJWT and cryptography (the dev extras)."""
    import time

    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwks = json.dumps({"keys": [{**public, "kid": "bench", "alg": "RS256", "use": "sig"}]})
    now = int(time.time())
    claims = {"iss": BENCH_ISSUER, "aud": "bench", "sub": "bench-app", "iat": now,
              "exp": now + 86400}
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "bench"})
    provider = JwtProviderIR(issuer=BENCH_ISSUER, audiences=("bench",), consumer_claim="sub",
                             clock_skew_s=60, jwks_inline=jwks)
    return provider, token


def strip_access_log(lds: dict[str, Any]) -> dict[str, Any]:
    """A copy of the rendered LDS response whose listener writes no access log."""
    out: dict[str, Any] = json.loads(json.dumps(lds))
    for resource in out["resources"]:
        for chain in resource["filter_chains"]:
            for flt in chain["filters"]:
                flt["typed_config"].pop("access_log", None)
    return out


def request_body(model: str, *, prompt_variables: bool) -> bytes:
    """The benchmark request: a short chat turn with an email address to redact."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "user", "content": "Reply to jane.doe@example.com: say hello in one word."}
        ],
        "max_tokens": 16,
    }
    if prompt_variables:
        body["prompt_variables"] = PROMPT_VARIABLES
    return json.dumps(body, separators=(",", ":")).encode()
