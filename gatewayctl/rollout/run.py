"""The rollout commands' bodies: load, decide, edit, deliver; each returns (exit code, output).

Exit codes
    status, promote, abort, pause, resume   0 done, 1 error
    analyze                                 0 every metric passed, 2 a metric failed,
                                            3 inconclusive (none failed), 1 error
    advance                                 0 started, promoted, completed, waiting or holding;
                                            2 aborted (the canary failed); 1 error
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from gatewayctl.errors import (
    EXIT_CANARY_FAILED,
    EXIT_ERROR,
    EXIT_INCONCLUSIVE,
    EXIT_OK,
    GatewayctlError,
    UsageError,
)
from gatewayctl.ir import GatewayIR, to_json
from gatewayctl.rollout.analysis import AnalysisResult
from gatewayctl.rollout.deliver import MergeRequestOptions
from gatewayctl.rollout.document import RolloutDocument
from gatewayctl.rollout.edit import FileEdit
from gatewayctl.rollout.report import LiveWeights, StatusView
from gatewayctl.rollout.steps import Transition

EXIT_FAILED = EXIT_CANARY_FAILED  # the codes are gatewayctl.errors' one table
ANALYZE_EXIT = {"pass": EXIT_OK, "fail": EXIT_FAILED, "inconclusive": EXIT_INCONCLUSIVE}

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Delivery:
    """Where an edit goes besides the working tree."""

    commit: bool = False
    merge_request: bool = False
    mr: MergeRequestOptions = field(default_factory=MergeRequestOptions)
    apply: bool = False
    live: str | None = None
    dry_run: bool = False

    def check(self) -> None:
        if self.apply and not self.live:
            raise UsageError("--apply needs --live SOURCE (local, kubernetes, dir:PATH)")
        if self.live and not self.apply:
            raise UsageError("--live goes with --apply on this command",
                             hint="add --apply to change the live gateway now (break-glass)")
        if self.dry_run and (self.commit or self.merge_request or self.apply):
            raise UsageError("--dry-run writes nothing; drop --commit, --merge-request, "
                             "--apply")
        if self.merge_request and self.commit:
            raise UsageError("choose --commit (local Git) or --merge-request (GitLab), not both")


# --- status ------------------------------------------------------------------------------------


def _started(source: RolloutDocument) -> datetime | None:
    from gatewayctl.rollout.document import last_commit_time, started_annotation
    from gatewayctl.rollout.steps import step_started_at

    return step_started_at(started_annotation(source), last_commit_time(source.path))


def live_weights(source: RolloutDocument, live: str) -> LiveWeights:
    from gatewayctl.rollout.advance import backend_cluster

    spec = source.spec
    if live == "local":
        from gatewayctl.local.reload import read_local

        state = read_local()
        served = state.served.route(spec.route)
        if served is None:
            return LiveWeights("local", (), f"the local gateway serves no route {spec.route}")
        names = {backend_cluster(spec.route, m.name): m.name
                 for m in source.manifests.models.values()}
        weights = tuple((names.get(c, c), w) for c, w in served.clusters)
        note = "; ".join(state.drift)
        return LiveWeights("local gateway (Envoy /config_dump)", weights, note)
    from gatewayctl.orchestrate import observe
    from gatewayctl.targets import parse_target

    target = parse_target(live, source.root)
    try:
        state_ir = observe(target, _compile(source)).ir
    finally:
        target.close()
    if state_ir is None:
        return LiveWeights(live, (), "nothing is deployed there")
    return LiveWeights(live, _ir_weights(state_ir, spec.route),
                       "from the IR recorded on the live objects")


def _ir_weights(ir: GatewayIR, route: str) -> tuple[tuple[str, int], ...]:
    found = [r for r in ir.routes if r.name == route]
    if not found:
        return ()
    return tuple((b.model, b.weight) for b in found[0].backends)


def run_status(root: Path, name: str, *, live: str | None, output: str,
               clock: Clock = utcnow) -> tuple[int, str]:
    from gatewayctl.rollout.document import load_analysis, load_rollout
    from gatewayctl.rollout.report import format_status, status_json
    from gatewayctl.rollout.steps import pause_status, position

    source = load_rollout(root, name)
    view = StatusView(
        name=name, path=source.manifest.doc.path, spec=source.spec,
        position=position(source.spec),
        pause=pause_status(source.spec, _started(source), clock()),
        live=live_weights(source, live) if live else None,
        analysis=load_analysis(root, name))
    if output == "json":
        return EXIT_OK, json.dumps(status_json(view), indent=2, sort_keys=True) + "\n"
    return EXIT_OK, format_status(view)


# --- promote / abort / pause / resume ----------------------------------------------------------


def _diff(edit: FileEdit, label: str) -> str:
    return "".join(difflib.unified_diff(
        edit.before.splitlines(keepends=True), edit.after.splitlines(keepends=True),
        f"a/{label}", f"b/{label}"))


def _compile(source: RolloutDocument) -> GatewayIR:
    from gatewayctl.compile import compile_gateway

    if source.errors:
        first = source.errors[0]
        raise GatewayctlError(f"the manifests have errors: {first.format()}",
                              hint=f"run `gatewayctl validate {source.root}`")
    return compile_gateway(source.manifests)


def plan_description(source: RolloutDocument, before: GatewayIR, after: GatewayIR, title: str,
                     diff: str, target: str) -> str:
    """The merge request's description: the plan of the change, then the file's diff."""
    from gatewayctl.plan.format import format_markdown
    from gatewayctl.plan.manifest_diff import diff_gateway_ir
    from gatewayctl.plan.model import Plan, sort_changes

    fingerprint = hashlib.sha256(to_json(before).encode()).hexdigest()
    plan = Plan(gateway=after.name, namespace=after.namespace, target=f"git:{target}",
                fingerprint=f"sha256:{fingerprint}",
                changes=sort_changes(diff_gateway_ir(before, after)))
    return "\n".join([
        f"## {title}", "",
        f"Proposed by `gatewayctl rollout` from `{source.manifest.doc.path}`.", "",
        format_markdown(plan).rstrip("\n"), "",
        "<details><summary>Manifest diff</summary>", "", "```diff", diff.rstrip("\n"), "```",
        "", "</details>", ""])


def deliver_transition(source: RolloutDocument, transition: Transition, delivery: Delivery,
                       now: datetime) -> list[str]:
    """Edit the manifest for `transition` and send it where `delivery` says."""
    from gatewayctl.rollout import deliver
    from gatewayctl.rollout.document import plan_file_edit, write_checked

    delivery.check()
    total = len(source.spec.steps)
    out = [transition.summary(source.name, total)]
    if not transition.changed:
        return out
    edit = plan_file_edit(source, transition, now)
    diff = _diff(edit, source.manifest.doc.path)
    if delivery.dry_run:
        return [*out, "dry run: nothing written; the edit would be:", diff.rstrip("\n")]
    before_ir = _compile(source) if (delivery.merge_request or delivery.apply) else None
    updated = write_checked(source, edit)
    plus = sum(1 for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++"))
    minus = sum(1 for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---"))
    out.append(f"edited {source.manifest.doc.path} (+{plus} -{minus} lines)")
    message = transition.headline(source.name, total)
    if delivery.commit:
        sha = deliver.commit_file(edit.path, message)
        out.append(f"committed {sha[:12]}: {message}")
    if delivery.merge_request:
        assert before_ir is not None
        title = message[0].upper() + message[1:]
        description = plan_description(source, before_ir, _compile(updated), title, diff,
                                       deliver.merge_request_target(delivery.mr))
        out.append(deliver.open_rollout_merge_request(
            source.name, edit.path, edit.after, title, description, message, delivery.mr))
    if delivery.apply:
        assert delivery.live is not None
        out.append(deliver.apply_live(source.root, _compile(updated), delivery.live,
                                      out.append))
    return out


def run_transition(root: Path, name: str, action: str, delivery: Delivery, *,
                   to: int | None = None, full: bool = False,
                   clock: Clock = utcnow) -> tuple[int, str]:
    from gatewayctl.rollout import steps
    from gatewayctl.rollout.document import load_rollout

    source = load_rollout(root, name)
    spec = source.spec
    if action == "promote":
        transition = steps.plan_promote(spec, to=to, full=full)
    elif action == "abort":
        transition = steps.plan_abort(spec)
    elif action == "pause":
        transition = steps.plan_pause(spec)
    elif action == "resume":
        transition = steps.plan_resume(spec)
    else:  # pragma: no cover - the CLI only passes the four above
        raise UsageError(f"unknown rollout action {action}")
    lines = deliver_transition(source, transition, delivery, clock())
    return EXIT_OK, "\n".join(lines) + "\n"


# --- analyze / advance -------------------------------------------------------------------------


def _analysis_output(result: AnalysisResult, output: str) -> str:
    from gatewayctl.rollout.report import analysis_json, format_analysis, format_analysis_markdown

    if output == "json":
        return json.dumps(analysis_json(result), indent=2, sort_keys=True) + "\n"
    if output == "markdown":
        return format_analysis_markdown(result)
    return format_analysis(result)


def run_analyze(root: Path, name: str, prometheus: str, *, selector: str = "",
                output: str = "text", save: bool = True,
                clock: Clock = utcnow) -> tuple[int, str]:
    from gatewayctl.rollout.advance import analyze_rollout
    from gatewayctl.rollout.document import load_rollout, save_analysis

    source = load_rollout(root, name)
    result = analyze_rollout(source, prometheus, clock(), selector=selector)
    if save:
        save_analysis(root, result)
    return ANALYZE_EXIT[result.verdict], _analysis_output(result, output)


def run_advance(root: Path, name: str, prometheus: str, delivery: Delivery, *,
                selector: str = "", output: str = "text",
                clock: Clock = utcnow) -> tuple[int, str]:
    from gatewayctl.rollout import steps
    from gatewayctl.rollout.advance import analyze_rollout, decide, needs_analysis
    from gatewayctl.rollout.document import load_rollout, save_analysis

    delivery.check()
    source = load_rollout(root, name)
    now = clock()
    analysis = None
    if needs_analysis(source):
        analysis = analyze_rollout(source, prometheus, now, selector=selector)
        save_analysis(root, analysis)
    pause = steps.pause_status(source.spec, _started(source), now)
    advice = decide(source, pause, analysis)
    lines: list[str] = []
    if analysis is not None and output != "json":
        lines.append(_analysis_output(analysis, output).rstrip("\n"))
    lines.append(f"decision: {advice.decision}: {advice.reason}")
    code = EXIT_OK
    transition: Transition | None = None
    if advice.decision in ("start", "promote"):
        transition = steps.plan_promote(source.spec)
    elif advice.decision == "complete":
        transition = steps.plan_promote(source.spec, full=True)
    elif advice.decision == "abort":
        transition = steps.plan_abort(source.spec)
        code = EXIT_FAILED
    if transition is not None:
        lines.extend(deliver_transition(source, transition, delivery, now))
    if output == "json":
        from gatewayctl.rollout.report import analysis_json

        doc = {"decision": advice.decision, "reason": advice.reason,
               "analysis": analysis_json(analysis) if analysis else None,
               "actions": lines[1:]}
        return code, json.dumps(doc, indent=2, sort_keys=True) + "\n"
    return code, "\n".join(lines) + "\n"


__all__ = ["EXIT_ERROR", "EXIT_FAILED", "EXIT_INCONCLUSIVE", "Delivery", "run_advance",
           "run_analyze", "run_status", "run_transition"]
