"""Body bounds without Envoy's buffer filter: on a module gateway the compiled auth filter sets
the stream's buffer limit to the principal's bound (+ 256 KiB) and the compiled body filter
buffers the body (listener.module_bounds_bodies). One gateway is served both ways (Lua: the
buffer filter and its body classes; module: neither) and gets the same requests at the edges
of every principal's bound (anonymous, two API-key consumers, a JWT consumer; a route the
module serves and one it leaves to the Lua body filter), with Content-Length and chunked: each
must get the same answer (status, the gateway's headers, body), the provider the same request
(body and framing), the access log the same line and the counters the same values."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("jwt")
pytest.importorskip("cryptography")

from gatewayctl.local.mock_provider import MockProviderConfig, start_mock_provider  # noqa: E402
from gatewayctl.pipeline import compile_root  # noqa: E402
from gatewayctl.render.envoy import render_envoy  # noqa: E402
from gatewayctl.render.envoy.body import BUFFER_FILTER, BUFFER_HEADROOM_BYTES  # noqa: E402
from gatewayctl.render.envoy.listener import module_bounds_bodies  # noqa: E402
from tests.render.conftest import needs_envoy  # noqa: E402
from tests.render.harness import (  # noqa: E402
    RunningEnvoy,
    loopback_options,
    raw_exchange,
    require_filters,
    running_envoy,
    with_filters,
    write_secrets,
)
from tests.render.test_jwt import AUDIENCE, ISSUER, _jwks, _key, _token  # noqa: E402

pytestmark = [needs_envoy, pytest.mark.envoy]

SMALL_KEY, BIG_KEY = "sk-gw-small-app-0123456789", "sk-gw-big-app-0123456789"
PROVIDER_KEY = "sk-provider-openai-abcdef"
# Each principal's bound: the largest limit among the routes it may use.
ANONYMOUS, SMALL, BIG, TOKEN = 3000, 5000, 9000, 7000
LOG_IGNORED = {"start_time", "duration_ms", "upstream_ms", "upstream_host", "bytes_received"}


def _root(path: Path, jwks: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    head = "apiVersion: gatewayctl.dev/v1alpha1\n"

    def limit(name: str, size: int) -> str:
        return (f"kind: Policy\nmetadata: {{name: {name}}}\nspec:\n"
                f"  guardrails: {{maxRequestBytes: {size}}}\n")

    def route(name: str, policies: str) -> str:
        return (f"kind: Route\nmetadata: {{name: {name}}}\nspec:\n"
                f"  backends: [{{model: gpt-4o, weight: 100}}]\n  policies: [{policies}]\n")

    docs = [
        "kind: Gateway\nmetadata: {name: gw}\nspec: {namespace: gw}\n",
        "kind: Provider\nmetadata: {name: openai}\nspec:\n  type: openai\n"
        "  endpoint: https://api.openai.com\n"
        "  auth: {secretRef: {name: openai-credentials, key: api-key}}\n",
        "kind: Model\nmetadata: {name: gpt-4o}\nspec: {provider: openai}\n",
        "kind: Consumer\nmetadata: {name: small-app}\nspec:\n  team: small\n"
        "  apiKeySecretRef: {name: small-app-key, key: key}\n",
        "kind: Consumer\nmetadata: {name: big-app}\nspec:\n  team: big\n"
        "  apiKeySecretRef: {name: big-app-key, key: key}\n",
        "kind: Consumer\nmetadata: {name: token-app}\nspec: {team: token}\n",
        "kind: Policy\nmetadata: {name: keys}\nspec:\n  auth: {apiKeys: true}\n",
        "kind: Policy\nmetadata: {name: sso}\nspec:\n  auth:\n    jwt:\n"
        f"      - issuer: {json.dumps(ISSUER)}\n        audiences: [{AUDIENCE}]\n"
        f"        jwks: {{inline: {json.dumps(jwks)}}}\n        consumerClaim: sub\n",
        "kind: Policy\nmetadata: {name: big-only}\nspec:\n  allow: {consumers: [big-app]}\n",
        "kind: Policy\nmetadata: {name: token-only}\nspec:\n  allow: {consumers: [token-app]}\n",
        # output guardrails: a route the module leaves to the Lua body filter
        "kind: Policy\nmetadata: {name: outguard}\nspec:\n  outputGuardrails:\n"
        "    denyPatterns: ['(?i)internal use only']\n    action: log\n",
        limit("anonymous", ANONYMOUS), limit("small", SMALL), limit("big", BIG),
        limit("token", TOKEN),
        route("open", "anonymous"),
        route("guarded", "anonymous, outguard"),
        route("keyed", "keys, small"),
        route("large", "keys, big-only, big"),
        route("sso", "sso, token-only, token"),
    ]
    (path / "gateway.yaml").write_text("---\n".join(head + d for d in docs))
    return path


def _body(model: str, size: int) -> bytes:
    """A chat request of exactly `size` bytes."""
    empty = json.dumps({"model": model, "messages": [{"role": "user", "content": ""}]},
                       separators=(",", ":"))
    body = empty.replace('"content":""', '"content":"' + "x" * (size - len(empty)) + '"')
    assert len(body) == size
    return body.encode()


def _embeddings(model: str, dims: int) -> bytes:
    """An embeddings request whose JSON reply is ~9.4 bytes per dimension (the mock's)."""
    return json.dumps({"model": model, "input": "hello", "dimensions": dims}).encode()


def _post(port: int, rid: str, headers: dict[str, str], body: bytes, chunked: bool,
          path: str = "/v1/chat/completions") -> tuple:
    """One POST on its own connection, written whole (or until Envoy stops reading), and the
    reply: status, the headers the gateway sets, body."""
    framing = "transfer-encoding: chunked" if chunked else f"content-length: {len(body)}"
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (f"POST {path} HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n"
               f"content-type: application/json\r\nx-request-id: {rid}\r\n{head}{framing}\r\n\r\n"
               ).encode()
    if chunked:  # 1000-byte chunks, the last one short
        pieces = [body[i:i + 1000] for i in range(0, len(body), 1000)]
        request += b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    else:
        request += body
    head_bytes, _, payload = raw_exchange(port, [request]).partition(b"\r\n\r\n")
    lines = head_bytes.decode().split("\r\n")
    status = int(lines[0].split(" ")[1])
    reply = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if reply.get("transfer-encoding") == "chunked":
        data, rest = bytearray(), payload
        while rest:
            size_text, _, rest = rest.partition(b"\r\n")
            size = int(size_text, 16)
            data += rest[:size]
            rest = rest[size + 2:]
            if size == 0:
                break
        payload = bytes(data)
    kept = {k: v for k, v in reply.items() if k.startswith("x-gateway-") or k == "content-type"}
    return status, kept, payload


@contextlib.contextmanager
def _gateway(tmp_path: Path, filters: str, key: Any) -> Iterator[tuple[RunningEnvoy, Any, bool]]:
    require_filters(filters)
    mock = start_mock_provider(config=MockProviderConfig(name="openai",
                                                         require_key=PROVIDER_KEY))
    secrets = tmp_path / "secrets"
    write_secrets(secrets, {("openai-credentials", "api-key"): PROVIDER_KEY,
                            ("small-app-key", "key"): SMALL_KEY,
                            ("big-app-key", "key"): BIG_KEY})
    options = loopback_options(tmp_path, secrets, provider_overrides={"openai": mock.url})
    ir = with_filters(compile_root(_root(tmp_path / "root", _jwks(key, "k1"))).ir, filters)
    bundle = render_envoy(ir, options)
    try:
        with running_envoy(tmp_path / "envoy", bundle, listener_port=options.listener_port,
                           admin_port=options.admin_port, access_log=tmp_path / "access.log",
                           concurrency=1) as envoy:
            unbuffered = BUFFER_FILTER not in json.dumps(bundle.lds)
            yield envoy, mock, module_bounds_bodies(ir, options) and unbuffered
    finally:
        mock.stop()


def _cases(token: str) -> list[tuple[str, str, dict[str, str], int, bool]]:
    """(request id, model, headers, body size, chunked): each principal's bound, one byte over,
    and (chunked: Content-Length is refused from the headers) the stream's buffer bound and one
    byte over it."""
    principals = [
        ("anon", "open", {}, ANONYMOUS),
        ("lua", "guarded", {}, ANONYMOUS),  # the Lua body filter's route on a module gateway
        ("small", "keyed", {"x-api-key": SMALL_KEY}, SMALL),
        ("big", "large", {"authorization": f"Bearer {BIG_KEY}"}, BIG),
        ("token", "sso", {"authorization": f"Bearer {token}"}, TOKEN),
    ]
    out = []
    for name, model, headers, cap in principals:
        for chunked in (False, True):
            sizes = [cap, cap + 1]
            if chunked:
                sizes += [cap + BUFFER_HEADROOM_BYTES, cap + BUFFER_HEADROOM_BYTES + 1]
            for size in sizes:
                rid = f"{name}-{'chunked' if chunked else 'length'}-{size}"
                out.append((rid, model, headers, size, chunked))
    return out


def _at_provider(records: list[dict[str, Any]]) -> dict[str, tuple]:
    out = {}
    for r in records:
        items = r["headers"].items() if isinstance(r["headers"], dict) else r["headers"]
        headers = {k.lower(): v for k, v in items}
        out[headers.get("x-request-id", "")] = (
            json.dumps(r["body"]), headers.get("content-length"),
            headers.get("transfer-encoding"), headers.get("authorization"))
    return out


def _counters(envoy: RunningEnvoy) -> dict[str, int]:
    """The listener's request counters and the gateway's own (gatewayctl.*)."""
    out = {}
    for line in envoy.admin("/stats").splitlines():
        name, _, value = line.partition(": ")
        if (name.startswith("http.gateway.downstream_rq_") or name.startswith("gatewayctl.")) \
                and value.strip().isdigit():
            out[name] = int(value)
    return out


def test_module_bounds_bodies_as_the_buffer_filter_does(tmp_path: Path) -> None:
    key = _key()
    token = _token(key, "k1", sub="token-app")
    cases = _cases(token)
    # the stream's bound holds the reply the body filter buffers for its usage too: ~75 KB
    # fits the anonymous bound (3000 + 256 KiB), ~375 KB does not
    replies = [(f"reply-{model}-{dims}", model, dims) for model in ("open", "guarded")
               for dims in (8000, 40000)]
    answers: dict[str, dict[str, tuple]] = {}
    provider: dict[str, dict[str, tuple]] = {}
    logs: dict[str, dict[str, dict[str, Any]]] = {}
    counters: dict[str, dict[str, int]] = {}
    for filters in ("lua", "module"):
        with _gateway(tmp_path / filters, filters, key) as (envoy, mock, unbuffered):
            # the module gateway runs without the buffer filter; the Lua one with it
            assert unbuffered == (filters == "module")
            answers[filters] = {rid: _post(envoy.listener_port, rid, headers,
                                           _body(model, size), chunked)
                                for rid, model, headers, size, chunked in cases}
            for rid, model, dims in replies:
                answers[filters][rid] = _post(envoy.listener_port, rid, {},
                                              _embeddings(model, dims), False, "/v1/embeddings")
            provider[filters] = _at_provider(mock.requests())
            wanted = {rid for rid, *_ in cases} | {rid for rid, *_ in replies}
            logs[filters] = {line["request_id"]: {k: v for k, v in line.items()
                                                  if k not in LOG_IGNORED}
                             for line in envoy.access_log_for(wanted, timeout_s=20)
                             if line.get("request_id") in wanted}
            counters[filters] = _counters(envoy)
    lua, module = answers["lua"], answers["module"]
    for rid in [rid for rid, *_ in cases] + [rid for rid, *_ in replies]:
        assert module[rid] == lua[rid], (rid, lua[rid][:2], module[rid][:2])
        assert provider["module"].get(rid) == provider["lua"].get(rid), rid
        line = dict(logs["module"].get(rid) or {})
        if line.get("details") == "gatewayctl_auth":  # the compiled auth filter's own details
            line["details"] = "lua_response"  # (docs/data-plane.md, "Compiled filters")
        assert line == logs["lua"].get(rid), rid
    assert counters["module"] == counters["lua"]

    def code(rid: str) -> tuple[int, str]:
        status, _, body = lua[rid]
        try:
            return status, json.loads(body)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            return status, body.decode()[:40]

    for name, cap in (("anon", ANONYMOUS), ("lua", ANONYMOUS), ("small", SMALL), ("big", BIG),
                      ("token", TOKEN)):
        for framing in ("length", "chunked"):
            # exactly the bound: served, and the provider got it with a Content-Length (also
            # when it came chunked: the buffer filter adds one, and so does the module)
            rid = f"{name}-{framing}-{cap}"
            assert lua[rid][0] == 200, (rid, code(rid))
            length, encoding = provider["lua"][rid][1:3]
            assert length is not None and encoding is None, (rid, length, encoding)
            # one byte over: the auth filter (Content-Length) or the body filter (chunked)
            assert code(f"{name}-{framing}-{cap + 1}") == (413, "request_too_large")
        # the stream's bound: buffered whole, then the body filter's 413; one byte over it:
        # Envoy's own 413 while the body arrives (the same JSON error: local_reply.py)
        at = f"{name}-chunked-{cap + BUFFER_HEADROOM_BYTES}"
        assert code(at) == (413, "request_too_large")
        assert logs["lua"][at]["details"] == "lua_response"
        over = f"{name}-chunked-{cap + BUFFER_HEADROOM_BYTES + 1}"
        assert code(over) == (413, "request_too_large")
        assert logs["lua"][over]["details"] == "request_payload_too_large"
        assert over not in provider["lua"]
    assert counters["lua"]["http.gateway.downstream_rq_too_large"] == 5
    for model in ("open", "guarded"):
        assert lua[f"reply-{model}-8000"][0] == 200
        assert lua[f"reply-{model}-40000"][0] == 500
