"""Values that would break the gateway later are refused by validate: Secret keys, endpoints
with parts the gateway would drop, Gateway names that cannot name its Kubernetes objects."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from gatewayctl.compile import compile_gateway
from gatewayctl.manifests.kinds import ProviderSpec
from gatewayctl.manifests.manifest_set import load_manifest_set
from gatewayctl.manifests.types import SecretRef
from gatewayctl.render.envoy import EnvoyOptions, render_envoy
from gatewayctl.render.k8s import render_kubernetes
from gatewayctl.validate import run_validate
from tests.conftest import REPO

QUICKSTART = REPO / "examples" / "quickstart"


@pytest.mark.parametrize("key", ["api-key", "key", ".hidden-ok", "a..b", "a.", "K_1.txt", "-"])
def test_kubernetes_secret_keys_are_accepted(key: str) -> None:
    assert SecretRef(name="s", key=key).key == key


@pytest.mark.parametrize("key", [".", "..", "..data", "..2026_01_01", "a/b", "../x", "a b", ""])
def test_keys_kubernetes_refuses_are_refused(key: str) -> None:
    with pytest.raises(ValidationError):
        SecretRef(name="s", key=key)


@pytest.mark.parametrize(
    ("endpoint", "problem"),
    [
        ("https://r.openai.azure.com/openai?api-version=2024-10-21", "a query string"),
        ("https://api.example.com/v1?", "a query string"),
        ("https://api.example.com/#docs", "a fragment"),
        ("https://me@api.example.com", "a user name or password"),
    ],
)
def test_endpoint_parts_the_gateway_would_drop_are_refused(endpoint: str, problem: str) -> None:
    with pytest.raises(ValidationError) as info:
        ProviderSpec.model_validate({"type": "openai", "endpoint": endpoint})
    assert problem in str(info.value)


def _root(tmp_path: Path, gateway_name: str) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    for f in QUICKSTART.glob("*.yaml"):
        text = f.read_text().replace("name: ai-gateway", f"name: {gateway_name}")
        (root / f.name).write_text(text)
    return root


_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def test_the_longest_valid_gateway_name_names_every_rendered_object(tmp_path: Path) -> None:
    name = "g" + "w" * 61 + "1"  # 63 characters
    root = _root(tmp_path, name)
    code, text = run_validate(root, output="text", strict=False, reports=[], colour=False)
    assert code == 0, text
    mset, _ = load_manifest_set(root)
    ir = compile_gateway(mset)
    objects = render_kubernetes(ir, render_envoy(ir, EnvoyOptions()))
    for obj in objects:
        meta = obj["metadata"]
        rule = _DNS1035 if obj["kind"] == "Service" else _DNS1123_SUBDOMAIN
        limit = 63 if obj["kind"] == "Service" else 253
        assert rule.match(meta["name"]) and len(meta["name"]) <= limit, meta["name"]
        for value in meta.get("labels", {}).values():
            assert _LABEL_VALUE.match(value) and len(value) <= 63, value
    assert name in {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}


@pytest.mark.parametrize("bad", ["1st-gateway", "g" * 64, "gateway-"])
def test_a_gateway_name_that_cannot_name_a_service_fails_validate(
    tmp_path: Path, bad: str
) -> None:
    code, text = run_validate(_root(tmp_path, bad), output="text", strict=False, reports=[])
    assert code == 1
    assert "error[GW106] metadata.name: " in text and "is not a valid Gateway name" in text
