"""`render --target litellm` served by the real LiteLLM proxy (PyPI `litellm[proxy]`) against the
mock provider: it answers the same public model names, sends each to the upstream model the
manifests name, needs the master key where the routes need keys, and falls back as the routes
do. The proxy is found as GATEWAYCTL_LITELLM (the `litellm` script; `.ci/run` installs it in
`.cache/litellm-venv`), or in the data-plane benchmark's cache.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gatewayctl.local.mock_provider import (
    FaultConfig,
    FaultRule,
    MockProviderConfig,
    MockProviderHandle,
    start_mock_provider,
)
from gatewayctl.pipeline import compile_root
from gatewayctl.render.litellm import MASTER_KEY_ENV, env_name, render_litellm
from tests.conftest import REPO
from tests.render.harness import free_port

pytestmark = [pytest.mark.slow]

MASTER_KEY = "gw-litellm-master-test"
START_TIMEOUT_S = 300


def litellm_script() -> Path | None:
    candidates = [os.environ.get("GATEWAYCTL_LITELLM", ""),
                  str(REPO / ".cache" / "litellm-venv" / "bin" / "litellm"),
                  str(Path.home() / ".cache" / "gatewayctl-bench" / "litellm-venv" / "bin"
                      / "litellm")]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


@dataclass
class Proxy:
    port: int
    mock: MockProviderHandle
    log: Path

    def call(self, path: str, body: dict[str, Any], key: str | None = MASTER_KEY,
             method: str = "POST") -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        headers = {"content-type": "application/json"}
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        try:
            conn.request(method, path, body=json.dumps(body) if method == "POST" else None,
                         headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            try:
                return resp.status, json.loads(data)
            except ValueError:
                return resp.status, data.decode(errors="replace")
        finally:
            conn.close()


def _root_on_mock(tmp: Path, mock_url: str) -> Path:
    root = tmp / "root"
    shutil.copytree(REPO / "examples" / "multi-team", root)
    providers = root / "providers.yaml"
    text = providers.read_text()
    for endpoint in ("https://api.openai.com", "https://api.anthropic.com",
                     "http://llm-serving.ml-platform.svc.cluster.local:8000"):
        text = text.replace(f"endpoint: {endpoint}", f"endpoint: {mock_url}")
    providers.write_text(text)
    return root


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    script = litellm_script()
    if script is None:
        pytest.skip("the LiteLLM proxy (litellm[proxy]; .ci/run installs it) is not installed")
    work = tmp_path_factory.mktemp("litellm")
    mock = start_mock_provider(config=MockProviderConfig(name="mock"))
    ir = compile_root(_root_on_mock(work, mock.url)).ir
    config = work / "config.yaml"
    config.write_text(render_litellm(ir).text())
    port = free_port()
    env = {**os.environ, "LITELLM_TELEMETRY": "False", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "DISABLE_SCHEMA_UPDATE": "True", "NO_DOCS": "True", MASTER_KEY_ENV: MASTER_KEY}
    env.pop("DATABASE_URL", None)
    for p in ir.providers:
        if p.credential is not None:
            env[env_name(p.credential)] = f"provider-key-{p.name}"
    log = work / "litellm.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(script), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
             "--num_workers", "1"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=work, start_new_session=True)
    running = Proxy(port, mock, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"litellm exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                status, _ = running.call("/health/liveliness", {}, method="GET")
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"litellm did not start in {START_TIMEOUT_S}s:\n"
                            f"{log.read_text()[-3000:]}")
            time.sleep(1)
        yield running
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the proxy's own session: its workers too
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        mock.stop()


def _received(mock: MockProviderHandle) -> list[tuple[str, str]]:
    return [(r["path"], r["model"]) for r in mock.requests()]


def test_the_same_public_models_answer(proxy: Proxy) -> None:
    status, listing = proxy.call("/v1/models", {}, method="GET")
    assert status == 200
    names = {m["id"] for m in listing["data"]}
    assert {"chat", "support-assistant", "llama-70b", "text-embedding-3-small"} <= names
    expected = {
        "support-assistant": "gpt-4o-2024-08-06",
        "llama-70b": "meta-llama/Llama-3.1-70B-Instruct",
    }
    for public, upstream in expected.items():
        proxy.mock.clear_requests()
        status, reply = proxy.call("/v1/chat/completions", {
            "model": public, "messages": [{"role": "user", "content": "hi"}]})
        assert status == 200, reply
        assert reply["choices"][0]["message"]["content"]
        assert _received(proxy.mock) == [("/v1/chat/completions", upstream)]
    proxy.mock.clear_requests()
    status, reply = proxy.call("/v1/embeddings", {"model": "text-embedding-3-small",
                                                  "input": "hello"})
    assert status == 200, reply
    assert _received(proxy.mock) == [("/v1/embeddings", "text-embedding-3-small")]


def test_weights_reach_both_chat_backends(proxy: Proxy) -> None:
    proxy.mock.clear_requests()
    for _ in range(60):
        status, reply = proxy.call("/v1/chat/completions", {
            "model": "chat", "messages": [{"role": "user", "content": "hi"}]})
        assert status == 200, reply
    models = [m for _, m in _received(proxy.mock)]
    assert set(models) <= {"gpt-4o-2024-08-06", "gpt-4o-2024-11-20"}
    assert models.count("gpt-4o-2024-08-06") > models.count("gpt-4o-2024-11-20")


def test_the_master_key_is_required(proxy: Proxy) -> None:
    # (LiteLLM answers a missing key with its own status, 401 or 500 depending on the
    # version; what matters here is that nothing reaches the provider)
    proxy.mock.clear_requests()
    for key in (None, "wrong"):
        status, _ = proxy.call("/v1/chat/completions", {
            "model": "chat", "messages": [{"role": "user", "content": "hi"}]}, key=key)
        assert status >= 400
    assert _received(proxy.mock) == []


def test_fallback_to_the_anthropic_model(proxy: Proxy) -> None:
    failing = FaultRule(error_rate=1.0, error_status=503)
    proxy.mock.set_faults(FaultConfig(models={"gpt-4o-2024-08-06": failing,
                                              "gpt-4o-2024-11-20": failing}))
    try:
        proxy.mock.clear_requests()
        status, reply = proxy.call("/v1/chat/completions", {
            "model": "chat", "messages": [{"role": "user", "content": "hi"}]})
    finally:
        proxy.mock.set_faults(FaultConfig())
    assert status == 200, reply
    received = _received(proxy.mock)
    assert received[-1] == ("/v1/messages", "claude-sonnet-4-5"), received
