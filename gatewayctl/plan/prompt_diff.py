"""Prompt changes: versions activated or deactivated, with a unified diff of the template.

A prompt reaches the IR only through the routes bound to it, so prompts are gathered from the
routes; a prompt no route uses is not live. Pure functions over the IR.
"""

from __future__ import annotations

from typing import Any

from gatewayctl.ir import GatewayIR, PromptIR, PromptVersionIR
from gatewayctl.plan.model import Change, Detail
from gatewayctl.plan.text_diff import unified_diff


def prompts_of(ir: GatewayIR | None) -> dict[str, tuple[PromptIR, list[str]]]:
    """Each live prompt with the routes bound to it."""
    out: dict[str, tuple[PromptIR, list[str]]] = {}
    for route in ir.routes if ir else ():
        if route.prompt is not None:
            entry = out.setdefault(route.prompt.name, (route.prompt, []))
            entry[1].append(route.name)
    return out


def prompt_view(prompt: PromptIR) -> dict[str, Any]:
    return {"active": [{"version": v.version, "weight": v.weight, "template": v.template,
                        "required": list(v.required), "variables": list(v.variables)}
                       for v in prompt.active]}


def _primary(prompt: PromptIR) -> PromptVersionIR | None:
    """The version most requests see: highest weight, then the newest."""
    if not prompt.active:
        return None
    return max(prompt.active, key=lambda v: (v.weight, v.version))


def _texts(prompt: PromptIR) -> dict[int, str]:
    texts = dict(prompt.texts)
    texts.update({v.version: v.template for v in prompt.active})
    return texts


def _share(version: PromptVersionIR | None) -> str | None:
    return None if version is None else f"{version.weight}%"


def _variable_details(before: PromptVersionIR, after: PromptVersionIR) -> list[Detail]:
    """Variables declared and required, per active version: a newly required one makes
    requests without it fail with 400."""
    out: list[Detail] = []
    field = f"version {after.version} required variables"
    if before.required != after.required:
        now = sorted(set(after.required) - set(before.required))
        no_longer = sorted(set(before.required) - set(after.required))
        notes = ([f"requests without prompt_variables.{', '.join(now)} now get 400"]
                 if now else []) + ([f"{', '.join(no_longer)} no longer required"]
                                    if no_longer else [])
        out.append(Detail(field, ", ".join(before.required) or None,
                          ", ".join(after.required) or None, "; ".join(notes)))
    if before.variables != after.variables:
        out.append(Detail(f"version {after.version} variables",
                          ", ".join(before.variables) or None,
                          ", ".join(after.variables) or None))
    return out


def compare_prompt(before: PromptIR, after: PromptIR) -> tuple[Detail, ...]:
    old = {v.version: v for v in before.active}
    new = {v.version: v for v in after.active}
    base = _primary(before)
    old_texts, new_texts = _texts(before), _texts(after)
    out: list[Detail] = []
    for number in sorted(set(old) | set(new)):
        b, a = old.get(number), new.get(number)
        if b is not None and a is not None and b.weight == a.weight:
            continue
        if b is None and a is not None:
            diff = ""
            if base is not None and base.version != number:
                diff = unified_diff(base.template, a.template, f"version {base.version}",
                                    f"version {number}")
            out.append(Detail(f"version {number}", None, _share(a), "activated", diff))
        elif a is None:
            out.append(Detail(f"version {number}", _share(b), None, "deactivated"))
        else:
            out.append(Detail(f"version {number}", _share(b), _share(a), "weight changed"))
    for number in sorted(set(old) & set(new)):
        out.extend(_variable_details(old[number], new[number]))
    for number in sorted(set(old_texts) & set(new_texts)):
        if old_texts[number] != new_texts[number]:
            out.append(Detail(
                f"version {number} text", None, None,
                "edited in place: an existing version's text changed; add a new version "
                "instead so the change can be rolled out and rolled back",
                unified_diff(old_texts[number], new_texts[number], f"version {number} (live)",
                             f"version {number} (new)")))
    return tuple(out)


def diff_prompts(before: GatewayIR | None, after: GatewayIR | None) -> list[Change]:
    old, new = prompts_of(before), prompts_of(after)
    changes: list[Change] = []
    for name in sorted(set(old) | set(new)):
        b, a = old.get(name), new.get(name)
        if b is None and a is not None:
            prompt, routes = a
            details = tuple(
                Detail(f"version {v.version}", None, _share(v), "activated",
                       unified_diff("", v.template, "/dev/null", f"version {v.version}"))
                for v in prompt.active)
            changes.append(Change("manifest", "Prompt", name, "create", details, None,
                                  prompt_view(prompt), tuple(sorted(routes))))
        elif a is None and b is not None:
            prompt, routes = b
            details = tuple(Detail(f"version {v.version}", _share(v), None, "deactivated")
                            for v in prompt.active)
            changes.append(Change("manifest", "Prompt", name, "delete", details,
                                  prompt_view(prompt), None, tuple(sorted(routes))))
        elif a is not None and b is not None and a[0] != b[0]:
            details = compare_prompt(b[0], a[0])
            if details:
                changes.append(Change("manifest", "Prompt", name, "update", details,
                                      prompt_view(b[0]), prompt_view(a[0]),
                                      tuple(sorted(a[1]))))
    return changes
