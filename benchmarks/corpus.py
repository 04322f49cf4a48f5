"""Generates a realistic manifest root with N routes, for benchmarks and scale tests.

Per route: two models (stable and canary), every 10th route under a rollout, every 5th with a
prompt; providers, policies and consumers grow with N/50. About 3 documents per route.

    python -m benchmarks.corpus 1000 /tmp/root-1000
"""

from __future__ import annotations

import sys
from pathlib import Path

HEAD = "apiVersion: gatewayctl.dev/v1alpha1\n"


def generate(n: int, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    groups = max(1, n // 50)
    docs: dict[str, list[str]] = {
        "gateway": [],
        "providers": [],
        "policies": [],
        "consumers": [],
        "models": [],
        "routes": [],
        "prompts": [],
        "rollouts": [],
    }
    docs["gateway"].append(
        HEAD + "kind: Gateway\nmetadata: {name: bench}\nspec:\n  namespace: bench\n"
        "  defaultPolicies: [baseline]\n"
    )
    docs["policies"].append(
        HEAD + "kind: Policy\nmetadata: {name: baseline}\nspec:\n"
        "  auth: {apiKeys: true}\n  guardrails: {maxRequestBytes: 1048576}\n"
    )
    for g in range(groups):
        docs["providers"].append(
            HEAD + f"kind: Provider\nmetadata: {{name: provider-{g}}}\nspec:\n"
            f"  type: openai-compatible\n  endpoint: https://llm-{g}.example.com\n"
            f"  auth: {{secretRef: {{name: provider-{g}, key: api-key}}}}\n  timeout: 60s\n"
        )
        docs["consumers"].append(
            HEAD + f"kind: Consumer\nmetadata: {{name: app-{g}}}\nspec:\n  team: team-{g}\n"
            f"  apiKeySecretRef: {{name: app-{g}-key, key: key}}\n  budget: {{usdPerMonth: 500}}\n"
        )
        docs["policies"].append(
            HEAD + f"kind: Policy\nmetadata: {{name: limits-{g}}}\nspec:\n"
            f"  allow: {{teams: [team-{g}]}}\n"
            "  rateLimit: {requests: 600, per: minute, by: consumer}\n"
            "  tokenLimit: {tokens: 200000, per: minute, by: consumer}\n"
            "  guardrails:\n    denyPatterns: ['(?i)ignore (all|previous) instructions']\n"
            "    redact: [email]\n"
        )
    for i in range(n):
        g = i % groups
        for suffix in ("a", "b"):
            docs["models"].append(
                HEAD + f"kind: Model\nmetadata: {{name: model-{i}.{suffix}}}\nspec:\n"
                f"  provider: provider-{g}\n  upstreamModel: upstream-{i}-{suffix}\n"
                "  pricing: {inputPerMillion: 2.5, outputPerMillion: 10}\n"
            )
        rollout = i % 10 == 0
        prompt = i % 5 == 0
        backends = (
            f"    - {{model: model-{i}.a, weight: 100}}\n"
            if rollout
            else f"    - {{model: model-{i}.a, weight: 90}}\n"
            f"    - {{model: model-{i}.b, weight: 10}}\n"
        )
        route = (
            HEAD + f"kind: Route\nmetadata: {{name: route-{i}}}\nspec:\n  model: public-{i}\n"
            f"  backends:\n{backends}  retry: {{attempts: 1, perTryTimeout: 30s}}\n"
            f"  policies: [limits-{g}]\n"
        )
        if prompt:
            route += f"  prompt: {{name: prompt-{i}}}\n"
            docs["prompts"].append(
                HEAD + f"kind: Prompt\nmetadata: {{name: prompt-{i}}}\nspec:\n  versions:\n"
                '    - version: 1\n      template: "You help {{ product }} users."\n'
                "      variables: {product: {required: true}}\n"
                '    - version: 2\n      template: "Help {{ product }} users in '
                "{{ language | default('English') }}.\"\n"
                "      variables: {product: {required: true}, language: {}}\n"
                "  active: [{version: 1, weight: 80}, {version: 2, weight: 20}]\n"
            )
        docs["routes"].append(route)
        if rollout:
            docs["rollouts"].append(
                HEAD + f"kind: Rollout\nmetadata: {{name: rollout-{i}}}\nspec:\n"
                f"  route: route-{i}\n  stable: model-{i}.a\n  canary: model-{i}.b\n"
                "  steps: [{weight: 5, pause: 10m}, {weight: 50, pause: 1h}, {weight: 100}]\n"
                "  step: 1\n"
            )
    for name, items in docs.items():
        if items:
            (out / f"{name}.yaml").write_text("---\n".join(items), encoding="utf-8")
    return out


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(f"/tmp/gatewayctl-corpus-{size}")
    print(generate(size, target))
