"""The merge-request note stays readable on examples/multi-team against a cluster.

Measured on the Kubernetes API fake: a canary weight step and a new provider (a Secret mounted,
a cluster, Lua data) each give a note under 10 KB with no line over 4,000 characters; the Lua
sources never appear whole, only the data that changed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.fakes.kubeapi import KubeAPIServer
from tests.plan.conftest import Cli

LIMIT = 10_000
PROVIDER = """---
apiVersion: gatewayctl.dev/v1alpha1
kind: Provider
metadata: {name: mistral}
spec:
  type: openai-compatible
  endpoint: https://api.mistral.ai
  auth: {secretRef: {name: mistral-credentials, key: api-key}}
---
apiVersion: gatewayctl.dev/v1alpha1
kind: Model
metadata: {name: mistral-large}
spec:
  provider: mistral
  pricing: {inputPerMillion: 2.00, outputPerMillion: 6.00}
"""


def _step(root: Path) -> None:
    path = root / "rollouts.yaml"
    path.write_text(path.read_text().replace("  step: 1 ", "  step: 2 ", 1))


def _provider(root: Path) -> None:
    with (root / "providers.yaml").open("a") as f:
        f.write(PROVIDER)
    routes = root / "routes.yaml"
    routes.write_text(routes.read_text().replace("fallback: [", "fallback: [mistral-large, ", 1))


@pytest.mark.parametrize("change", [_step, _provider], ids=["weight step", "new provider"])
def test_the_note_of_a_change_is_small(cli: Cli, tmp_path: Path, kube_server: KubeAPIServer,
                                        kubeconfig: Path, change: object) -> None:
    root = tmp_path / "multi-team"
    shutil.copytree(REPO / "examples" / "multi-team", root)
    kube = ("--live", "kubernetes", "--kubeconfig", str(kubeconfig))
    assert cli("apply", str(root), *kube, "--auto-approve", "--timeout", "10s").exit_code == 0
    change(root)  # type: ignore[operator]

    note = cli("plan", str(root), *kube, "-o", "markdown", "--detailed-exitcode")

    assert note.exit_code == 2, note.output
    size = len(note.stdout.encode())
    print(f"{change.__name__}: {size} bytes")  # type: ignore[attr-defined]
    assert size < LIMIT, note.stdout
    assert max(len(line) for line in note.stdout.splitlines()) < 4_000
    assert "function envoy_on_request" not in note.stdout
