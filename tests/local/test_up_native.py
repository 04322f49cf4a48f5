"""`gatewayctl up` with a provider of every API: the mock stands in for each (their endpoints are
unreachable and there is no `.secrets/`), speaking each API strictly, so a client speaking
OpenAI's API gets answers through all of them; a Bedrock provider is signed (SigV4) with the
mock's AWS credentials, which the mock checks with botocore, with or without `auth`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from gatewayctl.local.process import free_port
from tests.cli.helpers import gatewayctl

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

HEAD = "apiVersion: gatewayctl.dev/v1alpha1\n"
PROVIDERS = {
    "openai": "type: openai, endpoint: http://127.0.0.1:{port}, "
              "auth: {{secretRef: {{name: openai, key: api-key}}}}",
    "claude": "type: anthropic, endpoint: http://127.0.0.1:{port}, "
              "auth: {{secretRef: {{name: anthropic, key: api-key}}}}",
    "aws": "type: bedrock, endpoint: http://127.0.0.1:{port}, region: us-east-1, "
           "auth: {{secretRef: {{name: aws, key: credentials}}}}",
    "aws-pod": "type: bedrock, endpoint: http://127.0.0.1:{port}, region: eu-west-1",
    "google": "type: gemini, endpoint: http://127.0.0.1:{port}",
}
MODELS = {"gpt": ("openai", "gpt-4o"), "sonnet": ("claude", "claude-sonnet-4-5"),
          "nova": ("aws", "amazon.nova-pro-v1:0"), "titan": ("aws-pod", "amazon.titan-text"),
          "flash": ("google", "gemini-2.5-flash")}


def write_root(root: Path, listener: int) -> None:
    root.mkdir()
    closed = free_port()  # nothing listens there: every provider is mocked
    docs = [HEAD + "kind: Gateway\nmetadata: {name: local}\nspec: {namespace: ai, "
            f"listener: {{port: {listener}}}}}\n"]
    docs += [HEAD + f"kind: Provider\nmetadata: {{name: {name}}}\nspec: {{"
             + spec.format(port=closed) + "}\n" for name, spec in PROVIDERS.items()]
    docs += [HEAD + f"kind: Model\nmetadata: {{name: {name}}}\nspec: {{provider: {provider}, "
             f'upstreamModel: "{upstream}"}}\n' for name, (provider, upstream) in MODELS.items()]
    docs += [HEAD + f"kind: Route\nmetadata: {{name: {name}}}\n"
             f"spec: {{backends: [{{model: {name}, weight: 100}}]}}\n" for name in MODELS]
    docs += [HEAD + "kind: Route\nmetadata: {name: nova-or-gpt}\n"
             "spec: {backends: [{model: nova, weight: 100}], fallback: [gpt]}\n"]
    (root / "gateway.yaml").write_text("---\n".join(docs))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[openai.OpenAI, str]]:
    env = {"GATEWAYCTL_STATE_DIR": str(tmp_path / "state")}
    listener = free_port()
    write_root(tmp_path / "root", listener)
    # a free admin port, not the default 9901: another Envoy on the machine may hold that one
    up = gatewayctl("up", str(tmp_path / "root"), "--admin-port",
                    str(free_port(frozenset({listener}))), env=env)
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        yield openai.OpenAI(base_url=f"http://127.0.0.1:{listener}/v1", api_key="none",
                            max_retries=0), up.stdout
    finally:
        gatewayctl("down", env=env)


def test_every_provider_type_answers_through_the_local_gateway(
    served: tuple[openai.OpenAI, str]
) -> None:
    client, printed = served
    for provider in PROVIDERS:
        assert f"provider {provider}: local mock" in printed
    for route, (_, upstream) in MODELS.items():
        reply = client.chat.completions.create(
            model=route, messages=[{"role": "user", "content": "hello"}])
        assert reply.choices[0].message.content == f"[mock:{upstream}] hello", route
        chunks = list(client.chat.completions.create(
            model=route, stream=True, messages=[{"role": "user", "content": "hello"}]))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
            f"[mock:{upstream}] hello", route
