"""The rollout commands' bodies: load, decide, then make the move (`moves.py`); each returns
(exit code, output).

Exit codes
    status, promote, abort, pause, resume   0 done, 1 error
    analyze                                 0 every metric passed, 2 a metric failed,
                                            3 inconclusive (none failed), 1 error
    advance                                 0 started, promoted, completed, waiting or holding;
                                            2 aborted (the canary failed); 1 error
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from gatewayctl.errors import (
    EXIT_CANARY_FAILED,
    EXIT_ERROR,
    EXIT_INCONCLUSIVE,
    EXIT_OK,
)
from gatewayctl.ir import GatewayIR
from gatewayctl.manifests.kinds import RolloutSpec
from gatewayctl.rollout.analysis import AnalysisResult
from gatewayctl.rollout.document import RolloutDocument
from gatewayctl.rollout.moves import (
    Delivery,
    compile_rollout_root,
    deliver_transition,
    transition_for,
)
from gatewayctl.rollout.report import LiveWeights, StatusView
from gatewayctl.rollout.steps import Transition

EXIT_FAILED = EXIT_CANARY_FAILED  # the codes are gatewayctl.errors' one table
ANALYZE_EXIT = {"pass": EXIT_OK, "fail": EXIT_FAILED, "inconclusive": EXIT_INCONCLUSIVE}

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


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
        state_ir = observe(target, compile_rollout_root(source)).ir
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


def run_transition(root: Path, name: str, action: str, delivery: Delivery, *,
                   to: int | None = None, full: bool = False,
                   clock: Clock = utcnow) -> tuple[int, str]:
    from gatewayctl.rollout.document import load_rollout

    source = load_rollout(root, name)
    lines = deliver_transition(source, transition_for(action, to, full), delivery, clock())
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
    code = EXIT_FAILED if advice.decision == "abort" else EXIT_OK
    if advice.decision in ("start", "promote", "complete", "abort"):
        decided_on = steps.position(source.spec)

        def plan_for(spec: RolloutSpec) -> Transition | None:
            if advice.decision == "abort":  # a failing canary is stopped whatever moved
                return steps.plan_abort(spec)
            if steps.position(spec) != decided_on:
                return None  # the analysis judged another step than the one there now
            return steps.plan_promote(spec, full=advice.decision == "complete")

        lines.extend(deliver_transition(source, plan_for, delivery, now))
    if output == "json":
        from gatewayctl.rollout.report import analysis_json

        doc = {"decision": advice.decision, "reason": advice.reason,
               "analysis": analysis_json(analysis) if analysis else None,
               "actions": lines[1:]}
        return code, json.dumps(doc, indent=2, sort_keys=True) + "\n"
    return code, "\n".join(lines) + "\n"


__all__ = ["EXIT_ERROR", "EXIT_FAILED", "EXIT_INCONCLUSIVE", "Delivery", "run_advance",
           "run_analyze", "run_status", "run_transition"]
