"""`gatewayctl rollout ...`: canary control (status, promote, abort, pause, resume, analyze,
advance). Thin: parse, call one function of `gatewayctl.rollout.run`, print, exit.

Imports only typer and the standard library at import time.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from gatewayctl.commands import TEXT_JSON, TEXT_JSON_MARKDOWN, check_output, output_option

rollout_app = typer.Typer(
    help="Canary rollouts: step traffic from a stable to a canary model, with Git as the truth.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="The Rollout's metadata.name.")]
RootOpt = Annotated[Path, typer.Option("--root", help="Manifest root folder.")]
OutputOpt = Annotated[str, output_option(TEXT_JSON)]
CommitOpt = Annotated[bool, typer.Option("--commit", help="Commit the edited file with git.")]
MergeRequestOpt = Annotated[bool, typer.Option(
    "--merge-request",
    help="Push the edit to a branch and open a GitLab merge request with the plan "
    "(uses the CI variables CI_API_V4_URL, CI_PROJECT_ID, GITLAB_TOKEN).")]
BranchOpt = Annotated[str | None, typer.Option(
    "--branch", help="Merge request branch [default: gatewayctl/rollout-NAME].")]
TargetOpt = Annotated[str | None, typer.Option(
    "--target-branch", help="Merge request target [default: CI_DEFAULT_BRANCH, else main].")]
ApplyOpt = Annotated[bool, typer.Option(
    "--apply", help="Break-glass: also apply the edited root to --live now.")]
LiveOpt = Annotated[str | None, typer.Option(
    "--live", help="Live gateway for --apply (and advance's --apply-abort): local, kubernetes "
    "or dir:PATH.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show the edit; write nothing.")]
ContextOpt = Annotated[str | None, typer.Option(
    "--context", help="Kubeconfig context for --live kubernetes (default: current).")]
ApplyAbortOpt = Annotated[bool, typer.Option(
    "--apply-abort", help="Apply an abort to --live at once (break-glass for a failing "
    "canary); promotions still wait for review.")]
PrometheusOpt = Annotated[str, typer.Option(
    "--prometheus", envvar="GATEWAYCTL_PROMETHEUS_URL",
    help="Prometheus base URL, e.g. http://prometheus:9090.")]
SelectorOpt = Annotated[str, typer.Option(
    "--selector", help='Extra label matchers for every series, e.g. namespace="ai-gateway".')]


def _emit(code_text: tuple[int, str]) -> int:
    code, text = code_text
    sys.stdout.write(text)
    return code


def _delivery(commit: bool, merge_request: bool, branch: str | None, target: str | None,
              apply: bool, live: str | None, dry_run: bool, *, apply_abort: bool = False,
              context: str | None = None) -> object:
    from gatewayctl.rollout.deliver import MergeRequestOptions
    from gatewayctl.rollout.run import Delivery

    return Delivery(commit=commit, merge_request=merge_request,
                    mr=MergeRequestOptions(branch=branch, target=target), apply=apply,
                    live=live, dry_run=dry_run, apply_abort=apply_abort,
                    kube_context=context)


@rollout_app.command("status")
def status(
    name: NameArg,
    root: RootOpt = Path("."),
    live: Annotated[str | None, typer.Option(
        "--live", help="Also show what the live gateway serves: local, kubernetes, dir:PATH, "
        "git:REF.")] = None,
    output: OutputOpt = "text",
) -> int:
    """Current step, the weights in Git (and live), the pause and the last analysis."""

    from gatewayctl.rollout.run import run_status

    check_output(output, TEXT_JSON)
    return _emit(run_status(root, name, live=live, output=output))


def _transition(action: str, name: str, root: Path, delivery: object, to: int | None = None,
                full: bool = False) -> int:
    from gatewayctl.rollout.run import Delivery, run_transition

    assert isinstance(delivery, Delivery)
    return _emit(run_transition(root, name, action, delivery, to=to, full=full))


@rollout_app.command("promote")
def promote(
    name: NameArg,
    root: RootOpt = Path("."),
    to: Annotated[int | None, typer.Option("--to", help="Go to this step (1-based).")] = None,
    full: Annotated[bool, typer.Option("--full", help="Complete: canary 100%.")] = False,
    commit: CommitOpt = False,
    merge_request: MergeRequestOpt = False,
    branch: BranchOpt = None,
    target_branch: TargetOpt = None,
    apply: ApplyOpt = False,
    live: LiveOpt = None,
    context: ContextOpt = None,
    dry_run: DryRunOpt = False,
) -> int:
    """Move to the next step (or --to N, or --full) by editing the Rollout in place."""
    delivery = _delivery(commit, merge_request, branch, target_branch, apply, live, dry_run,
                         context=context)
    return _transition("promote", name, root, delivery, to=to, full=full)


@rollout_app.command("abort")
def abort(
    name: NameArg,
    root: RootOpt = Path("."),
    commit: CommitOpt = False,
    merge_request: MergeRequestOpt = False,
    branch: BranchOpt = None,
    target_branch: TargetOpt = None,
    apply: ApplyOpt = False,
    live: LiveOpt = None,
    context: ContextOpt = None,
    dry_run: DryRunOpt = False,
) -> int:
    """Send all traffic back to the stable model (state: aborted)."""
    delivery = _delivery(commit, merge_request, branch, target_branch, apply, live, dry_run,
                         context=context)
    return _transition("abort", name, root, delivery)


@rollout_app.command("pause")
def pause(
    name: NameArg,
    root: RootOpt = Path("."),
    commit: CommitOpt = False,
    merge_request: MergeRequestOpt = False,
    branch: BranchOpt = None,
    target_branch: TargetOpt = None,
    dry_run: DryRunOpt = False,
) -> int:
    """Hold the current weights: `advance` promotes no further until `resume` (it still
    aborts a failing canary)."""
    delivery = _delivery(commit, merge_request, branch, target_branch, False, None, dry_run)
    return _transition("pause", name, root, delivery)


@rollout_app.command("resume")
def resume(
    name: NameArg,
    root: RootOpt = Path("."),
    commit: CommitOpt = False,
    merge_request: MergeRequestOpt = False,
    branch: BranchOpt = None,
    target_branch: TargetOpt = None,
    dry_run: DryRunOpt = False,
) -> int:
    """Let `advance` move a paused rollout again."""
    delivery = _delivery(commit, merge_request, branch, target_branch, False, None, dry_run)
    return _transition("resume", name, root, delivery)


@rollout_app.command("analyze")
def analyze(
    name: NameArg,
    prometheus: PrometheusOpt,
    root: RootOpt = Path("."),
    selector: SelectorOpt = "",
    output: Annotated[str, output_option(TEXT_JSON_MARKDOWN)] = "text",
) -> int:
    """Compare canary with stable over the analysis window.

    Exit 0 all metrics pass, 2 a metric failed, 3 inconclusive (too little traffic), 1 error.
    """

    from gatewayctl.rollout.run import run_analyze

    check_output(output, TEXT_JSON_MARKDOWN)
    return _emit(run_analyze(root, name, prometheus, selector=selector, output=output))


@rollout_app.command("advance")
def advance(
    name: NameArg,
    prometheus: PrometheusOpt,
    root: RootOpt = Path("."),
    selector: SelectorOpt = "",
    commit: CommitOpt = False,
    merge_request: MergeRequestOpt = False,
    branch: BranchOpt = None,
    target_branch: TargetOpt = None,
    apply: ApplyOpt = False,
    apply_abort: ApplyAbortOpt = False,
    live: LiveOpt = None,
    context: ContextOpt = None,
    dry_run: DryRunOpt = False,
    output: OutputOpt = "text",
) -> int:
    """Analyze, then promote (pause elapsed, all pass), abort (a metric fails) or wait.

    Exit 0 promoted, completed, waiting or nothing to do; 2 aborted; 1 error.
    """

    from gatewayctl.rollout.run import Delivery, run_advance

    check_output(output, TEXT_JSON)
    delivery = _delivery(commit, merge_request, branch, target_branch, apply, live,
                         dry_run, apply_abort=apply_abort, context=context)
    assert isinstance(delivery, Delivery)
    return _emit(run_advance(root, name, prometheus, delivery, selector=selector,
                             output=output))


def register(app: typer.Typer) -> None:
    """Add the `rollout` command group to the gatewayctl app."""
    app.add_typer(rollout_app, name="rollout")
