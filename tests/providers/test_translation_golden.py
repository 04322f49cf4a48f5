"""Golden cases of the translation, per provider API, run through the shipped Lua.

`translation/requests/<case>.json` is an OpenAI chat request (and what it shows); its output
`translation/requests/<case>/<api>.json` is what the translating filter sends for it to each
native API (path, the headers it sets, the body), or the 400 it answers instead.
`translation/replies/<api>/<case>.json` is a provider's reply (a JSON body, an error, or a
stream: SSE events, Gemini's SSE chunks, or Bedrock's event-stream frames, fed in small odd-
sized pieces as a network delivers them); its output `<case>.out.json` is what the client
gets: the OpenAI status and body, or the OpenAI stream's events. `pytest --update-golden`
rewrites the outputs and deletes those of removed cases.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatewayctl.local.mock import eventstream
from gatewayctl.render.envoy import EnvoyOptions
from gatewayctl.render.envoy.translate import translate_data
from tests.goldens import check_golden, check_no_stale
from tests.providers import irs
from tests.providers.lua_harness import TranslateFilter, target
from tests.render.harness import write_secrets

HERE = Path(__file__).parent / "translation"
REQUESTS = sorted((HERE / "requests").glob("*.json"))
REPLIES = sorted((HERE / "replies").glob("*/*.json"))
REPLIES = [p for p in REPLIES if not p.name.endswith(".out.json")]
NATIVE = ("anthropic", "bedrock", "gemini")
SHOWN_HEADERS = (":path", "content-type", "accept", "anthropic-version", "x-api-key",
                 "x-goog-api-key", "x-gw-sign", "authorization")


@pytest.fixture(scope="module")
def lua(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TranslateFilter]:
    secrets = tmp_path_factory.mktemp("secrets")
    write_secrets(secrets, irs.secrets())
    yield TranslateFilter(translate_data(irs.build_ir(), EnvoyOptions(secrets_dir=str(secrets))))


def attempt_target(api: str) -> str:
    return target(irs.model_name(api), api, irs.UPSTREAM[api])


def request_body(request: dict[str, Any], api: str) -> bytes:
    """The body as the downstream filter forwards it: `model` first."""
    return json.dumps({"model": irs.model_name(api), **{k: v for k, v in request.items()
                                                          if k != "model"}}).encode()


def _shown(headers: dict[str, str]) -> dict[str, str]:
    out = {}
    for name in SHOWN_HEADERS:
        if name in headers:
            value = headers[name]
            out[name] = "<the provider's key>" if name in ("x-api-key", "x-goog-api-key") else value
    return out


def pretty(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def test_no_stale_outputs(update_golden: bool) -> None:
    wanted = {HERE / "requests" / p.stem / f"{api}.json" for p in REQUESTS for api in NATIVE}
    wanted |= {p.with_name(p.stem + ".out.json") for p in REPLIES}
    outputs = set((HERE / "requests").glob("*/*.json")) | set(HERE.glob("replies/*/*.out.json"))
    check_no_stale(HERE, outputs - wanted, update_golden)


@pytest.mark.parametrize("case", REQUESTS, ids=lambda p: p.stem)
def test_request(lua: TranslateFilter, case: Path, update_golden: bool) -> None:
    request = json.loads(case.read_text())["request"]
    for api in NATIVE:
        out = lua.request(attempt_target(api), request_body(request, api))
        if out.replied is not None:
            shown: dict[str, Any] = {"refused": {"status": int(out.replied["status"]),
                                                 "body": json.loads(out.replied["body"])}}
        else:
            shown = {"headers": _shown(out.headers), "body": out.json()}
        check_golden(case.parent / case.stem / f"{api}.json", pretty(shown), update_golden)


# Replies -------------------------------------------------------------------------------------

_CALL_ID = re.compile(r'"call_[0-9a-f]+"')
_CREATED = re.compile(r'"created":\s*\d+')


def normalised(text: str) -> str:
    """Values that depend on the clock: `created`, and the ids made for Gemini's calls."""
    return _CALL_ID.sub('"call_<generated>"', _CREATED.sub('"created":0', text))


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)] + [b""]


def stream_bytes(case: dict[str, Any]) -> tuple[str, bytes]:
    if "stream" in case:
        text = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in
                       case["stream"])
        return "text/event-stream", text.encode()
    if "sse" in case:
        text = "".join(f"data: {json.dumps(chunk)}\r\n\r\n" for chunk in case["sse"])
        return "text/event-stream", text.encode()
    frames = b""
    for name, payload in case["frames"]:
        raw = json.dumps(payload).encode()
        frames += (eventstream.exception(name[1:], raw) if name.startswith("!")
                   else eventstream.event(name, raw))
    return "application/vnd.amazon.eventstream", frames


def run_reply(lua: TranslateFilter, api: str, case: dict[str, Any],
              include_usage: bool = True) -> dict[str, Any]:
    streaming = any(k in case for k in ("stream", "sse", "frames"))
    request: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}
    if streaming:
        request |= {"stream": True, "stream_options": {"include_usage": include_usage}}
    lua.request(attempt_target(api), request_body(request, api))
    headers = {"x-amzn-requestid": "req-1", **case.get("headers", {})}
    if streaming:
        ctype, data = stream_bytes(case)
        out = lua.response(case["status"], {**headers, "content-type": ctype},
                           chunks=pieces(data, 7))
        events = [e.removeprefix("data: ") for e in normalised(out.body).split("\n\n") if e]
        return {"content-type": out.headers.get("content-type"),
                "events": [e if e == "[DONE]" else json.loads(e) for e in events],
                "usage kept for the body filter": out.metadata.get("gw.attempt", {}).get("usage")}
    raw = case.get("raw", json.dumps(case.get("body")))
    out = lua.response(case["status"], {**headers, "content-type": "application/json"},
                       raw.encode())
    return {"status": int(out.headers[":status"]), "content-type": out.headers["content-type"],
            "body": json.loads(normalised(out.body))}


@pytest.mark.parametrize("case", REPLIES, ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_reply(lua: TranslateFilter, case: Path, update_golden: bool) -> None:
    api = case.parent.name
    shown = run_reply(lua, api, json.loads(case.read_text()))
    check_golden(case.with_name(case.stem + ".out.json"), pretty(shown), update_golden)


@pytest.mark.parametrize("api", NATIVE)
def test_a_stream_without_include_usage_has_no_usage_event_but_keeps_it(
    lua: TranslateFilter, api: str
) -> None:
    case = json.loads((HERE / "replies" / api / "stream-text.json").read_text())

    out = run_reply(lua, api, case, include_usage=False)

    assert out["events"][-1] == "[DONE]"
    assert all(e == "[DONE]" or e["choices"] for e in out["events"])
    assert out["usage kept for the body filter"]["prompt_tokens"] > 0


def test_requests_cover_every_native_api_and_refusals() -> None:
    outputs = [json.loads(p.read_text()) for p in (HERE / "requests").glob("*/*.json")]
    assert sum("refused" in o for o in outputs) >= 10
    assert sum("body" in o for o in outputs) >= 30
