"""Plan and apply, the same way for every target: lock -> read -> freshness -> confirm -> execute.

The commands (`plan`, `apply`) and `rollout ... --apply` all come through here; targets
(`gatewayctl.targets`) only read, lock and write, and `gatewayctl.plan` only computes and
formats. Order of an apply (docs/plan-and-apply.md):

1. refuse a read-only target, and a saved plan made for another place (`where`);
2. `envoy --mode validate` on the Envoy config the target would run: a config Envoy rejects
   never reaches a cluster, a bundle or the local gateway;
3. take the target's lock, and hold it to the end;
4. read the target; a saved plan whose fingerprint no longer matches is refused as stale;
5. from a root: show the plan and ask; after the answer, read again and refuse if the target
   changed while waiting (someone else's change is never overwritten unseen);
6. apply; release the lock, whatever happened.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path

from gatewayctl.errors import GatewayctlError, UsageError
from gatewayctl.ir import GatewayIR
from gatewayctl.plan.compute import build_plan, desired_of
from gatewayctl.plan.model import DesiredState, ObservedState, Plan, PlanFormatError, plan_from_json
from gatewayctl.render.k8s.provenance import Provenance
from gatewayctl.targets.base import ApplyOptions, ApplyReport, ReadOnlyTarget, Say, Target


class StalePlanError(GatewayctlError):
    """The target changed between `plan --out` and `apply plan.json`."""

    def __init__(self, plan: Plan, now: str) -> None:
        super().__init__(
            f"the saved plan is stale: the live state of gateway {plan.gateway} ({plan.target}) "
            f"changed since the plan was made (fingerprint {plan.fingerprint[:19]} then, "
            f"{now[:19]} now); nothing was applied",
            hint="run `gatewayctl plan` again, review it, and apply the new plan")


class ChangedWhileWaiting(GatewayctlError):
    """The target changed while apply waited for the confirmation."""

    def __init__(self, plan: Plan) -> None:
        super().__init__(
            f"the live state of gateway {plan.gateway} ({plan.target}) changed while this "
            "apply waited for confirmation; nothing was applied",
            hint="run apply again to see (and confirm) the plan against the new state")


class WrongTargetError(GatewayctlError):
    """A saved plan applied to another cluster than the one it was computed against."""

    def __init__(self, plan: Plan, now: str) -> None:
        super().__init__(
            f"the saved plan was computed against the cluster at {plan.where}, but this "
            f"apply would go to {now}; nothing was applied",
            hint="point --kubeconfig/--context at the cluster the plan was made for, or plan "
                 "again against this one")


class ApplyCancelled(GatewayctlError):
    """The user did not confirm."""

    def __init__(self) -> None:
        super().__init__("apply cancelled; nothing was changed")


def _quiet(_message: str) -> None:
    return None


# -- desired state ------------------------------------------------------------------------------

def load_desired_ir(root: Path, namespace: str | None = None, *, live: str | None = None
                    ) -> tuple[GatewayIR, tuple[str, ...]]:
    """Compile the root for the target `live` names (`--live`; `dataPlaneFilters: auto`
    depends on whether gatewayctl runs that Envoy itself); `namespace` (from --namespace)
    overrides the Gateway's namespace."""
    from gatewayctl.pipeline import compile_root
    from gatewayctl.targets import is_local

    compiled = compile_root(root, local=is_local(live))
    ir = compiled.ir
    if namespace and namespace != ir.namespace:
        ir = dataclasses.replace(ir, namespace=namespace)
    return ir, tuple(f"{d.resource}: {d.message()}" if d.resource else d.message()
                     for d in compiled.warnings)


def desired_state(ir: GatewayIR, target: Target, provenance: Provenance | None = None,
                  warnings: tuple[str, ...] = ()) -> DesiredState:
    """What the manifests ask `target` to hold, rendered in the target's own form."""
    provenance = provenance if provenance is not None else Provenance.from_environment()
    return DesiredState(ir, target.render(ir, provenance), provenance, warnings)


# -- plan ---------------------------------------------------------------------------------------

def compute_plan(desired: DesiredState, target: Target) -> Plan:
    """Read the target and compare (no lock: a plan changes nothing)."""
    return compute_plan_and_live(desired, target)[0]


def compute_plan_and_live(desired: DesiredState, target: Target
                          ) -> tuple[Plan, GatewayIR | None]:
    """The plan, and the IR the target runs (None: none recorded there), for reports that
    compare before and after (`plan --traffic`)."""
    observed = target.read(desired)
    return build_plan(desired, observed, target.spec, target.where()), observed.ir


def observe(target: Target, ir: GatewayIR) -> ObservedState:
    """What the target holds for the gateway of `ir` (its recorded IR, its resources), without
    previewing any change: for status views."""
    return target.read(DesiredState(ir, (), Provenance()))


# -- apply --------------------------------------------------------------------------------------

def check_writable(target: Target) -> None:
    if not target.writable:
        raise ReadOnlyTarget(target.spec)


def check_where(plan: Plan, target: Target) -> None:
    """Refuse, before taking any lock there, to apply a plan to another cluster."""
    if plan.where is None:
        return  # a target whose spec names one place, or a plan saved before `where`
    now = target.where()
    if now is not None and now != plan.where:
        raise WrongTargetError(plan, now)


def check_envoy(target: Target, ir: GatewayIR) -> None:
    """`envoy --mode validate` on the static config the target would run for `ir`."""
    from gatewayctl.local.module import validation_env
    from gatewayctl.local.process import find_envoy, validate_config

    text = target.envoy_config(ir)
    with tempfile.TemporaryDirectory(prefix="gatewayctl-validate-") as tmp:
        path = Path(tmp) / "validate.yaml"
        path.write_text(text, encoding="utf-8")
        envoy = find_envoy()
        env = target.envoy_env()
        if env is None:  # a config for an image of its own: the module built for the check
            env = validation_env(ir, Path(tmp) / "modules", envoy)
        validate_config(path, envoy=envoy, env=env)


def apply_root(
    desired: DesiredState, target: Target, *, confirm: Callable[[Plan], bool],
    show: Callable[[Plan], None] = lambda _p: None, options: ApplyOptions | None = None,
    say: Say = _quiet,
) -> tuple[Plan, ApplyReport | None]:
    """Lock, plan, show, confirm, check nothing moved meanwhile, apply.

    The report is None when there was nothing to do."""
    options = options or ApplyOptions()
    check_writable(target)
    check_envoy(target, desired.ir)
    with target.lock(desired.ir.name, desired.ir.namespace, options.timeout):
        plan = compute_plan(desired, target)
        show(plan)
        if not plan.has_changes:
            return plan, None
        if not confirm(plan):
            raise ApplyCancelled()
        if target.read(desired).fingerprint != plan.fingerprint:
            raise ChangedWhileWaiting(plan)
        return plan, target.apply(plan, options, say)


def apply_saved(plan: Plan, target: Target, *, options: ApplyOptions | None = None,
                say: Say = _quiet) -> ApplyReport | None:
    """Lock, check the plan is still fresh, apply. None when the plan has no changes."""
    options = options or ApplyOptions()
    check_writable(target)
    if plan.desired is None:
        raise UsageError("the plan holds no desired state (it was printed with -o json, not "
                         "saved with --out)", hint="save plans with `plan ROOT --out FILE`")
    check_where(plan, target)
    check_envoy(target, plan.desired.ir)
    with target.lock(plan.gateway, plan.namespace, options.timeout):
        now = target.read(desired_of(plan)).fingerprint
        if now != plan.fingerprint:
            raise StalePlanError(plan, now)
        if not plan.has_changes:
            return None
        return target.apply(plan, options, say)


def read_saved_plan(path: Path) -> Plan:
    hint = "save plans with `gatewayctl plan ROOT --out plan.json`"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise UsageError(f"cannot read the plan {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not a usable saved plan: not UTF-8 text", hint=hint) from None
    try:
        return plan_from_json(text)
    except PlanFormatError as err:
        raise UsageError(f"{path} is not a usable saved plan: {err}", hint=hint) from None
