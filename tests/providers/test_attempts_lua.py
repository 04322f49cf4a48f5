"""Retries and fallbacks: Envoy sends every attempt of a request with the header map the
earlier attempt left (seen in a real Envoy: a Bedrock attempt's path and x-amz-* headers reached
the OpenAI fallback). Each attempt must therefore set what it needs from the client's request
and drop what an earlier attempt for another API added."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from gatewayctl.render.envoy import EnvoyOptions
from gatewayctl.render.envoy.lua import upstream_source
from gatewayctl.render.envoy.translate import translate_data
from gatewayctl.render.envoy.upstream import provider_data
from tests.providers import irs
from tests.providers.lua_harness import LuaFilter, TranslateFilter, target
from tests.render.harness import write_secrets

BODY = {"model": "x", "messages": [{"role": "user", "content": "hi"}]}


def _body(model: str) -> bytes:
    # as the body filter writes it: compact, `model` first
    return json.dumps({**BODY, "model": model}, separators=(",", ":")).encode()


def test_a_retry_to_a_provider_with_a_base_path_keeps_one_prefix(tmp_path: Path) -> None:
    ir = irs.build_ir()
    openai = dataclasses.replace(ir.provider("openai"), base_path="/openai")
    ir = dataclasses.replace(ir, providers=tuple(
        openai if p.name == "openai" else p for p in ir.providers))
    options = EnvoyOptions(secrets_dir=str(tmp_path))
    lua = LuaFilter(upstream_source({"providers": provider_data(ir, options), "secret_ttl_s": 10}))
    to_openai = target(irs.model_name("openai"), "openai", irs.UPSTREAM["openai"])

    first = lua.request(to_openai, _body(irs.model_name("openai")))
    retry = lua.request(to_openai, _body(irs.model_name("openai")), retry_of=first)

    assert first.headers[":path"] == "/openai/v1/chat/completions"
    assert retry.headers[":path"] == "/openai/v1/chat/completions"


def test_an_openai_fallback_after_bedrock_gets_nothing_of_the_bedrock_attempt(
    tmp_path: Path,
) -> None:
    write_secrets(tmp_path, irs.secrets())
    lua = TranslateFilter(translate_data(irs.build_ir(), EnvoyOptions(secrets_dir=str(tmp_path))))
    bedrock = lua.request(target(irs.model_name("bedrock"), "bedrock", irs.UPSTREAM["bedrock"]),
                          _body(irs.model_name("bedrock")))
    # what the signer adds after this filter, a session token among it
    signed = dataclasses.replace(bedrock, headers={
        **bedrock.headers, "authorization": "AWS4-HMAC-SHA256 Credential=...",
        "x-amz-date": "20261205T120000Z", "x-amz-content-sha256": "abc",
        "x-amz-security-token": "session-token"})

    fallback = lua.request(target(irs.model_name("openai"), "openai", irs.UPSTREAM["openai"]),
                           _body(irs.model_name("bedrock")), retry_of=signed)

    assert bedrock.headers[":path"].startswith("/model/")
    assert fallback.headers[":path"] == "/v1/chat/completions"
    assert fallback.headers["authorization"] == f"Bearer {irs.KEYS['openai']}"
    for name in ("x-amz-date", "x-amz-content-sha256", "x-amz-security-token", "x-gw-sign"):
        assert name not in fallback.headers, name
    assert fallback.json()["model"] == irs.UPSTREAM["openai"]


def test_an_anthropic_fallback_after_gemini_gets_no_google_key(tmp_path: Path) -> None:
    write_secrets(tmp_path, irs.secrets())
    lua = TranslateFilter(translate_data(irs.build_ir(), EnvoyOptions(secrets_dir=str(tmp_path))))
    gemini = lua.request(target(irs.model_name("gemini"), "gemini", irs.UPSTREAM["gemini"]),
                         _body(irs.model_name("gemini")))

    anthropic = lua.request(
        target(irs.model_name("anthropic"), "anthropic", irs.UPSTREAM["anthropic"]),
        _body(irs.model_name("gemini")), retry_of=gemini)

    assert gemini.headers["x-goog-api-key"] == irs.KEYS["gemini"]
    assert "x-goog-api-key" not in anthropic.headers
    assert anthropic.headers["x-api-key"] == irs.KEYS["anthropic"]
    assert anthropic.headers[":path"] == "/v1/messages"
