"""`gatewayctl plan` and `gatewayctl apply`: what would change in the live gateway, and doing it.

Thin commands: parse, call `gatewayctl.orchestrate` with the target `--live` names, print, exit
code. Imports only typer and the standard library at import time; the plan machinery is
imported inside the command bodies.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gatewayctl.commands import TEXT_JSON_MARKDOWN, check_output, output_option
from gatewayctl.errors import EXIT_CHANGES, EXIT_ERROR, EXIT_OK, UsageError

if TYPE_CHECKING:
    from gatewayctl.plan.model import Plan
    from gatewayctl.plan.traffic import TrafficReport
    from gatewayctl.targets.kubernetes.options import KubeOptions

RootArg = Annotated[Path, typer.Argument(help="Manifest root folder.")]
LiveOpt = Annotated[str, typer.Option(
    "--live", help="Live state to compare with: kubernetes, local, dir:PATH or git:REF.")]
ContextOpt = Annotated[str | None, typer.Option(help="Kubeconfig context (default: current).")]
NamespaceOpt = Annotated[str | None, typer.Option(
    help="Namespace to deploy to (default: the Gateway's spec.namespace).")]
KubeconfigOpt = Annotated[str | None, typer.Option(
    help="Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster config).")]

def parse_duration(text: str) -> float:
    """Seconds in "90", "300s", "5m", "1h30m" (`gatewayctl.durations`; a plain number is
    seconds)."""
    from gatewayctl.durations import DurationError, parse_duration_ms

    try:
        return parse_duration_ms(text, unitless="s") / 1000
    except DurationError:
        raise UsageError(f'invalid duration "{text.strip()}"',
                         hint="use a number with s, m or h: 5m") from None


def _kube_options(kubeconfig: str | None, context: str | None,
                  namespace: str | None, read_only: bool = False) -> KubeOptions:
    from gatewayctl.targets.kubernetes.options import KubeOptions

    return KubeOptions(kubeconfig=kubeconfig, context=context, namespace=namespace,
                       read_only=read_only)


def write_plan_file(plan: Plan, path: Path) -> None:
    """The plan with its desired state, written atomically."""
    from gatewayctl.atomic import write_output
    from gatewayctl.plan.model import plan_to_json

    write_output(path, plan_to_json(plan, include_desired=True), "the plan")


def _print_plan(plan: Plan, output: str, report: TrafficReport | None = None) -> None:
    from gatewayctl.output import use_colour
    from gatewayctl.plan.format import format_plan

    text = format_plan(plan, output, colour=use_colour(sys.stdout))
    if report is not None:
        from gatewayctl.plan import traffic as fmt

        if output == "json":
            data = json.loads(text)
            data["traffic"] = fmt.traffic_to_json(report)
            text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        elif output == "markdown":
            text = text.rstrip("\n") + "\n\n" + fmt.format_traffic_markdown(report)
        else:
            text = text.rstrip("\n") + "\n\n" + fmt.format_traffic_text(report)
    sys.stdout.write(text)
    sys.stdout.flush()


def plan_command(
    root: RootArg = Path("."),
    live: LiveOpt = "kubernetes",
    out: Annotated[Path | None, typer.Option(
        "--out", help="Save the plan (with a fingerprint of the live state) for `apply`.")] = None,
    output: Annotated[str, output_option(TEXT_JSON_MARKDOWN)] = "text",
    detailed_exitcode: Annotated[bool, typer.Option(
        "--detailed-exitcode", help="Exit 0 without changes, 1 on error, 2 with changes.")
    ] = False,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
    gitlab_comment: Annotated[bool, typer.Option(
        "--gitlab-comment", help="Post the plan on the merge request (GitLab CI).")] = False,
    require_comment: Annotated[bool, typer.Option(
        "--require-comment", help="Post the plan, and fail when the note cannot be posted.")
    ] = False,
    environment: Annotated[str | None, typer.Option(
        help="Environment named in the merge-request note (default: CI_ENVIRONMENT_NAME).")
    ] = None,
    read_only: Annotated[bool, typer.Option(
        "--read-only", help="kubernetes: only get and list, never a server-side-apply dry "
        "run (an identity without write access; CI merge-request jobs).")] = False,
    traffic: Annotated[str | None, typer.Option(
        "--traffic", help="prometheus=URL: the cost per month before and after, per route and "
        "consumer, from the gateway's measured traffic; and the budgets it would exhaust.")
    ] = None,
    window: Annotated[str, typer.Option(
        "--window", help="The traffic window --traffic reads (e.g. 7d, 24h).")] = "7d",
) -> int:
    """Show what would change in the live gateway: manifest-level and resource-level changes."""

    from gatewayctl.orchestrate import compute_plan_and_live, desired_state, load_desired_ir
    from gatewayctl.pipeline import ManifestErrors
    from gatewayctl.targets import parse_target
    from gatewayctl.validate import format_json

    check_output(output, TEXT_JSON_MARKDOWN)
    traffic_url = window_s = None
    if traffic is not None:
        from gatewayctl.traffic import parse_traffic, parse_window

        traffic_url, window_s = parse_traffic(traffic), parse_window(window)
    try:
        ir, warnings = load_desired_ir(root, namespace, live=live)
    except ManifestErrors as err:
        if output != "json":
            raise
        sys.stdout.write(format_json(err.diagnostics, failed=True))
        return EXIT_ERROR
    target = parse_target(live, root, _kube_options(kubeconfig, context, namespace,
                                                    read_only))
    try:
        plan, live_ir = compute_plan_and_live(desired_state(ir, target, warnings=warnings),
                                              target)
    finally:
        target.close()
    report = None
    if traffic_url is not None and window_s is not None:
        from gatewayctl.plan.traffic import compute_traffic
        from gatewayctl.traffic import fetch_traffic

        report = compute_traffic(fetch_traffic(traffic_url, window_s), live_ir, ir)
    if out is not None:
        write_plan_file(plan, out)
    _print_plan(plan, output, report)
    if out is not None:
        print(f"Saved the plan to {out}; apply it with `gatewayctl apply {out}`.",
              file=sys.stderr)
    if gitlab_comment or require_comment:
        code = _comment(plan, environment, require_comment, report)
        if code != EXIT_OK:
            return code
    return EXIT_CHANGES if detailed_exitcode and plan.has_changes else EXIT_OK


def _comment(plan: Plan, environment: str | None, require: bool,
             report: TrafficReport | None = None) -> int:
    from gatewayctl.gitlab.comment import post_plan_comment
    from gatewayctl.plan.format import format_markdown

    note = format_markdown(plan)
    if report is not None:
        from gatewayctl.plan.traffic import format_traffic_markdown

        note = note.rstrip("\n") + "\n\n" + format_traffic_markdown(report)
    code, line = post_plan_comment(note, gateway=plan.gateway,
                                   environment=environment, artifact_url=None, require=require)
    print(line, file=sys.stderr)
    return code


def _confirm(plan: Plan, auto_approve: bool) -> bool:
    if auto_approve:
        return True
    if not sys.stdin.isatty():
        raise UsageError("apply asks for confirmation, and there is no terminal to ask on",
                         hint="review the plan, then run again with --auto-approve")
    print(f"\nApply these changes to gateway {plan.gateway} ({plan.target})? "
          "Only 'yes' is accepted.")
    return input("  Enter a value: ").strip() == "yes"


def apply_command(
    target: Annotated[Path, typer.Argument(
        help="Manifest root folder, or a plan saved with `plan --out`.")] = Path("."),
    live: Annotated[str | None, typer.Option(
        "--live", help="kubernetes, local or dir:PATH (default: the saved plan's, or "
                       "kubernetes).")] = None,
    auto_approve: Annotated[bool, typer.Option(
        "--auto-approve", help="Apply without asking for confirmation.")] = False,
    force_conflicts: Annotated[bool, typer.Option(
        "--force-conflicts", help="Take ownership of fields another field manager owns.")
    ] = False,
    timeout: Annotated[str, typer.Option(
        help="How long to wait for the Deployment rollout (e.g. 5m).")] = "5m",
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> int:
    """Apply exactly what the plan shows (plan first, or a saved plan that is still fresh)."""

    from gatewayctl.orchestrate import (
        apply_root,
        apply_saved,
        desired_state,
        load_desired_ir,
        read_saved_plan,
    )
    from gatewayctl.targets import parse_target
    from gatewayctl.targets.base import ApplyOptions

    options = ApplyOptions(force_conflicts=force_conflicts, timeout=parse_duration(timeout))
    kube = _kube_options(kubeconfig, context, namespace)
    if target.is_file():
        plan = read_saved_plan(target)
        if live is not None and live != plan.target:
            raise UsageError(f"the plan was computed against {plan.target}, not {live}",
                             hint=f"apply it with --live {plan.target}, or plan again")
        destination = parse_target(plan.target, None, kube)
        try:
            print(f"Applying the saved plan {target} to {plan.target}.")
            report = apply_saved(plan, destination, options=options, say=print)
        finally:
            destination.close()
    else:
        ir, warnings = load_desired_ir(target, namespace, live=live or "kubernetes")
        destination = parse_target(live or "kubernetes", target, kube)
        try:
            desired = desired_state(ir, destination, warnings=warnings)
            _, report = apply_root(
                desired, destination, confirm=lambda p: _confirm(p, auto_approve),
                show=lambda p: _print_plan(p, "text"), options=options, say=print)
        finally:
            destination.close()
    print(report.summary if report else "Nothing to apply.")
    return EXIT_OK


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_command)
    app.command("apply")(apply_command)
