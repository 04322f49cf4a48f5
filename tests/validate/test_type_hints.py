"""A value of the wrong type gets a hint saying what to write, naming the YAML habit behind it
when there is one: a number in quotes, text that YAML reads as a number or a boolean."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatewayctl.manifests.manifest_set import load_manifest_set

BASE = """\
apiVersion: gatewayctl.dev/v1alpha1
kind: Gateway
metadata: {name: gw}
spec: {namespace: ai, replicas: {min: 1, max: 2}}
---
apiVersion: gatewayctl.dev/v1alpha1
kind: Provider
metadata: {name: openai}
spec: {type: openai, endpoint: https://api.openai.com}
---
apiVersion: gatewayctl.dev/v1alpha1
kind: Model
metadata: {name: gpt}
spec: {provider: openai}
---
apiVersion: gatewayctl.dev/v1alpha1
kind: Policy
metadata: {name: p}
spec: {auth: {apiKeys: APIKEYS}}
---
apiVersion: gatewayctl.dev/v1alpha1
kind: Route
metadata: {name: chat}
spec: {model: MODEL, backends: [{model: gpt, weight: WEIGHT}], policies: POLICIES}
"""
GOOD = {"APIKEYS": "true", "MODEL": "chat", "WEIGHT": "100", "POLICIES": "[p]"}


@pytest.mark.parametrize("field, value, summary, hint", [
    ("WEIGHT", '"100"', 'expected an integer, got "100"',
     "remove the quotes: a quoted value is text in YAML, not a number"),
    ("WEIGHT", "hundred", 'expected an integer, got "hundred"',
     "write a whole number without quotes, e.g. 3"),
    ("WEIGHT", "99.5", "expected an integer, got 99.5", "write a whole number, e.g. 3"),
    ("APIKEYS", "sure", 'expected true or false, got "sure"',
     "write true or false without quotes"),
    ("MODEL", "1.10", "expected a string, got 1.1",
     "put the value in quotes: YAML reads unquoted digits as a number (1.10 becomes 1.1, "
     "0755 becomes 493)"),
    ("MODEL", "false", "expected a string, got boolean false",
     "put the value in quotes: YAML reads an unquoted true or false as a boolean"),
    ("POLICIES", "p", 'expected a list, got "p"',
     "write a list: [a, b] on one line, or one `- item` line per entry"),
])
def test_hint(tmp_path: Path, field: str, value: str, summary: str, hint: str) -> None:
    text = BASE
    for name, good in GOOD.items():
        text = text.replace(name, value if name == field else good)
    (tmp_path / "gw.yaml").write_text(text, encoding="utf-8")
    _, diags = load_manifest_set(tmp_path)
    errors = [d for d in diags if d.is_error]
    assert [(d.code, d.summary, d.hint) for d in errors] == [("GW105", summary, hint)]


def test_the_base_root_is_valid(tmp_path: Path) -> None:
    text = BASE
    for name, good in GOOD.items():
        text = text.replace(name, good)
    (tmp_path / "gw.yaml").write_text(text, encoding="utf-8")
    assert [d for d in load_manifest_set(tmp_path)[1] if d.is_error] == []
