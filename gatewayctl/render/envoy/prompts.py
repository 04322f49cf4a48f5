"""Prompt injection: the active versions of a route's prompt as data for the Lua filter.

Lua picks a version by weight per request, renders its parts with `prompt_variables` from
the body (declared defaults for missing optional ones; 400 for a missing required one),
removes `prompt_variables`, prepends the text as the system message of a chat request (or
as a prefix of a completions prompt) and answers with `x-gateway-prompt-version`.
"""

from __future__ import annotations

from typing import Any

from gatewayctl.ir import PromptIR


def prompt_data(prompt: PromptIR) -> dict[str, Any]:
    return {
        "name": prompt.name,
        "versions": [
            {
                "version": v.version,
                "weight": v.weight,
                "required": list(v.required),
                "parts": [
                    {"text": p.text}
                    if p.variable is None
                    else {"var": p.variable, "default": p.default}
                    for p in v.parts
                ],
            }
            for v in prompt.active
            if v.weight > 0
        ],
    }
