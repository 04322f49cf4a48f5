"""Making a rollout's transition and sending it where the command says.

`deliver_transition` refuses a root with errors, then either edits the working tree (and
commits it, or applies it break-glass), or, for `--merge-request`, redoes the transition on the
target branch's current head read through the GitLab API (`propose_on_head`) and proposes that
one file on the action's own branch. Git, GitLab and the live gateway are reached through
`deliver.py`; nothing here reads the clock (`now` is passed in).
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from gatewayctl.errors import GatewayctlError, UsageError
from gatewayctl.ir import GatewayIR, to_json
from gatewayctl.manifests.kinds import RolloutSpec
from gatewayctl.rollout.deliver import MergeRequestOptions
from gatewayctl.rollout.document import RolloutDocument
from gatewayctl.rollout.edit import FileEdit
from gatewayctl.rollout.steps import Transition, position


@dataclass(frozen=True)
class Delivery:
    """Where an edit goes besides the working tree."""

    commit: bool = False
    merge_request: bool = False
    mr: MergeRequestOptions = field(default_factory=MergeRequestOptions)
    apply: bool = False
    live: str | None = None
    dry_run: bool = False
    apply_abort: bool = False  # advance: apply an abort at once, promotions wait for review
    kube_context: str | None = None

    def check(self) -> None:
        if (self.apply or self.apply_abort) and not self.live:
            raise UsageError("--apply needs --live SOURCE (local, kubernetes, dir:PATH)")
        if self.live and not (self.apply or self.apply_abort):
            raise UsageError("--live goes with --apply on this command",
                             hint="add --apply to change the live gateway now (break-glass)")
        if self.dry_run and (self.commit or self.merge_request or self.apply
                             or self.apply_abort):
            raise UsageError("--dry-run writes nothing; drop --commit, --merge-request, "
                             "--apply")
        if self.merge_request and self.commit:
            raise UsageError("choose --commit (local Git) or --merge-request (GitLab), not both")


def _diff(edit: FileEdit, label: str) -> str:
    return "".join(difflib.unified_diff(
        edit.before.splitlines(keepends=True), edit.after.splitlines(keepends=True),
        f"a/{label}", f"b/{label}"))


def compile_rollout_root(source: RolloutDocument, *, live: str | None = None) -> GatewayIR:
    """The IR of the rollout's root, for the target `live` names when it is applied there
    (`dataPlaneFilters: auto` depends on whether gatewayctl runs that Envoy itself)."""
    from gatewayctl.compile import compile_gateway
    from gatewayctl.targets import is_local

    if source.errors:
        first = source.errors[0]
        raise GatewayctlError(f"the manifests have errors: {first.format(str(source.root))}",
                              hint=f"run `gatewayctl validate {source.root}`")
    return compile_gateway(source.manifests, local=is_local(live))


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


TransitionFor = Callable[[RolloutSpec], "Transition | None"]


def refuse_invalid(source: RolloutDocument, where: str = "") -> None:
    """Edit only a root that validates: a root picked by mistake (a repository's top holding
    test fixtures, say) has errors, and its first Rollout of that name is not the one meant."""
    if source.errors:
        first = source.errors[0]
        more = f" (and {len(source.errors) - 1} more)" if len(source.errors) > 1 else ""
        raise GatewayctlError(
            f"the manifests under {where or source.root} have errors, so nothing was edited: "
            f"{first.format(str(source.root))}{more}",
            hint=f"run `gatewayctl validate {source.root}`, or give the root with --root")


def deliver_transition(source: RolloutDocument, plan_for: TransitionFor, delivery: Delivery,
                       now: datetime) -> list[str]:
    """Make the transition `plan_for` gives for the rollout's state, and send it where
    `delivery` says: the working tree (and a commit, or a break-glass apply), or a merge
    request made on the target branch's current head."""
    delivery.check()
    refuse_invalid(source)
    if delivery.merge_request:
        return propose_on_head(source, plan_for, delivery, now)
    transition = plan_for(source.spec)
    assert transition is not None
    return _edit_working_tree(source, transition, delivery, now)


def _applies(delivery: Delivery, transition: Transition) -> bool:
    return delivery.apply or (delivery.apply_abort and transition.action == "abort")


def _edit_working_tree(source: RolloutDocument, transition: Transition, delivery: Delivery,
                       now: datetime) -> list[str]:
    from gatewayctl.rollout import deliver
    from gatewayctl.rollout.document import plan_file_edit, write_checked

    total = len(source.spec.steps)
    out = [transition.summary(source.name, total)]
    if not transition.changed:
        if _applies(delivery, transition) and transition.action == "abort":
            # Git already says aborted, but live may not: the break-glass abort sets live to
            # the stable model whatever Git says (the root as it stands is aborted)
            assert delivery.live is not None
            out.append(deliver.apply_live(source.root,
                                          compile_rollout_root(source, live=delivery.live),
                                          delivery.live, out.append, delivery.kube_context))
        return out
    edit = plan_file_edit(source, transition, now)
    diff = _diff(edit, source.manifest.doc.path)
    if delivery.dry_run:
        return [*out, "dry run: nothing written; the edit would be:", diff.rstrip("\n")]
    updated = write_checked(source, edit)
    out.append(f"edited {source.manifest.doc.path} ({_counts(diff)})")
    message = transition.headline(source.name, total)
    if delivery.commit:
        sha = deliver.commit_file(edit.path, message)
        out.append(f"committed {sha[:12]}: {message}")
    if _applies(delivery, transition):
        assert delivery.live is not None
        out.append(deliver.apply_live(source.root,
                                      compile_rollout_root(updated, live=delivery.live),
                                      delivery.live, out.append, delivery.kube_context))
    elif transition.action == "abort":
        out.append(_UNCHANGED_LIVE.format(name=source.name))
    return out


_UNCHANGED_LIVE = (
    "the live gateway is unchanged: the canary keeps its traffic until this change is applied "
    "(merge it and let the default branch's apply job run, or `gatewayctl apply`); to stop it "
    "now, run `gatewayctl rollout abort {name} --apply --live kubernetes` (break-glass)")


def _counts(diff: str) -> str:
    lines = diff.splitlines()
    plus = sum(1 for ln in lines if ln.startswith("+") and not ln.startswith("+++"))
    minus = sum(1 for ln in lines if ln.startswith("-") and not ln.startswith("---"))
    return f"+{plus} -{minus} lines"


def propose_on_head(source: RolloutDocument, plan_for: TransitionFor, delivery: Delivery,
                    now: datetime) -> list[str]:
    """The merge-request path: read the root at the target branch's head through the API,
    redo the transition there, commit that one file on the action's own branch, open or
    update its merge request; apply an abort first when asked (break-glass)."""
    import tempfile

    from gatewayctl.gitlab.ci_env import load_ci_env
    from gatewayctl.gitlab.client import GitLabContext
    from gatewayctl.gitlab.repository import read_folder_at_head
    from gatewayctl.rollout import deliver
    from gatewayctl.rollout.document import load_rollout, plan_file_edit, write_checked

    root_in_repo = deliver.repo_relative(source.root)
    ctx = GitLabContext.from_ci_env(load_ci_env())
    target = deliver.merge_request_target(delivery.mr)
    head = read_folder_at_head(ctx, target, root_in_repo)
    where = f"{root_in_repo or '.'} at {target} ({head.sha[:12]})"
    with tempfile.TemporaryDirectory(prefix="gatewayctl-head-") as tmp:
        head_root = Path(tmp)
        for path, data in head.files.items():
            inside = path[len(root_in_repo):].lstrip("/") if root_in_repo else path
            (head_root / inside).parent.mkdir(parents=True, exist_ok=True)
            (head_root / inside).write_bytes(data)
        at_head = load_rollout(head_root, source.name)
        refuse_invalid(at_head, where)
        total = len(at_head.spec.steps)
        transition = plan_for(at_head.spec)
        if transition is None:
            return [f"rollout {source.name}: {target} moved on since this pipeline's commit "
                    f"(now {position(at_head.spec).describe(total)}); nothing proposed: "
                    "the next run decides on it"]
        out = [transition.summary(source.name, total) + f" on {target} ({head.sha[:12]})"]
        if not transition.changed:
            return out
        edit = plan_file_edit(at_head, transition, now)
        diff = _diff(edit, at_head.manifest.doc.path)
        if delivery.dry_run:
            return [*out, "dry run: nothing written; the edit would be:", diff.rstrip("\n")]
        before_ir = compile_rollout_root(at_head)
        updated = write_checked(at_head, edit)
        after_ir = compile_rollout_root(updated)
        message = transition.headline(source.name, total)
        failure: GatewayctlError | None = None
        if _applies(delivery, transition):
            assert delivery.live is not None
            try:  # stop the canary first; the merge request then records it
                live_ir = compile_rollout_root(updated, live=delivery.live)
                out.append(deliver.apply_live(head_root, live_ir, delivery.live, out.append,
                                              delivery.kube_context))
            except GatewayctlError as err:
                failure = err
                out.append(f"error: the {transition.action} was not applied: {err.message}")
        title = message[0].upper() + message[1:]
        file_path = "/".join(filter(None, [root_in_repo, at_head.manifest.doc.path]))
        text = ("\ufeff" if edit.bom else "") + edit.after
        description = plan_description(at_head, before_ir, after_ir, title, diff, target)
        out.append(deliver.propose(head, ctx, target=target,
                                   branch=delivery.mr.branch or
                                   deliver.branch_for(source.name, transition),
                                   files={file_path: text}, title=title,
                                   description=description, message=message))
        if transition.action == "abort" and not _applies(delivery, transition):
            out.append(_UNCHANGED_LIVE.format(name=source.name))
        if failure is not None:
            raise failure
        return out


def transition_for(action: str, to: int | None, full: bool) -> TransitionFor:
    from gatewayctl.rollout import steps

    def plan_for(spec: RolloutSpec) -> Transition:
        if action == "promote":
            return steps.plan_promote(spec, to=to, full=full)
        if action == "abort":
            return steps.plan_abort(spec)
        if action == "pause":
            return steps.plan_pause(spec)
        if action == "resume":
            return steps.plan_resume(spec)
        raise UsageError(f"unknown rollout action {action}")  # pragma: no cover

    return plan_for
