"""Golden text, markdown and JSON plans; colour only when asked; the JSON round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gatewayctl.plan.format import format_markdown, format_text
from gatewayctl.plan.model import PlanFormatError, plan_from_json, plan_to_json
from tests.goldens import check_golden, check_no_stale
from tests.plan.scenario import intent_plan, scenario_plan

GOLDEN = Path(__file__).parent / "golden"


PLAN_GOLDENS = [("plan.txt", format_text), ("plan.md", format_markdown),
                ("plan.json", plan_to_json)]
INTENT_GOLDENS = [("intent.txt", format_text), ("intent.md", format_markdown),
                  ("intent.json", plan_to_json)]


@pytest.mark.parametrize(("name", "render"), PLAN_GOLDENS)
def test_golden_plans(name: str, render: object, tmp_path: Path, update_golden: bool) -> None:
    plan = scenario_plan(tmp_path)
    check_golden(GOLDEN / name, render(plan), update_golden)  # type: ignore[operator]


@pytest.mark.parametrize(("name", "render"), INTENT_GOLDENS)
def test_golden_plans_of_the_new_change_kinds(name: str, render: object, tmp_path: Path,
                                              update_golden: bool) -> None:
    plan = intent_plan(tmp_path)
    check_golden(GOLDEN / name, render(plan), update_golden)  # type: ignore[operator]


def test_no_stale_plan_goldens(update_golden: bool) -> None:
    names = {name for name, _ in PLAN_GOLDENS + INTENT_GOLDENS}
    check_no_stale(GOLDEN, [p for p in GOLDEN.iterdir() if p.name not in names], update_golden)


def test_changes_of_intent_are_plan_changes(tmp_path: Path) -> None:
    plan = intent_plan(tmp_path)
    text = format_text(plan)

    assert plan.has_changes
    assert "~ Rollout chat-nov" in text
    assert "canary header: x-gateway-canary (`x-gateway-canary: always` reaches the canary)" \
        " -> x-canary (`x-canary: always` reaches the canary)" in text
    assert "thresholds: none -> error-rate at most 0.02; latency-p95 at most 4s" in text
    assert "steps: 5% for 10m, 25% for 30m, 100% -> 5% for 10m, 25% for 1h, 100%" in text
    assert ("version 1 required variables: product -> language, product (requests without "
            "prompt_variables.language now get 400)") in text
    assert "burst tightened (600 -> 20 at once)" in text
    assert "allow list (policy team-limits): teams search -> consumers search-app" in text
    limits = [c.after["rate_limits"] for c in plan.changes if c.kind == "Policy"]
    assert limits == [[{"amount": 20, "period_s": 1, "per": "second", "by": "consumer",
                        "policy": "team-limits", "rate_per_second": 20.0, "burst": 20}]]


def test_text_is_coloured_only_when_asked(tmp_path: Path) -> None:
    plan = scenario_plan(tmp_path)

    assert "\033[" not in format_text(plan)
    coloured = format_text(plan, colour=True)
    assert "\033[33m~\033[0m Route chat" in coloured
    assert "\033[31m-\033[0m Service ai-gateway/ai-gateway-old" in coloured


def test_json_round_trips_with_the_desired_state(tmp_path: Path) -> None:
    plan = scenario_plan(tmp_path)

    text = plan_to_json(plan, include_desired=True)
    again = plan_from_json(text)

    assert again == plan
    assert again.desired is not None and plan.desired is not None
    assert again.desired.objects == plan.desired.objects
    assert plan_to_json(again, include_desired=True) == text


def test_plan_of_another_major_format_version_is_refused(tmp_path: Path) -> None:
    data = json.loads(plan_to_json(scenario_plan(tmp_path)))
    data["format_version"] = "1.0"

    with pytest.raises(PlanFormatError, match=r"plan format 1.0 is not readable .*reads 2.x"):
        plan_from_json(json.dumps(data))


def test_markdown_collapses_long_diffs_and_escapes_table_cells(tmp_path: Path) -> None:
    markdown = format_markdown(scenario_plan(tmp_path))

    # JSON in a ConfigMap is compared as data: no diff block for it, one line per field.
    assert "<details><summary>~ ConfigMap" not in markdown
    assert ('data["lds.json"].resources[gateway].routes[0].clusters[canary].weight: 5 → 25'
            in markdown)
    assert "<details open><summary>~ Prompt support-assistant: version 2" in markdown
    assert "| `-` | Service `ai-gateway/ai-gateway-old` |" in markdown
