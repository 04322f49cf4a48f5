"""A plan as text (Terraform-like, `+ ~ -`), markdown (a merge-request note) or JSON.

Text is coloured only when asked (the CLI asks on a terminal without NO_COLOR). Markdown has a
summary table per layer and puts every diff in a `<details>` block, collapsed when long. JSON
is `model.plan_to_json`. Pure: a Plan in, a string out.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from typing import Any

from gatewayctl.plan.cost import TOKEN_ASSUMPTION
from gatewayctl.plan.model import Action, Change, Detail, Layer, Plan, plan_to_json

SYMBOL: dict[Action, str] = {"create": "+", "update": "~", "delete": "-", "no-op": " "}
_COLOUR = {"+": "32", "~": "33", "-": "31"}
_HEADINGS: dict[Layer, str] = {
    "manifest": "Manifest changes (what the gateway will do differently)",
    "resource": "Resource changes (Kubernetes objects)",
}
COLLAPSE_AFTER_LINES = 15


def heading(plan: Plan, layer: Layer) -> str:
    if layer == "resource" and plan.target == "local":
        return "Resource changes (the local gateway's Envoy configuration)"
    return _HEADINGS[layer]


def show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def detail_symbol(d: Detail) -> str:
    if d.before is None and d.after is not None:
        return "+"
    if d.after is None and d.before is not None:
        return "-"
    return "~"


def detail_text(d: Detail, arrow: str = "->") -> str:
    if d.before is None and d.after is None:
        text = d.field
    elif d.before is None:
        text = f"{d.field}: {show(d.after)}"
    elif d.after is None:
        text = f"{d.field}: {show(d.before)}"
    else:
        text = f"{d.field}: {show(d.before)} {arrow} {show(d.after)}"
    return f"{text} ({d.note})" if d.note else text


def summary_line(plan: Plan, layer: Layer) -> str:
    c = plan.counts(layer)
    if layer == "manifest":
        return f"{c['create']} to add, {c['update']} to change, {c['delete']} to remove"
    unchanged = f", {c['no-op']} unchanged" if c["no-op"] else ""
    return (f"{c['create']} to create, {c['update']} to change, "
            f"{c['delete']} to delete{unchanged}")


def _has_resources(plan: Plan) -> bool:
    return bool(plan.layer("resource"))


# -- text -------------------------------------------------------------------------------------

def format_text(plan: Plan, *, colour: bool = False) -> str:
    def paint(text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if colour and code else text

    def mark(symbol: str) -> str:
        return paint(symbol, _COLOUR.get(symbol, ""))

    out = [paint(f'gatewayctl plan for gateway "{plan.gateway}" (namespace {plan.namespace}), '
                 f"against {plan.target}", "1"), ""]
    if not plan.has_changes:
        out.append(paint("No changes.", "1") + " The live gateway matches the manifests.")
    for layer in ("manifest", "resource"):
        pending = plan.pending(layer)
        if not pending:
            continue
        out += [paint(heading(plan, layer), "1") + ":", ""]
        for change in pending:
            out.append(f"  {mark(SYMBOL[change.action])} {change.address}")
            if change.affects:
                out.append(f"      routes: {_routes(change.affects)}")
            for warning in change.warnings:
                out.append(f"      {paint('warning:', '33')} {warning}")
            for d in change.details:
                out.append(f"      {mark(detail_symbol(d))} {detail_text(d)}")
                if d.diff:
                    out += [f"          {_paint_diff_line(line, paint)}"
                            for line in d.diff.rstrip("\n").splitlines()]
            if change.details or change.affects or change.warnings:
                out.append("")
        if out[-1]:
            out.append("")
    if plan.has_changes:
        out.append(f"Manifest: {summary_line(plan, 'manifest')}.")
        if _has_resources(plan):
            out.append(f"Resources: {summary_line(plan, 'resource')}.")
        if any(d.field == "cost per 1,000 requests" for c in plan.changes for d in c.details):
            out.append(f"Cost estimates assume {TOKEN_ASSUMPTION}.")
    for warning in plan.warnings:
        out.append(f"{paint('Warning:', '33')} {warning}")
    return "\n".join(out).rstrip("\n") + "\n"


def _paint_diff_line(line: str, paint: Callable[[str, str], str]) -> str:
    if line.startswith(("+++", "---")):
        return paint(line, "1")
    if line.startswith("+"):
        return paint(line, "32")
    if line.startswith("-"):
        return paint(line, "31")
    if line.startswith("@@"):
        return paint(line, "36")
    return line


def _routes(routes: tuple[str, ...], limit: int = 10) -> str:
    shown = ", ".join(routes[:limit])
    return shown + (f" and {len(routes) - limit} more" if len(routes) > limit else "")


# -- markdown ---------------------------------------------------------------------------------

def _cell(text: str) -> str:
    return html.escape(text, quote=False).replace("|", "&#124;").replace("\n", "<br>")


def _fence(text: str) -> str:
    longest, run = 0, 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def _diff_block(title: str, diff: str) -> list[str]:
    lines = diff.rstrip("\n").splitlines()
    fence = _fence(diff)
    opened = " open" if len(lines) <= COLLAPSE_AFTER_LINES else ""
    return [f"<details{opened}><summary>{_cell(title)} ({len(lines)} lines)</summary>", "",
            f"{fence}diff", *lines, fence, "", "</details>", ""]


def _table(changes: tuple[Change, ...]) -> list[str]:
    rows = ["| | Change | Details |", "|:-:|---|---|"]
    for c in changes:
        details = [detail_text(d, "→") for d in c.details]
        if c.affects:
            details.insert(0, f"routes: {_routes(c.affects)}")
        details += [f"⚠ {w}" for w in c.warnings]
        shown = "<br>".join(_cell(d) for d in details) or "&nbsp;"
        rows.append(f"| `{SYMBOL[c.action]}` | {c.kind} `{_cell(c.name)}` | {shown} |")
    return rows


def format_markdown(plan: Plan) -> str:
    out = [f"### gatewayctl plan: `{plan.gateway}` (namespace `{plan.namespace}`) "
           f"against `{plan.target}`", ""]
    if not plan.has_changes:
        out += ["**No changes.** The live gateway matches the manifests.", ""]
    else:
        parts = [f"**Manifest:** {summary_line(plan, 'manifest')}"]
        if _has_resources(plan):
            parts.append(f"**Resources:** {summary_line(plan, 'resource')}")
        out += [" · ".join(parts), ""]
    for layer in ("manifest", "resource"):
        pending = plan.pending(layer)
        if not pending:
            continue
        out += [f"#### {heading(plan, layer)}", ""]
        out += _table(pending)
        out.append("")
        for c in pending:
            for d in c.details:
                if d.diff:
                    out += _diff_block(f"{SYMBOL[c.action]} {c.address}: {d.field}", d.diff)
    notes = []
    if any(d.field == "cost per 1,000 requests" for c in plan.changes for d in c.details):
        notes.append(f"Cost estimates assume {TOKEN_ASSUMPTION}.")
    notes += [f"⚠ {_cell(w)}" for w in plan.warnings]
    provenance = dict(plan.provenance)
    footer = f"Live state fingerprint `{plan.fingerprint[:19]}`"
    if provenance.get("commit"):
        footer += f" · commit `{provenance['commit'][:12]}`"
    if provenance.get("pipeline_url"):
        footer += f" · [pipeline]({provenance['pipeline_url']})"
    out += [*notes, "" if notes else "", f"<sub>{footer}</sub>"]
    return "\n".join(line for i, line in enumerate(out)
                     if line or (i and out[i - 1])).rstrip("\n") + "\n"


# -- dispatch ---------------------------------------------------------------------------------

def format_plan(plan: Plan, output: str, *, colour: bool = False) -> str:
    if output == "json":
        return plan_to_json(plan)
    if output == "markdown":
        return format_markdown(plan)
    return format_text(plan, colour=colour)
