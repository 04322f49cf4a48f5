"""The manifest layer, pure: IR before vs IR after, in reviewers' words."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gatewayctl.ir import GatewayIR, LimitIR, ModelIR, PolicyIR, RouteIR
from gatewayctl.orchestrate import load_desired_ir
from gatewayctl.plan.cost import request_cost, route_cost_per_1k
from gatewayctl.plan.manifest_diff import diff_gateway_ir
from gatewayctl.plan.policy_diff import compare_policies
from tests.plan.conftest import FIXTURE_ROOT, edit


@pytest.fixture(scope="module")
def base() -> GatewayIR:
    return load_desired_ir(FIXTURE_ROOT)[0]


def with_route(ir: GatewayIR, route: RouteIR) -> GatewayIR:
    return dataclasses.replace(
        ir, routes=tuple(route if r.name == route.name else r for r in ir.routes))


def details(ir_before: GatewayIR | None, ir_after: GatewayIR, address: str
            ) -> list[tuple[str, object, object, str]]:
    change = next(c for c in diff_gateway_ir(ir_before, ir_after) if c.address == address)
    return [(d.field, d.before, d.after, d.note) for d in change.details]


def test_identical_irs_have_no_changes(base: GatewayIR) -> None:
    assert diff_gateway_ir(base, base) == ()


def test_cost_uses_the_documented_token_assumption(base: GatewayIR) -> None:
    model = ModelIR("m", "p", "m", None, 2.50, 10.00, False)
    # 1,000 prompt tokens at $2.50/M + 300 completion tokens at $10/M = $0.0055 per request.
    assert request_cost(model) == pytest.approx(0.0055)
    models = {m.name: m for m in base.models}
    # chat: 95% gpt-4o-2024-08-06 + 5% gpt-4o-2024-11-20, same price: $5.50 per 1,000.
    assert route_cost_per_1k(base.route("chat"), models) == pytest.approx(5.5)


def test_backend_added_and_removed(base: GatewayIR) -> None:
    support = base.route("support")
    backends = (dataclasses.replace(support.backends[0], weight=50),
                dataclasses.replace(support.backends[0], model="gpt-4o-2024-08-06", weight=50))
    after = with_route(base, dataclasses.replace(support, backends=backends))

    assert details(base, after, "Route support") == [
        ("backend gpt-4o-mini", "100%", "50%", ""),
        ("backend gpt-4o-2024-08-06", None, "50%", "added"),
        ("cost per 1,000 requests", "$0.33", "$2.92", "+783.3%"),
    ]
    assert details(after, base, "Route support")[1] == (
        "backend gpt-4o-2024-08-06", "50%", None, "removed")


def test_route_removed_is_a_delete_with_its_cost(base: GatewayIR) -> None:
    after = dataclasses.replace(base, routes=(base.route("chat"),))

    changes = [c for c in diff_gateway_ir(base, after) if c.kind in ("Route", "Prompt")]

    assert [(c.address, c.action) for c in changes] == [
        ("Route support", "delete"), ("Prompt support-assistant", "delete")]
    assert ("cost per 1,000 requests", "$0.33", None, "") in [
        (d.field, d.before, d.after, d.note) for d in changes[0].details]


def test_prompt_text_edited_in_place_is_flagged(base: GatewayIR, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "root"
    shutil.copytree(FIXTURE_ROOT, root)
    edit(root, "routes.yaml", "Answer politely.", "Answer rudely.")
    after = load_desired_ir(root)[0]

    (field, before, after_value, note), = details(base, after, "Prompt support-assistant")
    assert (field, before, after_value) == ("version 1 text", None, None)
    assert note.startswith("edited in place")
    change = next(c for c in diff_gateway_ir(base, after) if c.kind == "Prompt")
    assert "-Answer politely." in change.details[0].diff
    assert "+Answer rudely." in change.details[0].diff


def test_policy_changes_say_loosened_or_tightened() -> None:
    before = PolicyIR(("p",), api_keys=True, allow_consumers=("a", "b"),
                      rate_limits=(LimitIR(600, 60, "consumer", "p"),),
                      max_request_bytes=1000, deny_patterns=("x",), guard_action="block")
    after = PolicyIR(("p",), api_keys=False, allow_consumers=None,
                     rate_limits=(LimitIR(20, 1, "consumer", "p"),),
                     token_limits=(LimitIR(1000, 60, "route", "p"),),
                     max_request_bytes=500, deny_patterns=("x", "y"), guard_action="log",
                     redact=("email",))

    verdicts = [(d.field, d.note.split(":")[0]) for d in compare_policies(before, after)]

    assert verdicts == [
        ("API key required", "loosened"),
        ("allowed consumers", "loosened"),
        # 600/minute -> 20/second: the rate rises (10/s -> 20/s), the burst drops (600 -> 20)
        ("rate limit (policy p, per consumer)", "changed"),
        ("token limit (policy p, per route)", "tightened"),
        ("max request bytes", "tightened"),
        ("deny patterns", "tightened"),
        ("guardrail action", "loosened"),
        ("redact", "tightened"),
    ]


def test_rate_and_burst_are_compared_apart() -> None:
    def note(b: LimitIR, a: LimitIR) -> str:
        before = PolicyIR(("p",), rate_limits=(b,))
        (detail,) = compare_policies(before, PolicyIR(("p",), rate_limits=(a,)))
        return detail.note

    assert note(LimitIR(600, 60, "consumer", "p"), LimitIR(20, 1, "consumer", "p")) == (
        "changed: rate loosened (10 requests/second -> 20 requests/second); "
        "burst tightened (600 -> 20 at once)")
    assert note(LimitIR(600, 60, "consumer", "p"), LimitIR(300, 60, "consumer", "p")) == (
        "tightened: rate tightened (10 requests/second -> 5 requests/second); "
        "burst tightened (600 -> 300 at once)")
    assert note(LimitIR(60, 60, "consumer", "p"), LimitIR(3600, 3600, "consumer", "p")) == (
        "loosened: burst loosened (60 -> 3,600 at once)")


def test_an_allow_list_change_of_intent_says_who_gains_and_loses() -> None:
    from gatewayctl.ir import AllowRuleIR

    before = PolicyIR(("p",), api_keys=True, allow_consumers=("helpdesk",),
                      allow_rules=(AllowRuleIR("p", teams=("support",)),))
    after = PolicyIR(("p",), api_keys=True, allow_consumers=("helpdesk",),
                     allow_rules=(AllowRuleIR("p", consumers=("helpdesk",)),))

    (detail,) = compare_policies(before, after, {"support": ("helpdesk",)})

    assert (detail.field, detail.before, detail.after) == (
        "allow list (policy p)", "teams support", "consumers helpdesk")
    assert detail.note == (
        "team support no longer grants access (its members: helpdesk; members added later "
        "get no access through it); helpdesk allowed by name")


def test_consumer_given_access_through_a_team(base: GatewayIR, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "root"
    shutil.copytree(FIXTURE_ROOT, root)
    edit(root, "policies.yaml", "teams: [search]", "teams: [search, support]")
    after = load_desired_ir(root)[0]

    assert details(base, after, "Consumer helpdesk") == [
        ("access", None, "chat", "given access to chat")]
    assert details(after, base, "Consumer helpdesk") == [
        ("access", "chat", None, "access removed from chat")]


def test_a_first_plan_creates_every_object(base: GatewayIR) -> None:
    changes = diff_gateway_ir(None, base)

    assert {c.action for c in changes} == {"create"}
    assert [c.address for c in changes] == [
        "Gateway ai-gateway", "Provider openai", "Model gpt-4o-2024-08-06",
        "Model gpt-4o-2024-11-20", "Model gpt-4o-mini", "Route chat", "Route support",
        "Rollout chat-nov", "Prompt support-assistant", "Consumer helpdesk",
        "Consumer search-app"]


def test_a_new_rollout_shows_its_steps_thresholds_and_header(base: GatewayIR) -> None:
    rollout = next(c for c in diff_gateway_ir(None, base) if c.kind == "Rollout")

    shown = {d.field: d.after for d in rollout.details}
    assert shown["steps"] == "5% for 10m, 25% for 30m, 100%"
    assert shown["canary header"] == (
        "x-gateway-canary (`x-gateway-canary: always` reaches the canary)")
    assert shown["thresholds"] == "none"
    assert shown["step"] == "1 of 3" and shown["state"] == "progressing"
    assert rollout.after["steps"][0] == {"weight": 5, "pause_ms": 600_000}


def test_diff_is_deterministic_and_mirrors_when_reversed(base: GatewayIR) -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    routes, consumers = base.routes, base.consumers

    @settings(max_examples=40, deadline=None)
    @given(st.sets(st.sampled_from(range(len(routes)))),
           st.sets(st.sampled_from(range(len(consumers)))),
           st.integers(min_value=0, max_value=100))
    def check(keep_routes: set[int], keep_consumers: set[int], weight: int) -> None:
        chat = base.route("chat")
        stable, canary = chat.backends
        reweighted = dataclasses.replace(chat, backends=(
            dataclasses.replace(stable, weight=100 - weight),
            dataclasses.replace(canary, weight=weight)))
        other = dataclasses.replace(
            with_route(base, reweighted),
            routes=tuple(r for i, r in enumerate(with_route(base, reweighted).routes)
                         if i in keep_routes),
            consumers=tuple(c for i, c in enumerate(consumers) if i in keep_consumers))
        forward = diff_gateway_ir(base, other)
        assert forward == diff_gateway_ir(base, other)
        assert diff_gateway_ir(other, other) == ()
        flip = {"create": "delete", "delete": "create", "update": "update"}
        backward = {(c.kind, c.name): c.action for c in diff_gateway_ir(other, base)
                    if c.kind != "Policy"}
        assert backward == {(c.kind, c.name): flip[c.action] for c in forward
                            if c.kind != "Policy"}

    check()
