"""Step logic: what promote, abort, pause and resume do, and when a step's pause has elapsed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gatewayctl.errors import GatewayctlError
from gatewayctl.manifests.kinds import RolloutSpec
from gatewayctl.rollout.steps import (
    Position,
    RolloutStateError,
    pause_status,
    plan_abort,
    plan_pause,
    plan_promote,
    plan_resume,
    step_started_at,
)

NOW = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)


def spec(step: int = 1, state: str = "progressing") -> RolloutSpec:
    return RolloutSpec.model_validate({
        "route": "chat", "stable": "a", "canary": "b", "step": step, "state": state,
        "steps": [{"weight": 5, "pause": "10m"}, {"weight": 25, "pause": "30m"},
                  {"weight": 100}]})


@pytest.mark.parametrize(("step", "state", "kwargs", "after"), [
    (0, "progressing", {}, Position(1, "progressing", 5)),
    (1, "progressing", {}, Position(2, "progressing", 25)),
    (2, "paused", {}, Position(3, "progressing", 100)),
    (3, "progressing", {}, Position(3, "completed", 100)),
    (1, "progressing", {"to": 3}, Position(3, "progressing", 100)),
    (2, "progressing", {"to": 1}, Position(1, "progressing", 5)),
    (1, "progressing", {"full": True}, Position(3, "completed", 100)),
    (2, "aborted", {"to": 1}, Position(1, "progressing", 5)),
    (3, "completed", {"to": 1}, Position(1, "progressing", 5)),
])
def test_promote(step: int, state: str, kwargs: dict[str, object], after: Position) -> None:
    tr = plan_promote(spec(step, state), **kwargs)  # type: ignore[arg-type]
    assert tr.after == after
    assert tr.restarts_clock == (after.step != step or state == "aborted")


def test_promote_of_a_completed_rollout_is_already_done_and_an_aborted_one_is_refused() -> None:
    """"Already done" is a success that changes nothing, for promote as for abort."""
    done = plan_promote(spec(3, "completed"))
    assert not done.changed
    assert done.summary("r", 3) == ("rollout r: already completed: the canary serves 100% "
                                    "(step 3/3 (completed), canary 100%)")
    assert not plan_abort(spec(2, "aborted")).changed
    with pytest.raises(RolloutStateError) as aborted:
        plan_promote(spec(2, "aborted"))
    assert aborted.value.hint == "run `rollout promote NAME --to 1` to start again from the " \
        "first step"


@pytest.mark.parametrize("to", [0, 4])
def test_promote_to_a_step_that_does_not_exist(to: int) -> None:
    with pytest.raises(GatewayctlError, match="the rollout has steps 1 to 3"):
        plan_promote(spec(), to=to)


def test_promote_to_the_current_step_changes_nothing() -> None:
    tr = plan_promote(spec(2), to=2)
    assert not tr.changed
    assert tr.summary("r", 3) == "rollout r: already there (step 2/3 (progressing), canary 25%)"


def test_abort_keeps_the_step_and_gives_the_canary_nothing() -> None:
    tr = plan_abort(spec(2))
    assert tr.after == Position(2, "aborted", 0)
    assert tr.headline("r", 3) == "rollout r: abort at step 2/3 (canary 0%)"
    assert not plan_abort(spec(2, "aborted")).changed
    assert plan_abort(spec(3, "completed")).after == Position(3, "aborted", 0)


def test_pause_and_resume() -> None:
    assert plan_pause(spec(1)).after == Position(1, "paused", 5)
    assert plan_resume(spec(1, "paused")).after == Position(1, "progressing", 5)
    assert not plan_pause(spec(1, "paused")).changed
    assert not plan_resume(spec(1)).changed
    with pytest.raises(RolloutStateError, match="the rollout is aborted; there is nothing"):
        plan_pause(spec(1, "aborted"))
    with pytest.raises(RolloutStateError, match="only a paused one resumes"):
        plan_resume(spec(3, "completed"))


def test_headlines() -> None:
    assert plan_promote(spec(1)).headline("r", 3) == "rollout r: promote to step 2/3 (canary 25%)"
    assert plan_promote(spec(3)).headline("r", 3) == "rollout r: complete (canary 100%)"


def test_the_step_started_at_the_later_of_annotation_and_commit() -> None:
    commit = datetime(2026, 1, 2, 11, 0, tzinfo=UTC)
    assert step_started_at("2026-01-02T10:00:00Z", commit) == commit
    assert step_started_at("2026-01-02T11:30:00Z", commit) == commit + timedelta(minutes=30)
    assert step_started_at(None, None) is None
    assert step_started_at("not a time", None) is None


def test_pause_status() -> None:
    started = NOW - timedelta(minutes=4)
    running = pause_status(spec(1), started, NOW)
    assert not running.elapsed
    assert running.describe() == "pause 10m: 6m01s left (step started 2026-01-02T11:56:00Z)"
    assert pause_status(spec(1), NOW - timedelta(minutes=10), NOW).elapsed
    unknown = pause_status(spec(1), None, NOW)
    assert not unknown.elapsed and "start time is unknown" in unknown.describe()
    last = pause_status(spec(3), None, NOW)  # a step without a pause waits for nothing
    assert last.elapsed and last.describe() == "no pause at this step"
