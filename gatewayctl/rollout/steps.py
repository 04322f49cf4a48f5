"""What promote, abort, pause and resume do to a Rollout, as pure values.

A `Transition` says which fields of the manifest change (`spec.step`, `spec.state`, the
step-start annotation) and what the canary weight becomes; `edit.py` writes it, the commands
print it. Nothing here reads files, Git or the clock: `now` is always passed in.

When a step started is recorded in Git, in the annotation `gatewayctl.dev/step-started-at`
(RFC 3339, UTC), which every transition that changes the step (or restarts a rollout) sets.
`step_started_at` also takes the time of the last commit that changed the manifest file: a
promotion proposed by merge request starts to serve only when it is merged, so the pause counts
from the later of the two and is never cut short by a slow review.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from gatewayctl.compile import rollout_canary_weight
from gatewayctl.durations import format_duration_ms
from gatewayctl.errors import GatewayctlError
from gatewayctl.manifests.kinds import RolloutSpec, RolloutState

STARTED_ANNOTATION = "gatewayctl.dev/step-started-at"
Action = Literal["promote", "abort", "pause", "resume"]


class RolloutStateError(GatewayctlError):
    """The rollout's state does not allow the asked transition."""


@dataclass(frozen=True)
class Position:
    step: int
    state: RolloutState
    canary_weight: int

    def describe(self, total: int) -> str:
        where = "not started" if self.step == 0 else f"step {self.step}/{total}"
        return f"{where} ({self.state}), canary {self.canary_weight}%"


@dataclass(frozen=True)
class Transition:
    action: Action
    before: Position
    after: Position
    restarts_clock: bool  # the step (re)starts now: the start annotation is set
    note: str = ""

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def headline(self, name: str, total: int) -> str:
        """One line for a commit message or a merge request title."""
        after = self.after
        if after.state == "completed":
            return f"rollout {name}: complete (canary {after.canary_weight}%)"
        verb = {"promote": "promote to", "abort": "abort at", "pause": "pause at",
                "resume": "resume at"}[self.action]
        where = f"step {after.step}/{total}" if after.step else "step 0"
        return f"rollout {name}: {verb} {where} (canary {after.canary_weight}%)"

    def summary(self, name: str, total: int) -> str:
        if not self.changed:
            return f"rollout {name}: {self.note or 'nothing to change'} " \
                f"({self.before.describe(total)})"
        return (f"rollout {name}: {self.action} {self.before.describe(total)} -> "
                f"{self.after.describe(total)}")


def position(spec: RolloutSpec) -> Position:
    return Position(spec.step, spec.state, rollout_canary_weight(spec))


def _moved(spec: RolloutSpec, step: int, state: RolloutState) -> Position:
    return position(spec.model_copy(update={"step": step, "state": state}))


def plan_promote(spec: RolloutSpec, *, to: int | None = None, full: bool = False) -> Transition:
    """The next step; `to` a given step (1-based); `full` completes the rollout.

    Promoting is a person's (or a passing analysis') decision, so it also ends a pause. An
    aborted rollout restarts only with an explicit `to`.
    """
    total = len(spec.steps)
    before = position(spec)
    if to is not None and full:
        raise GatewayctlError("give either --to or --full, not both")
    if to is not None and not 1 <= to <= total:
        raise GatewayctlError(f"step {to} does not exist: the rollout has steps 1 to {total}")
    if spec.state == "completed" and not (to is not None and to < total):
        # already done: like an abort of an aborted rollout, a success that changes nothing
        return Transition("promote", before, before, False,
                          "already completed: the canary serves 100%")
    if spec.state == "aborted" and to is None and not full:
        raise RolloutStateError(
            f"the rollout was aborted at step {spec.step}; it restarts only explicitly",
            "run `rollout promote NAME --to 1` to start again from the first step")
    if full or (to is None and spec.step >= total):
        after = _moved(spec, total, "completed")
    else:
        target = to if to is not None else spec.step + 1
        after = _moved(spec, target, "progressing")
    note = "already there" if after == before else ""
    return Transition("promote", before, after, after.step != before.step or
                      before.state == "aborted", note)


def plan_abort(spec: RolloutSpec) -> Transition:
    """All traffic back to the stable model; the step is kept to show where it stopped."""
    before = position(spec)
    if spec.state == "aborted":
        return Transition("abort", before, before, False, "already aborted")
    return Transition("abort", before, _moved(spec, spec.step, "aborted"), False)


def plan_pause(spec: RolloutSpec) -> Transition:
    """Hold the current weights: `advance` promotes no further while paused (it still aborts
    a failing canary)."""
    before = position(spec)
    if spec.state == "paused":
        return Transition("pause", before, before, False, "already paused")
    if spec.state in ("aborted", "completed"):
        raise RolloutStateError(f"the rollout is {spec.state}; there is nothing to pause")
    return Transition("pause", before, _moved(spec, spec.step, "paused"), False)


def plan_resume(spec: RolloutSpec) -> Transition:
    """Let `advance` move the rollout again; the step's pause keeps counting from its start."""
    before = position(spec)
    if spec.state == "progressing":
        return Transition("resume", before, before, False, "already progressing")
    if spec.state in ("aborted", "completed"):
        hint = ("run `rollout promote NAME --to 1` to start again"
                if spec.state == "aborted" else None)
        raise RolloutStateError(f"the rollout is {spec.state}; only a paused one resumes", hint)
    return Transition("resume", before, _moved(spec, spec.step, "progressing"), False)


# --- the clock ---------------------------------------------------------------------------------


def format_time(at: datetime) -> str:
    return at.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def step_started_at(annotation: str | None, committed: datetime | None) -> datetime | None:
    """The later of the annotation and the last commit of the file (either may be missing)."""
    recorded = parse_time(annotation) if annotation else None
    known = [t for t in (recorded, committed) if t is not None]
    return max(known) if known else None


@dataclass(frozen=True)
class PauseStatus:
    """How long the current step waits before `advance` may promote it.

    A step without `pause` waits for nothing: the next passing analysis promotes it. To hold a
    step for a person, pause the rollout (`rollout pause`).
    """

    pause_ms: int
    started: datetime | None
    remaining: timedelta | None  # None: the start time is unknown

    @property
    def elapsed(self) -> bool:
        return self.pause_ms == 0 or (self.remaining is not None
                                      and self.remaining <= timedelta(0))

    def describe(self) -> str:
        if self.pause_ms == 0:
            return "no pause at this step"
        pause = format_duration_ms(self.pause_ms)
        if self.started is None:
            return (f"pause {pause}; the step's start time is unknown (no "
                    f"{STARTED_ANNOTATION} annotation and no commit of the file)")
        if self.elapsed:
            return f"pause {pause} elapsed (step started {format_time(self.started)})"
        assert self.remaining is not None
        left = int(self.remaining.total_seconds()) + 1
        return (f"pause {pause}: {human_seconds(left)} left "
                f"(step started {format_time(self.started)})")


def human_seconds(seconds: int) -> str:
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def pause_status(spec: RolloutSpec, started: datetime | None, now: datetime) -> PauseStatus:
    if spec.step == 0:
        return PauseStatus(0, started, None)
    pause = spec.steps[min(spec.step, len(spec.steps)) - 1].pause or 0
    if pause == 0 or started is None:
        return PauseStatus(pause, started, None)
    return PauseStatus(pause, started, started + timedelta(milliseconds=pause) - now)
