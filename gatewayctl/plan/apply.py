"""Applying a plan: exactly the changes it shows, to the live source it was computed against.

Order of an apply (docs/plan-and-apply.md):
1. take the target's lock (Kubernetes: a Lease `gatewayctl-<gateway>`; dir: a lock file;
   local: the local gateway's own lock), so two applies to one gateway never interleave;
2. for a saved plan, read the live state again and refuse if its fingerprint changed;
3. Kubernetes: server-side apply (field manager `gatewayctl`) of the objects the plan creates
   or changes, all dry-run first, then in dependency order; prune the objects it deletes (only
   ever this gateway's labelled objects); wait for the Deployment when it changed;
   dir: write the rendered bundle atomically; local: hand the IR to the local gateway;
4. release the lock, whatever happened.
A failure part-way says what was applied and what was not.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gatewayctl.errors import GatewayctlError, UsageError
from gatewayctl.ir import GatewayIR
from gatewayctl.plan.compute import DesiredState, compute_plan, objects_to_apply
from gatewayctl.plan.model import Plan
from gatewayctl.plan.resource_diff import IR_RECORD_KEY
from gatewayctl.plan.sources import (
    DirSource,
    GitSource,
    KubernetesSource,
    LiveSource,
    LiveState,
    LocalSource,
)

KubeObject = dict[str, Any]
Say = Callable[[str], None]
FIELD_MANAGER = "gatewayctl"
LEASE_MARGIN_S = 120.0
ROLLOUT_POLL_S = 0.5


class StalePlanError(GatewayctlError):
    """The live state changed between `plan --out` and `apply plan.json`."""

    def __init__(self, plan: Plan, now: str) -> None:
        super().__init__(
            f"the saved plan is stale: the live state of gateway {plan.gateway} ({plan.live}) "
            f"changed since the plan was made (fingerprint {plan.live_fingerprint[:19]} then, "
            f"{now[:19]} now); nothing was applied",
            hint="run `gatewayctl plan` again, review it, and apply the new plan")


class WrongTargetError(GatewayctlError):
    """A saved plan applied to another cluster than the one it was computed against."""

    def __init__(self, plan: Plan, now: str) -> None:
        super().__init__(
            f"the saved plan was computed against the cluster at {plan.live_target}, but this "
            f"apply would go to {now}; nothing was applied",
            hint="point --kubeconfig/--context at the cluster the plan was made for, or plan "
                 "again against this one")


class ApplyIncomplete(GatewayctlError):
    """Objects were applied, but a later step (prune, rollout) did not finish."""


class ApplyCancelled(GatewayctlError):
    """The user did not confirm."""

    def __init__(self) -> None:
        super().__init__("apply cancelled; nothing was changed")


@dataclass(frozen=True)
class ApplyReport:
    target: str
    lines: tuple[str, ...]  # one per thing done, in order
    summary: str


def holder_identity(environ: dict[str, str] | None = None) -> str:
    """Who holds the lock: the CI job when there is one, else user@host and the process."""
    env = os.environ if environ is None else environ
    if env.get("CI_JOB_URL"):
        return env["CI_JOB_URL"]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def check_applicable(live: LiveSource) -> None:
    if isinstance(live, GitSource):
        raise UsageError(f"{live.spec} is read-only: a plan can be computed against it, "
                         "but nothing can be applied to it",
                         hint="apply with --live kubernetes, --live local or --live dir:PATH")


@contextlib.contextmanager
def locked(live: LiveSource, gateway: str, namespace: str, timeout: float,
           holder: str | None = None) -> Iterator[None]:
    """Hold the target's apply lock for the duration of the block."""
    check_applicable(live)
    if isinstance(live, KubernetesSource):
        from gatewayctl.live.errors import KubeNotFound

        client = live.client()
        try:
            lease = client.acquire_lease(f"gatewayctl-{gateway}", namespace,
                                         holder or holder_identity(), timeout + LEASE_MARGIN_S)
        except KubeNotFound as err:
            raise GatewayctlError(
                f'cannot lock gateway {gateway}: namespace "{namespace}" does not exist '
                f"({err.server_message})",
                hint=f"create it first: kubectl create namespace {namespace}") from None
        try:
            yield
        finally:
            with contextlib.suppress(GatewayctlError):
                client.release_lease(lease)
    elif isinstance(live, DirSource):
        from gatewayctl.render.output_folder import check_folder

        target = check_folder(live.path, root=live.root)  # a refused folder gets no lock file
        target.parent.mkdir(parents=True, exist_ok=True)
        lock_path = target.parent / f".gatewayctl-apply-{target.name}.lock"
        with open(lock_path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise GatewayctlError(f"another apply to {target} is in progress",
                                      hint=f"wait for it, or remove {lock_path} if stale"
                                      ) from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    else:
        yield  # the local gateway locks its own state directory


def check_target(plan: Plan, live: LiveSource) -> None:
    """Refuse, before taking any lock there, to apply a plan to another cluster."""
    if plan.live_target is None:
        return  # a plan saved before targets were recorded, or a source without one
    now = live.target()
    if now is not None and now != plan.live_target:
        raise WrongTargetError(plan, now)


def check_fresh(plan: Plan, live: LiveState) -> None:
    if live.fingerprint != plan.live_fingerprint:
        raise StalePlanError(plan, live.fingerprint)


def desired_ir(plan: Plan) -> GatewayIR:
    if plan.desired is None:
        raise GatewayctlError("the plan holds no desired state (it was printed with -o json, "
                              "not saved with --out)", hint="save plans with `plan --out FILE`")
    return plan.desired.ir


def execute(plan: Plan, live: LiveSource, *, force_conflicts: bool = False,
            timeout: float = 300.0, say: Say = lambda _m: None) -> ApplyReport:
    """Carry out a plan on `live` (the caller holds the lock and checked freshness)."""
    check_applicable(live)
    if isinstance(live, KubernetesSource):
        assert plan.desired is not None
        return _apply_kubernetes(plan, live, list(plan.desired.objects), force_conflicts,
                                 timeout, say)
    if isinstance(live, DirSource):
        return _apply_dir(plan, live, say)
    if isinstance(live, LocalSource):
        return _apply_local(plan, live, say)
    raise UsageError(f"cannot apply to {live.spec}")


def apply_from_root(
    desired: DesiredState, live: LiveSource, *, confirm: Callable[[Plan], bool],
    show: Callable[[Plan], None] = lambda _p: None, force_conflicts: bool = False,
    timeout: float = 300.0, say: Say = lambda _m: None,
) -> tuple[Plan, ApplyReport | None]:
    """Lock, plan, show, confirm, apply. The report is None when there was nothing to do."""
    check_applicable(live)
    with locked(live, desired.ir.name, desired.ir.namespace, timeout):
        plan = compute_plan(desired, live)
        show(plan)
        if not plan.has_changes:
            return plan, None
        if not confirm(plan):
            raise ApplyCancelled()
        return plan, execute(plan, live, force_conflicts=force_conflicts, timeout=timeout,
                             say=say)


def apply_saved(plan: Plan, live: LiveSource, *, force_conflicts: bool = False,
                timeout: float = 300.0, say: Say = lambda _m: None) -> ApplyReport | None:
    """Lock, check the plan is still fresh, apply. None when the plan has no changes."""
    check_applicable(live)
    if plan.desired is None:
        raise UsageError("the plan holds no desired state (it was printed with -o json, not "
                         "saved with --out)", hint="save plans with `plan ROOT --out FILE`")
    check_target(plan, live)
    with locked(live, plan.gateway, plan.namespace, timeout):
        check_fresh(plan, live.read(plan.gateway, plan.namespace, plan.desired.objects))
        if not plan.has_changes:
            return None
        return execute(plan, live, force_conflicts=force_conflicts, timeout=timeout, say=say)


def _apply_kubernetes(plan: Plan, live: KubernetesSource, objects: Sequence[KubeObject],
                      force: bool, timeout: float, say: Say) -> ApplyReport:
    from gatewayctl.live.errors import (
        KubeApplyError,
        KubeError,
        RolloutFailedError,
        RolloutTimeoutError,
    )
    from gatewayctl.live.kube import Progress
    from gatewayctl.live.objects import ref

    client = live.client()
    lines: list[str] = []

    to_apply = objects_to_apply(plan, objects)
    # The IR record goes last, so that it never claims more than what was applied.
    records = [o for o in to_apply if IR_RECORD_KEY in (o.get("binaryData") or {})]
    rest = [o for o in to_apply if o not in records]
    offset = {"apply": 0}

    def progress(p: Progress) -> None:
        if p.action == "validated":
            return
        index, total = p.index, p.total
        if p.action in ("created", "configured", "unchanged"):
            index, total = index + offset["apply"], len(to_apply)
        where = f"[{index}/{total}] " if total else ""
        line = f"{where}{p.action} {p.ref}" + (f": {p.detail}" if p.detail else "")
        if p.action != "rollout":
            lines.append(line)
        say(line)

    applied: list[str] = []
    for batch in (rest, records):
        if not batch:
            continue
        try:
            result = client.apply_objects(batch, field_manager=FIELD_MANAGER,
                                          force_conflicts=force, on_progress=progress)
        except KubeApplyError as err:
            raise KubeApplyError(err.failed, err.cause, (*applied, *err.applied),
                                 err.not_applied + tuple(ref(o) for o in records
                                                         if batch is rest)) from None
        except KubeError as err:
            if not applied:
                raise
            raise KubeApplyError(ref(batch[0]), err, tuple(applied),
                                 tuple(ref(o) for o in batch)) from None
        applied += [a.ref for a in result.applied]
        offset["apply"] = len(applied)
    doomed = [c for c in plan.pending("resource") if c.action == "delete"]
    pruned: list[str] = []
    if doomed:
        def track(p: Progress) -> None:
            pruned.append(p.ref)
            progress(p)

        try:
            client.prune(list(objects), plan.gateway, plan.namespace, on_progress=track)
        except KubeError as err:
            left = [c.address for c in doomed if c.address not in pruned]
            raise ApplyIncomplete(
                f"applied {len(applied)} object(s), but pruning stopped: {err.message} "
                f"(pruned {len(pruned)}: {', '.join(pruned) or 'none'}; not pruned "
                f"{len(left)}: {', '.join(left) or 'none'})",
                hint=err.hint or "run apply again; applying is idempotent") from None
    deployment = next((o for o in to_apply if o.get("kind") == "Deployment"), None)
    rollout = ""
    if deployment is not None:
        name = deployment["metadata"]["name"]
        try:
            client.wait_for_rollout(name, plan.namespace, timeout, on_progress=progress,
                                    poll_interval=ROLLOUT_POLL_S)
        except (RolloutTimeoutError, RolloutFailedError) as err:
            raise ApplyIncomplete(
                f"every object was applied ({len(applied)} applied, {len(pruned)} pruned), "
                f"but {err.message}", hint=err.hint) from None
        rollout = f"; deployment {plan.namespace}/{name} rolled out"
    counts = plan.counts("resource")
    summary = (f"Apply complete: {counts['create']} created, {counts['update']} changed, "
               f"{len(pruned)} deleted{rollout}.")
    return ApplyReport(live.spec, tuple(lines), summary)


def _apply_dir(plan: Plan, live: DirSource, say: Say) -> ApplyReport:
    from gatewayctl.render.bundle import render_files
    from gatewayctl.render.k8s import SourceInfo
    from gatewayctl.render.k8s.writer import dump_object, manifest_filename
    from gatewayctl.render.output_folder import plan_folder, write_folder

    assert plan.desired is not None
    source = SourceInfo(**dict(plan.source))
    files = render_files(desired_ir(plan), source=source)
    planned = {f"kubernetes/{manifest_filename(o)}": dump_object(o)
               for o in plan.desired.objects}
    rendered = {k: v for k, v in files.items() if k.startswith("kubernetes/")}
    if planned != rendered:
        raise GatewayctlError(
            "this gatewayctl renders the plan's IR differently from the gatewayctl that made "
            "the plan; nothing was written", hint="plan again with this version")
    shown = sorted(c.name for c in plan.pending("resource") if c.kind == "File")
    if list(plan_folder(live.path, files, root=live.root).delete) != shown:
        raise GatewayctlError(f"the files in {live.path} changed since the plan; nothing was "
                              "written", hint="run `gatewayctl plan` again")
    done = write_folder(live.path, files, root=live.root)
    line = (f"wrote {len(done.create) + len(done.update)} files to {live.path} "
            f"({len(done.create)} new, {len(done.update)} changed, {len(done.unchanged)} "
            f"unchanged), removed {len(done.delete)}")
    lines = (line, *(f"removed {live.path}/{rel}" for rel in done.delete))
    for each in lines:
        say(each)
    counts = plan.counts("resource")
    return ApplyReport(live.spec, lines, f"Apply complete: {counts['create']} created, "
                       f"{counts['update']} changed, {counts['delete']} deleted.")


def _apply_local(plan: Plan, live: LocalSource, say: Say) -> ApplyReport:
    from gatewayctl.local.gateway import apply_local

    lines: list[str] = []

    def progress(message: str) -> None:
        lines.append(message)
        say(message)

    result = apply_local(desired_ir(plan), state_dir=live.state_dir, on_progress=progress)
    return ApplyReport(live.spec, tuple(lines), result.summary())


def read_saved_plan(path: Path) -> Plan:
    from gatewayctl.plan.model import PlanFormatError, plan_from_json

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise UsageError(f"cannot read the plan {path}: {err.strerror}") from None
    try:
        return plan_from_json(text)
    except PlanFormatError as err:
        raise UsageError(f"{path} is not a usable saved plan: {err}",
                         hint="save plans with `gatewayctl plan ROOT --out plan.json`") from None
