"""Properties of the whole pipeline on generated manifest roots.

For any valid root: validation finds no errors, compiling and rendering twice give identical
bytes, and a plan of the root against its own rendered output shows no changes.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatewayctl.orchestrate import compute_plan, desired_state, load_desired_ir
from gatewayctl.render.bundle import render_files
from gatewayctl.render.output_folder import write_folder
from gatewayctl.targets import parse_target
from gatewayctl.validate import run_validate

HEAD = "apiVersion: gatewayctl.dev/v1alpha1\n"


def split_100(draw: st.DrawFn, parts: int) -> list[int]:
    cuts = sorted(draw(st.lists(st.integers(0, 100), min_size=parts - 1, max_size=parts - 1)))
    edges = [0, *cuts, 100]
    return [b - a for a, b in zip(edges, edges[1:], strict=False)]


@st.composite
def manifest_root(draw: st.DrawFn) -> dict[str, str]:
    n_providers = draw(st.integers(1, 3))
    n_models = draw(st.integers(1, 5))
    n_routes = draw(st.integers(1, 4))
    docs = [
        HEAD + "kind: Gateway\nmetadata: {name: gw}\nspec:\n  namespace: gw\n"
        f"  listener: {{port: {draw(st.integers(1024, 65000))}}}\n  defaultPolicies: [base]\n",
        HEAD + "kind: Policy\nmetadata: {name: base}\nspec:\n  auth: {apiKeys: true}\n"
        f"  rateLimit: {{requests: {draw(st.integers(1, 10**6))}, per: minute, by: consumer}}\n",
        HEAD + "kind: Consumer\nmetadata: {name: app}\nspec:\n  team: t\n"
        "  apiKeySecretRef: {name: app-key, key: key}\n",
    ]
    for p in range(n_providers):
        kind = draw(st.sampled_from(["openai", "anthropic", "openai-compatible", "azure-openai"]))
        scheme = draw(st.sampled_from(["http", "https"]))
        auth = (
            ""
            if kind == "openai-compatible"
            else (f"  auth: {{secretRef: {{name: p{p}-cred, key: api-key}}}}\n")
        )
        docs.append(
            HEAD + f"kind: Provider\nmetadata: {{name: p{p}}}\nspec:\n  type: {kind}\n"
            f"  endpoint: {scheme}://llm{p}.example.com\n{auth}"
        )
    models = [f"m{i}.v{draw(st.integers(1, 9))}" for i in range(n_models)]
    for i, name in enumerate(models):
        docs.append(
            HEAD + f"kind: Model\nmetadata: {{name: {name}}}\nspec:\n"
            f"  provider: p{i % n_providers}\n"
            f"  pricing: {{inputPerMillion: {draw(st.integers(0, 30))}, "
            f"outputPerMillion: {draw(st.integers(0, 60))}}}\n"
        )
    for r in range(n_routes):
        chosen = draw(st.lists(st.sampled_from(models), min_size=1, max_size=3, unique=True))
        weights = split_100(draw, len(chosen))
        backends = "".join(
            f"    - {{model: {m}, weight: {w}}}\n" for m, w in zip(chosen, weights, strict=True)
        )
        rest = [m for m in models if m not in chosen]
        fallback = f"  fallback: [{rest[0]}]\n" if rest and draw(st.booleans()) else ""
        retry = f"  retry: {{attempts: {draw(st.integers(0, 3))}}}\n"
        docs.append(
            HEAD + f"kind: Route\nmetadata: {{name: r{r}}}\nspec:\n"
            f"  backends:\n{backends}{fallback}{retry}"
        )
    return {"gateway.yaml": "---\n".join(docs)}


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(manifest_root())
def test_render_is_deterministic_and_plans_clean_against_itself(files: dict[str, str]) -> None:
    work = Path(tempfile.mkdtemp(prefix="gatewayctl-prop-"))
    try:
        root = work / "root"
        root.mkdir()
        for name, text in files.items():
            (root / name).write_text(text, encoding="utf-8")
        code, report = run_validate(root, output="text", strict=False, reports=[], colour=False)
        assert code == 0, report

        ir, _ = load_desired_ir(root)
        first = render_files(ir)
        again, _ = load_desired_ir(root)
        assert render_files(again) == first

        out = work / "out"
        write_folder(out, first, root=root)
        live = parse_target(f"dir:{out}", root)
        plan = compute_plan(desired_state(ir, live), live)
        pending = [(c.layer, c.kind, c.name, c.action) for c in plan.changes if c.action != "no-op"]
        assert pending == []
    finally:
        shutil.rmtree(work, ignore_errors=True)
