"""A route's output deny patterns as one automaton: the patterns of all its policies (the
Gateway's defaultPolicies first) are compiled together (output_dfa.py), as the renderer
compiles them; each pattern alone passed check_patterns, but together they may exceed the
automaton's bound (GW405 on the route)."""

from __future__ import annotations

from gatewayctl.diagnostics import Diagnostic
from gatewayctl.manifests.manifest_set import ManifestSet


def check_output_automata(ms: ManifestSet) -> list[Diagnostic]:
    from gatewayctl.manifests.output_dfa import Unsupported, compile_patterns, compile_problem

    defaults = ms.gateway.spec.defaultPolicies if ms.gateway else []
    verdicts: dict[tuple[str, ...], Unsupported | None] = {}
    diags: list[Diagnostic] = []
    for route in ms.routes.values():
        patterns: list[str] = []
        for name in dict.fromkeys([*defaults, *route.spec.policies]):
            policy = ms.policies.get(name)
            if policy is not None and policy.spec.outputGuardrails is not None:
                patterns.extend(policy.spec.outputGuardrails.denyPatterns)
        key = tuple(dict.fromkeys(patterns))
        if len(key) < 2 or any(compile_problem(p) is not None for p in key):
            continue  # one pattern, or one that check_patterns reports already
        if key not in verdicts:
            try:
                compile_patterns(key)
                verdicts[key] = None
            except Unsupported as exc:
                verdicts[key] = exc
        problem = verdicts[key]
        if problem is not None:
            diags.append(route.error(
                "GW405",
                "the output deny patterns of this route's policies, together: "
                + problem.message.split(": ", 1)[-1],
                "spec", "policies",
                hint="each compiles alone; " + problem.hint,
            ))
    return diags
