"""Diagnostics never echo a credential-looking value, and the loader reads nothing through links
that lead out of the manifest root (or into its hidden folders)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from gatewayctl.validate import run_validate
from tests.conftest import REPO
from tests.test_no_secret_leaks import leaks, pieces_of

QUICKSTART = REPO / "examples" / "quickstart"

# Each canary once in a field where it does not belong; none may appear in any output, not even
# a prefix long enough to narrow it down.
OPENAI = "sk-proj-Canary0penAiKey7Hq2Lm9Xv4Rt8Yb1Nc6Wd3Zf5Gs"
ANTHROPIC = "sk-ant-api03-CanaryAnthropicKey2Hq7Lm4Xv9Rt1Yb8Nc"
AWS = "AKIACANARY7HQ2LM9XV4"
GITLAB = "glpat-CanaryGitLabToken2Hq7Lm4"
RANDOM = "Zq7Hk2Lm9Xv4Rt8Yb1Nc6Wd3Zf5Gs0Pe"  # no known shape: only looks random
CANARIES = (OPENAI, ANTHROPIC, AWS, GITLAB, RANDOM)

WRONG_FIELDS = f"""\
apiVersion: gatewayctl.dev/v1alpha1
kind: Model
metadata: {{name: leaky}}
spec:
  provider: openai
  contextWindow: "{OPENAI}"
  upstreamModel: 12
---
apiVersion: gatewayctl.dev/v1alpha1
kind: Route
metadata: {{name: leaky-route}}
spec:
  backends: [{{model: gpt-4o-2024-08-06, weight: 100}}]
  timeout: "{ANTHROPIC}"
  retry: {{attempts: 1, perTryTimeout: "Bearer {RANDOM}"}}
---
apiVersion: gatewayctl.dev/v1alpha1
kind: Policy
metadata: {{name: "{AWS}"}}
spec:
  guardrails: {{action: "{GITLAB}"}}
---
apiVersion: gatewayctl.dev/v1alpha1
kind: Consumer
metadata: {{name: app}}
spec:
  apiKeySecretRef: {{name: app-key, key: key}}
  {RANDOM}: 1
---
apiVersion: gatewayctl.dev/v1alpha1
kind: Model
metadata: {{name: leaky-provider}}
spec:
  provider: {OPENAI.lower()}
"""


# A truncated echo is a leak too: any 12 characters of a canary (or of its lower-case form).
PIECES = pieces_of(CANARIES + tuple(c.lower() for c in CANARIES))


def assert_no_canary(text: str) -> None:
    assert leaks(text, PIECES) == [], "output shows a canary"


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    for f in QUICKSTART.glob("*.yaml"):
        (root / f.name).write_text(f.read_text())
    (root / "leaky.yaml").write_text(WRONG_FIELDS)
    return root


def test_validate_echoes_no_credential_in_any_output(tmp_path: Path) -> None:
    root = _root(tmp_path)
    cq, ju = tmp_path / "cq.json", tmp_path / "junit.xml"
    reports = [f"codequality={cq}", f"junit={ju}"]
    code, text = run_validate(root, output="text", strict=True, reports=reports, colour=False)
    assert code == 1
    # The problems are still reported, with their place and what is wrong.
    assert "leaky.yaml:6:18: error[GW105] spec.contextWindow: expected an integer, got a value" in (
        text
    )
    assert "error[GW402]" in text
    assert_no_canary(text)
    assert_no_canary(cq.read_text())
    assert_no_canary(ju.read_text())
    code, out = run_validate(root, output="json", strict=True, reports=[], colour=False)
    assert code == 1
    data = json.loads(out)
    assert any(d["code"] == "GW105" for d in data["diagnostics"])
    assert_no_canary(out)


def test_snippets_mask_secret_looking_tokens(tmp_path: Path) -> None:
    root = _root(tmp_path)
    code, text = run_validate(root, output="text", strict=False, reports=[], colour=False)
    assert code == 1
    assert '  6 |   contextWindow: "****"' in text


def _link_root(tmp_path: Path) -> tuple[Path, Path]:
    outside = tmp_path / "home" / ".docker"
    outside.mkdir(parents=True)
    config = outside / "config.json"
    config.write_text('{"auths": {"registry.example.com": {"auth": "' + RANDOM + '"}}}\n')
    root = tmp_path / "root"
    root.mkdir()
    for f in QUICKSTART.glob("*.yaml"):
        (root / f.name).write_text(f.read_text())
    return root, config


def test_a_link_out_of_the_root_is_refused_and_not_read(tmp_path: Path) -> None:
    root, config = _link_root(tmp_path)
    (root / "docker.yaml").symlink_to(config)
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "more.yaml").write_text(f"kind: Secret\ndata: {{token: {RANDOM}}}\n")
    (root / "shared").symlink_to(other, target_is_directory=True)
    code, text = run_validate(root, output="text", strict=False, reports=[], colour=False)
    assert code == 1
    assert text.splitlines()[:4] == [
        f"{root}/docker.yaml:1:1: error[GW009] docker.yaml is a link to a file outside the "
        "manifest root; it was not read",
        "  hint: gatewayctl reads only what lies in the manifest root: copy the file into it, "
        "or validate the folder that holds it",
        f"{root}/shared:1:1: error[GW009] shared is a link to a folder outside the manifest "
        "root; it was not read",
        "  hint: gatewayctl reads only what lies in the manifest root: copy the file into it, "
        "or validate the folder that holds it",
    ]
    assert str(config) not in text and str(other) not in text
    assert_no_canary(text)


def test_a_link_into_a_hidden_folder_is_refused(tmp_path: Path) -> None:
    root, _ = _link_root(tmp_path)
    secret_dir = root / ".secrets" / "openai-credentials"
    secret_dir.mkdir(parents=True)
    (secret_dir / "api-key").write_text(RANDOM + "\n")
    (root / "key.yaml").symlink_to(secret_dir / "api-key")
    code, text = run_validate(root, output="text", strict=False, reports=[], colour=False)
    assert code == 1
    assert text.startswith(
        f"{root}/key.yaml:1:1: error[GW009] key.yaml is a link to a hidden file of the "
        "manifest root; it was not read\n"
    )
    assert_no_canary(text)


def test_links_inside_the_root_are_followed(tmp_path: Path) -> None:
    root, _ = _link_root(tmp_path)
    (root / "models.yaml").rename(root / "models.txt")
    (root / "models.yaml").symlink_to("models.txt")
    (root / "again").symlink_to(".", target_is_directory=True)  # not descended: no loop
    code, text = run_validate(root, output="text", strict=False, reports=[], colour=False)
    assert (code, text) == (0, "ok: 5 manifests in 2 files are valid\n")


def test_a_dangling_link_is_an_error(tmp_path: Path) -> None:
    root, _ = _link_root(tmp_path)
    (root / "gone.yaml").symlink_to(tmp_path / "nothing.yaml")
    code, text = run_validate(root, output="text", strict=False, reports=[], colour=False)
    assert code == 1
    assert text.startswith(
        f"{root}/gone.yaml:1:1: error[GW009] gone.yaml is a link to nothing (its target does not "
        "exist); it was not read\n"
    )


def test_a_named_pipe_is_not_opened(tmp_path: Path) -> None:
    root, _ = _link_root(tmp_path)
    os.mkfifo(root / "pipe.yaml")  # opening it for reading would block forever
    code, text = run_validate(root, output="text", strict=False, reports=[], colour=False)
    assert (code, text) == (0, "ok: 5 manifests in 2 files are valid\n")
