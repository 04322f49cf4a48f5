"""`import litellm` and `render --target litellm`: manifests that validate, keys that are never
written, what cannot be expressed listed, the output-folder rules, and the round trip (an
import of an export gives back what both express)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gatewayctl.cli import main
from gatewayctl.importers.litellm import import_litellm
from gatewayctl.pipeline import compile_root
from gatewayctl.render.litellm import litellm_view, render_litellm
from tests.conftest import REPO

LITERAL = "sk-proj-Lit3ralKeyThatMustNeverBeWritten0123456789abcdef"
MASTER = "sk-master-Lit3ralMasterKey0123456789abcdefghij"

CONFIG = f"""
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: azure/gpt-4o-eu
      api_base: https://eu.openai.azure.com/
      api_key: os.environ/AZURE_EU_KEY
      api_version: "2024-02-15-preview"
      rpm: 300
      tpm: 60000
      weight: 3
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: {LITERAL}
      rpm: 100
      tpm: 20000
      weight: 1
      temperature: 0.2
    model_info:
      input_cost_per_token: 0.0000025
      output_cost_per_token: 0.00001
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_key: os.environ/ANTHROPIC_API_KEY
      timeout: 90
      num_retries: 1
  - model_name: local-llama
    litellm_params:
      model: hosted_vllm/meta-llama/Llama-3.1-8B-Instruct
      api_base: http://vllm.internal:8000/v1
      api_key: none
  - model_name: titan
    litellm_params:
      model: bedrock/amazon.titan-text-express-v1
router_settings:
  routing_strategy: simple-shuffle
  num_retries: 2
  timeout: 30
  fallbacks: [{{"gpt-4o": ["claude"]}}, {{"claude": ["local-llama"]}}]
litellm_settings:
  success_callback: ["langfuse"]
  cache: true
general_settings:
  master_key: {MASTER}
"""


def _import(tmp_path: Path, text: str = CONFIG) -> tuple[int, Path, str]:
    config = tmp_path / "config.yaml"
    config.write_text(text)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "gatewayctl", "import", "litellm", str(config),
                           "--out", str(out)], capture_output=True, text=True, timeout=120,
                          check=False)
    return proc.returncode, out, proc.stdout + proc.stderr


def test_import_gives_manifests_that_validate_and_never_the_literal_keys(tmp_path: Path) -> None:
    code, out, shown = _import(tmp_path)
    assert code == 0, shown
    assert LITERAL not in shown and MASTER not in shown
    for path in out.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert LITERAL not in text and MASTER not in text, path
            assert "Lit3ral" not in text, path
    assert "a literal API key" in shown and "openai-credentials/api-key" in shown
    valid = subprocess.run([sys.executable, "-m", "gatewayctl", "validate", str(out)],
                           capture_output=True, text=True, timeout=60, check=False)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    ir = compile_root(out).ir
    routes = {r.public_model: r for r in ir.routes}
    assert set(routes) == {"gpt-4o", "claude", "local-llama"}
    gpt = routes["gpt-4o"]
    assert [(b.model, b.weight) for b in gpt.backends] == [("gpt-4o-eu", 75), ("gpt-4o", 25)]
    assert gpt.fallback == ("claude-sonnet-4-5",)
    assert (gpt.retry_attempts, gpt.timeout_ms) == (2, 30_000)
    assert [(x.amount, x.period_s, x.by) for x in gpt.policy.rate_limits] == [(400, 60, "route")]
    assert [(x.amount, x.by) for x in gpt.policy.token_limits] == [(80000, "route")]
    assert gpt.policy.api_keys
    claude = routes["claude"]
    assert (claude.retry_attempts, claude.timeout_ms) == (1, 90_000)
    assert claude.fallback == ("llama-3.1-8b-instruct",)
    providers = {p.name: p for p in ir.providers}
    azure = next(p for p in providers.values() if p.type == "azure-openai")
    assert (azure.host, azure.base_path) == ("eu.openai.azure.com", "/openai")
    assert azure.credential is not None
    assert (azure.credential.name, azure.credential.key) == ("azure-eu", "key")
    vllm = next(p for p in providers.values() if p.type == "openai-compatible")
    assert (vllm.host, vllm.port, vllm.base_path, vllm.credential) == (
        "vllm.internal", 8000, "", None)
    assert ir.model("gpt-4o").input_per_million == pytest.approx(2.5)
    assert [c.name for c in ir.consumers] == ["master"]
    report = (out / "IMPORT.md").read_text()
    for listed in ("api_version", "litellm_params.temperature", "bedrock",
                   "litellm_settings.success_callback", "litellm_settings.cache"):
        assert listed in report, listed
        assert listed in shown, listed
    assert "| openai-credentials | api-key | the literal key of" in report


def test_import_refuses_what_is_not_a_litellm_config(tmp_path: Path) -> None:
    code, out, shown = _import(tmp_path, "just: a mapping\n")
    assert code == 1 and "no model_list" in shown and not out.exists()
    code, out, shown = _import(tmp_path, "model_list: [\n")
    assert code == 1 and "not valid YAML" in shown and not out.exists()


def test_import_output_folder_rules(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    assert main(["import", "litellm", str(config), "--out", str(out)]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    assert main(["import", "litellm", str(config), "--out", str(repo / "gateway")]) == 1
    assert not (repo / "gateway").exists()
    # an earlier import is rewritten in place
    fresh = tmp_path / "fresh"
    assert main(["import", "litellm", str(config), "--out", str(fresh)]) == 0
    assert main(["import", "litellm", str(config), "--out", str(fresh)]) == 0


@pytest.mark.parametrize("root", [REPO / "examples" / "multi-team",
                                  REPO / "examples" / "quickstart",
                                  REPO / "tests" / "explain" / "roots" / "mixed"],
                         ids=lambda p: p.name)
def test_import_of_the_export_gives_what_both_express(root: Path, tmp_path: Path) -> None:
    ir = compile_root(root).ir
    export = render_litellm(ir)
    result = import_litellm(yaml.safe_load(export.text()))
    for name, text in result.files.items():
        (tmp_path / name).write_text(text)
    back = compile_root(tmp_path).ir
    assert litellm_view(back) == litellm_view(ir)
    # and the export of the import is the same file
    assert render_litellm(back).config == export.config


def test_render_target_litellm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = REPO / "examples" / "multi-team"
    out = tmp_path / "litellm"
    assert main(["render", str(root), "--target", "litellm", "--out", str(out)]) == 0
    first = (out / "config.yaml").read_text()
    assert main(["render", str(root), "--target", "litellm", "--out", str(out)]) == 0
    assert (out / "config.yaml").read_text() == first
    err = capsys.readouterr().err
    for feature in ("prompt support-assistant", "guardrails", "allow list",
                    "canary header", "budgets"):
        assert feature in err and feature in first, feature
    config = yaml.safe_load(first)
    assert config["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    assert {d["model_name"] for d in config["model_list"]} == {
        "chat", "support-assistant", "llama-70b", "text-embedding-3-small",
        "fallback/claude-sonnet"}
    assert config["router_settings"]["fallbacks"] == [
        {"chat": ["fallback/claude-sonnet"]}, {"support-assistant": ["llama-70b"]}]
    assert main(["render", str(root), "--target", "litellm"]) == 0
    assert capsys.readouterr().out == first
    assert main(["render", str(root), "--target", "litellm", "--format", "helm-values"]) == 1
    assert main(["render", str(root), "--target", "nginx"]) == 1
    assert main(["render", str(root), "--target", "litellm", "--out", str(root / "x")]) == 1


def test_the_migration_guide_shows_what_the_import_does(tmp_path: Path) -> None:
    doc = (REPO / "docs" / "migrating-from-litellm.md").read_text()
    config = REPO / "docs" / "litellm" / "config.yaml"
    out = tmp_path / "gateway"
    proc = subprocess.run([sys.executable, "-m", "gatewayctl", "import", "litellm", str(config),
                           "--out", str(out)], capture_output=True, text=True, timeout=120,
                          check=False, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    for line in proc.stderr.splitlines():
        assert line in doc, line
    valid = subprocess.run([sys.executable, "-m", "gatewayctl", "validate", str(out)],
                           capture_output=True, text=True, timeout=60, check=False)
    assert valid.stdout.strip() in doc
    shown = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    without_comments = "\n".join(line.split("  #", 1)[0].rstrip() for line in shown.splitlines())
    assert without_comments.strip() in (out / "routes.yaml").read_text()


def test_render_target_litellm_with_bedrock_and_gemini(tmp_path: Path) -> None:
    """LiteLLM's bedrock/ and gemini/ providers: Bedrock signs with boto3's chain (region and
    endpoint given, no key; the credentials file is listed as not expressed), Gemini takes
    its key from the environment."""
    root = tmp_path / "root"
    root.mkdir()
    cases = REPO / "tests" / "golden" / "cases"
    (root / "gateway.yaml").write_text((cases / "route-fallback-across-apis.yaml").read_text())
    (root / "gemini.yaml").write_text(
        (cases / "provider-gemini.yaml").read_text().split("---\n", 1)[1]
        .replace("name: chat}", "name: gem}"))
    export = render_litellm(compile_root(root).ir)

    params = {d["model_info"]["gatewayctl_model"]: d["litellm_params"]
              for d in export.config["model_list"]}
    assert params["claude"]["model"] == "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0"
    assert params["claude"]["aws_region_name"] == "us-west-2"
    assert "api_key" not in params["claude"]
    assert params["flash"] == {**params["flash"], "model": "gemini/gemini-2.5-flash",
                               "api_key": "os.environ/GEMINI_API_KEY"}
    assert any("AWS credentials file" in note for note in export.not_expressed)
