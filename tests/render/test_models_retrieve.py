"""GET /v1/models/{model}: the OpenAI SDK's `client.models.retrieve(...)` on a real Envoy.

200 with the list's entry for the model, byte for byte; an id no route serves gets the 404
`model_not_found` an unknown `model` in a POST gets. Public names may hold `/` and `:` (the
SDK escapes `/` as %2F) and `.`, which must match only a dot. Both kinds of gateway (Lua and
the compiled module) serve the same route table.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from gatewayctl.local.mock_provider import MockProviderConfig, start_mock_provider
from gatewayctl.render.envoy.routes import model_body, model_paths, models_list_body
from tests.render import irs
from tests.render.conftest import needs_envoy
from tests.render.harness import RunningEnvoy, irs_gateway, with_filters

SLASHED = "meta/llama-3.1:70b"
DOTTED = "gpt-4.1"
EXTRA = ((SLASHED, "slashed"), (DOTTED, "dotted"))


def _ir() -> Any:
    ir = irs.build_ir()
    routes = ir.routes + tuple(
        irs._route(name, [("gpt-4o-2024-08-06", 100)], public=public) for public, name in EXTRA
    )
    return dataclasses.replace(ir, routes=routes)


def test_the_entry_is_the_lists_own_bytes() -> None:
    ir = _ir()
    listing = models_list_body(ir)
    entries = json.loads(listing)["data"]
    assert {e["id"] for e in entries} == {r.public_model for r in ir.routes}
    for route in ir.routes:
        body = model_body(ir, route.public_model)
        assert body in listing
        assert json.loads(body) in entries


def test_the_forms_a_name_is_asked_by() -> None:
    assert model_paths("chat") == ["/v1/models/chat"]
    assert model_paths(SLASHED) == [
        "/v1/models/meta%2Fllama-3.1:70b",  # the openai SDK's
        "/v1/models/meta/llama-3.1:70b",  # as is
        "/v1/models/meta%2Fllama-3.1%3A70b",  # encodeURIComponent
    ]
    # Paths Envoy's normalization would rewrite are not matched as is.
    assert model_paths("a//b") == ["/v1/models/a%2F%2Fb"]
    assert model_paths("a/../b") == ["/v1/models/a%2F..%2Fb"]


@pytest.fixture(scope="module", params=["lua", "module"])
def envoy(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEnvoy]:
    ir = with_filters(_ir(), request.param)
    mock = start_mock_provider(config=MockProviderConfig(name="openai",
                                                         require_key=irs.OPENAI_KEY))
    try:
        with irs_gateway(tmp_path_factory.mktemp("retrieve"), ir, mock.url) as running:
            yield running
    finally:
        mock.stop()


def _client(envoy: RunningEnvoy) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{envoy.listener_port}/v1",
                         api_key="unused", max_retries=0, timeout=20)


@needs_envoy
@pytest.mark.envoy
def test_sdk_retrieves_every_listed_model(envoy: RunningEnvoy) -> None:
    client = _client(envoy)
    listed = client.models.list().data
    assert {m.id for m in listed} >= {SLASHED, DOTTED, "chat", "llama-70b"}
    for model in listed:
        got = client.models.retrieve(model.id)
        assert got == model
        assert (got.id, got.object, got.created, got.owned_by) == (
            model.id, "model", 0, irs.build_ir().name)
    listing = envoy.request("GET", "/v1/models").body
    for form in model_paths(SLASHED):
        resp = envoy.request("GET", form + "?unused=1")
        assert resp.status == 200, form
        assert resp.headers["content-type"] == "application/json"
        assert resp.body in listing
        assert json.loads(resp.body)["id"] == SLASHED
    # Normalization decodes an escaped unreserved character: %2E is a dot.
    assert envoy.request("GET", "/v1/models/gpt-4%2E1").json()["id"] == DOTTED


@needs_envoy
@pytest.mark.envoy
def test_unknown_id_is_the_posts_model_not_found(envoy: RunningEnvoy) -> None:
    client = _client(envoy)
    post = envoy.chat("no-such-model")
    assert post.status == 404
    posted = post.json()["error"]
    # A . is a dot, not any character; a name with a space (sent as %20) is no public name.
    for model in ("no-such-model", "gpt-4x1", "meta/llama-3.1:70", "no such model"):
        with pytest.raises(openai.NotFoundError) as caught:
            client.models.retrieve(model)
        err = caught.value
        assert err.status_code == 404
        assert err.code == posted["code"] == "model_not_found"
        assert err.type == posted["type"] == "invalid_request_error"
        assert err.response.headers["content-type"].startswith("application/json")
    # The SDK's paths as Envoy received them: / escaped as %2F, a space as %20.
    wanted = {"/v1/models/meta%2Fllama-3.1:70", "/v1/models/no%20such%20model"}
    deadline = time.monotonic() + 10
    while not wanted <= {line["path"] for line in envoy.access_log_lines(0)}:
        assert time.monotonic() < deadline, [line["path"] for line in envoy.access_log_lines(0)]
        time.sleep(0.1)
    # Other methods and paths keep the plain not_found.
    for method, path in (("POST", "/v1/models/chat"), ("GET", "/v1/modelsx"),
                         ("GET", "/v1/models-chat")):
        resp = envoy.request(method, path, {"model": "chat"} if method == "POST" else None)
        assert resp.status == 404, (method, path)
        assert resp.json()["error"]["code"] == "not_found", (method, path)
