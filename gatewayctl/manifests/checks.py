"""Checks across manifests: references, uniqueness, weights, rollouts, prompts, patterns.

Each check returns diagnostics; none stops the others, so one run reports every problem.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from gatewayctl.diagnostics import Diagnostic, did_you_mean, error, warning
from gatewayctl.manifests.documents import Manifest
from gatewayctl.manifests.manifest_set import ManifestSet
from gatewayctl.manifests.output_checks import check_output_automata
from gatewayctl.manifests.prompts import TemplateProblem, parse_template, used_variables
from gatewayctl.manifests.yamlsource import SourceDocument, dotted

# Where each kind names another object: (owner kind, field path, target kind); "*" stands for
# every item of a list. Checked on the documents' own values, so that a document that failed
# validation still has its references checked.
REFERENCES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("Gateway", ("spec", "defaultPolicies", "*"), "Policy"),
    ("Model", ("spec", "provider"), "Provider"),
    ("Route", ("spec", "backends", "*", "model"), "Model"),
    ("Route", ("spec", "fallback", "*"), "Model"),
    ("Route", ("spec", "policies", "*"), "Policy"),
    ("Route", ("spec", "prompt", "name"), "Prompt"),
    ("Policy", ("spec", "allow", "consumers", "*"), "Consumer"),
    ("Rollout", ("spec", "route"), "Route"),
    ("Rollout", ("spec", "stable"), "Model"),
    ("Rollout", ("spec", "canary"), "Model"),
    ("RequestTest", ("spec", "cases", "*", "consumer"), "Consumer"),
    ("RequestTest", ("spec", "cases", "*", "expect", "route"), "Route"),
    ("RequestTest", ("spec", "cases", "*", "expect", "models", "*"), "Model"),
)


def _ref(
    diags: list[Diagnostic],
    ms: ManifestSet,
    where: tuple[SourceDocument, tuple[str | int, ...], str],
    target_kind: str,
    name: str,
    known: Mapping[str, object],
) -> None:
    if name in known:
        return
    declared = ms.declared.get(target_kind, frozenset())
    if name in declared:
        return  # the target exists but is invalid: its own diagnostics say why
    names = sorted(set(known) | declared)
    guess = did_you_mean(name, names)
    hint = (
        f'did you mean "{guess}"?'
        if guess
        else (
            f"defined {target_kind} names: {', '.join(sorted(names))}"
            if names
            else f"there is no {target_kind} in this root yet; add one"
        )
    )
    doc, fpath, resource = where
    diags.append(
        error(
            "GW203",
            f'{target_kind} "{name}" does not exist',
            location=doc.location(fpath),
            field=dotted(fpath),
            resource=resource,
            hint=hint,
        )
    )


def _values_at(
    data: Any, pattern: tuple[str, ...], at: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    if not pattern:
        yield at, data
    elif pattern[0] == "*":
        if isinstance(data, list):
            for i, item in enumerate(data):
                yield from _values_at(item, pattern[1:], (*at, i))
    elif isinstance(data, dict) and pattern[0] in data:
        yield from _values_at(data[pattern[0]], pattern[1:], (*at, pattern[0]))


def _has_error(field: str, bad: frozenset[str]) -> bool:
    return any(
        not b or field == b or field.startswith((b + ".", b + "[")) for b in bad
    )


def check_references(ms: ManifestSet) -> list[Diagnostic]:
    diags: list[Diagnostic] = []
    known: dict[str, Mapping[str, object]] = {
        "Policy": ms.policies,
        "Provider": ms.providers,
        "Model": ms.models,
        "Prompt": ms.prompts,
        "Consumer": ms.consumers,
        "Route": ms.routes,
    }
    owners = [(m.doc, m.kind, m.ref, frozenset[str]()) for m in ms.all()]
    owners += [(r.doc, r.kind, r.resource, r.bad_fields) for r in ms.rejected]
    for doc, kind, resource, bad in owners:
        for owner_kind, pattern, target in REFERENCES:
            if owner_kind != kind:
                continue
            for fpath, value in _values_at(doc.data, pattern):
                if isinstance(value, str) and not _has_error(dotted(fpath), bad):
                    _ref(diags, ms, (doc, fpath, resource), target, value, known[target])
    teams = {c.spec.team for c in ms.consumers.values() if c.spec.team}
    for policy in ms.policies.values():
        allow = policy.spec.allow
        if not allow:
            continue
        for i, team in enumerate(allow.teams):
            if team not in teams:
                guess = did_you_mean(team, teams)
                diags.append(
                    policy.warning(
                        "GW211",
                        f'no Consumer belongs to team "{team}"',
                        "spec", "allow", "teams", i,
                        hint=f'did you mean "{guess}"?'
                        if guess
                        else "set spec.team on the consumers of that team",
                    )
                )
    return diags


def check_routes(ms: ManifestSet) -> list[Diagnostic]:
    diags: list[Diagnostic] = []
    public: dict[str, Manifest[Any]] = {}
    default_policies = ms.gateway.spec.defaultPolicies if ms.gateway else []
    for route in ms.routes.values():
        name = route.spec.model or route.name
        fpath = ("spec", "model") if route.spec.model else ("metadata", "name")
        if name in public:
            diags.append(
                route.error(
                    "GW202",
                    f'public model name "{name}" is already served by Route/{public[name].name}',
                    *fpath,
                    hint="each public model name belongs to exactly one route",
                )
            )
        else:
            public[name] = route
        total = sum(b.weight for b in route.spec.backends)
        if total != 100:
            diags.append(
                route.error(
                    "GW204",
                    f"backend weights sum to {total}, not 100",
                    "spec", "backends",
                    hint="use integer weights that add up to exactly 100",
                )
            )
        seen: dict[str, int] = {}
        for i, b in enumerate(route.spec.backends):
            if b.model in seen:
                diags.append(
                    route.error(
                        "GW212",
                        f'model "{b.model}" is listed twice in backends',
                        "spec", "backends", i, "model",
                        hint=f"merge it with backends[{seen[b.model]}]",
                    )
                )
            seen.setdefault(b.model, i)
        for i, fb in enumerate(route.spec.fallback):
            if fb in seen:
                diags.append(
                    route.warning(
                        "GW214",
                        f'fallback "{fb}" is also a backend of this route',
                        "spec", "fallback", i,
                        hint="a fallback should be a different model, ideally another provider",
                    )
                )
        effective = [*default_policies, *route.spec.policies]
        pols = [ms.policies[p] for p in effective if p in ms.policies]
        has_keys = any(p.spec.auth and (p.spec.auth.apiKeys or p.spec.auth.jwt) for p in pols)
        for pol in pols:
            needs = []
            if pol.spec.allow and (pol.spec.allow.consumers or pol.spec.allow.teams):
                needs.append("allow")
            if pol.spec.rateLimit and pol.spec.rateLimit.by == "consumer":
                needs.append("rateLimit.by: consumer")
            if pol.spec.tokenLimit and pol.spec.tokenLimit.by == "consumer":
                needs.append("tokenLimit.by: consumer")
            if needs and not has_keys:
                diags.append(
                    error(
                        "GW213",
                        f"policy {pol.name} uses {', '.join(needs)}, but no policy "
                        "on this route identifies consumers",
                        location=route.location("spec", "policies")
                        if route.spec.policies
                        else route.location("spec"),
                        field="spec.policies",
                        resource=route.ref,
                        hint="add a policy with auth: {apiKeys: true} or auth.jwt to the route "
                        "or to the Gateway's defaultPolicies",
                    )
                )
        for b in route.spec.backends:
            model = ms.models.get(b.model)
            if model and model.spec.deprecated is not False:
                since = "" if model.spec.deprecated is True else f" (as of {model.spec.deprecated})"
                idx = next(i for i, x in enumerate(route.spec.backends) if x.model == b.model)
                diags.append(
                    route.warning(
                        "GW501",
                        f'model "{b.model}" is deprecated{since}',
                        "spec", "backends", idx, "model",
                        hint="move this route to a current model, for example with a Rollout",
                    )
                )
    return diags


def check_rollouts(ms: ManifestSet) -> list[Diagnostic]:
    diags: list[Diagnostic] = []
    by_route: dict[str, Manifest[Any]] = {}
    for ro in ms.rollouts.values():
        spec = ro.spec
        if spec.step > len(spec.steps):
            diags.append(
                ro.error(
                    "GW205",
                    f"step {spec.step} is out of range: there are {len(spec.steps)} steps",
                    "spec", "step",
                    hint=f"use 0 (not started) to {len(spec.steps)}",
                )
            )
        if spec.stable == spec.canary:
            diags.append(
                ro.error(
                    "GW209",
                    "stable and canary are the same model",
                    "spec", "canary",
                    hint="the canary is the new model version",
                )
            )
        weights = [s.weight for s in spec.steps]
        if any(b <= a for a, b in zip(weights, weights[1:], strict=False)):
            diags.append(
                ro.error(
                    "GW215",
                    f"step weights must increase: {weights}",
                    "spec", "steps",
                    hint="list the canary weights in increasing order",
                )
            )
        if weights and weights[-1] != 100:
            diags.append(
                warning(  # at the step, about its weight
                    "GW216",
                    f"the last step gives the canary {weights[-1]}%, not 100%",
                    location=ro.location("spec", "steps", len(weights) - 1),
                    field=f"spec.steps[{len(weights) - 1}].weight",
                    resource=ro.ref,
                    hint="end with {weight: 100} so that completing the rollout replaces "
                    "the stable model",
                )
            )
        route = ms.routes.get(spec.route)
        if route is None:
            continue
        if spec.state in ("progressing", "paused") and spec.route in by_route:
            diags.append(
                ro.error(
                    "GW210",
                    f"route {spec.route} already has an active rollout: "
                    f"{by_route[spec.route].name}",
                    "spec", "route",
                    hint="finish or abort the other rollout first",
                )
            )
        if spec.state in ("progressing", "paused"):
            by_route.setdefault(spec.route, ro)
        models = [b.model for b in route.spec.backends]
        if spec.canary in models:
            i = models.index(spec.canary)
            diags.append(
                route.error(
                    "GW206",
                    f'route {route.name} lists the canary "{spec.canary}" itself, '
                    f"but Rollout/{ro.name} sets its weight",
                    "spec", "backends", i, "model",
                    hint="list only the stable model in the route; the rollout adds the canary",
                )
            )
        if spec.stable not in models:
            diags.append(
                ro.error(
                    "GW209",
                    f'stable model "{spec.stable}" is not a backend of route {route.name}',
                    "spec", "stable",
                    hint=f"backends of {route.name}: {', '.join(models)}",
                )
            )
    return diags


def check_prompts(ms: ManifestSet) -> list[Diagnostic]:
    diags: list[Diagnostic] = []
    for prompt in ms.prompts.values():
        versions: dict[int, int] = {}
        for i, ver in enumerate(prompt.spec.versions):
            if ver.version in versions:
                diags.append(
                    prompt.error(
                        "GW208",
                        f"version {ver.version} is defined twice",
                        "spec", "versions", i, "version",
                        hint="add a new version number instead of reusing one",
                    )
                )
                continue
            versions[ver.version] = i
            loc_path = ("spec", "versions", i, "template")
            try:
                parts = parse_template(ver.template)
            except TemplateProblem as problem:
                diags.append(
                    prompt.error(problem.code, problem.message, *loc_path, hint=problem.hint)
                )
                continue
            used = used_variables(parts)
            for name in used:
                if name not in ver.variables:
                    guess = did_you_mean(name, ver.variables)
                    diags.append(
                        prompt.error(
                            "GW302",
                            f'template uses variable "{name}", which is not declared',
                            *loc_path,
                            hint=f'did you mean "{guess}"?'
                            if guess
                            else f"declare it under spec.versions[{i}].variables",
                        )
                    )
            for name in ver.variables:
                if name not in used:
                    diags.append(
                        prompt.warning(
                            "GW304",
                            f'variable "{name}" is declared but not used',
                            "spec", "versions", i, "variables", name,
                            hint="remove it, or use it in the template",
                            key=True,
                        )
                    )
        total = sum(a.weight for a in prompt.spec.active)
        if total != 100:
            diags.append(
                prompt.error(
                    "GW204",
                    f"active version weights sum to {total}, not 100",
                    "spec", "active",
                    hint="use integer weights that add up to exactly 100",
                )
            )
        seen_active: set[int] = set()
        for i, act in enumerate(prompt.spec.active):
            if act.version not in versions:
                diags.append(
                    prompt.error(
                        "GW208",
                        f"active version {act.version} is not defined",
                        "spec", "active", i, "version",
                        hint=f"defined versions: {', '.join(map(str, sorted(versions)))}",
                    )
                )
            if act.version in seen_active:
                diags.append(
                    prompt.error(
                        "GW208",
                        f"version {act.version} is listed twice in active",
                        "spec", "active", i, "version",
                        hint="list each active version once with its weight",
                    )
                )
            seen_active.add(act.version)
    return diags


def check_patterns(ms: ManifestSet) -> list[Diagnostic]:
    """Each deny pattern compiled as Envoy will (deny_patterns.py): one Envoy rejects would
    make it reject the whole listener."""
    from gatewayctl.manifests.deny_patterns import envoy_problem
    from gatewayctl.manifests.output_dfa import compile_problem

    diags: list[Diagnostic] = []
    for policy in ms.policies.values():
        # Output patterns are RE2 (the same rules), and compiled into the body filter's
        # automaton too (output_dfa.py): what it cannot compile is refused (GW405).
        for section, guard in (("guardrails", policy.spec.guardrails),
                               ("outputGuardrails", policy.spec.outputGuardrails)):
            if not guard:
                continue
            for i, pattern in enumerate(guard.denyPatterns):
                problem = envoy_problem(pattern)
                if problem is None:
                    unsupported = compile_problem(pattern) if section != "guardrails" else None
                    if unsupported is not None:
                        diags.append(policy.error("GW405", unsupported.message,
                                                  "spec", section, "denyPatterns", i,
                                                  hint=unsupported.hint))
                    continue
                diags.append(
                    policy.error(
                        "GW401" if problem.program_size is None else "GW403",
                        problem.message,
                        "spec", section, "denyPatterns", i,
                        hint=problem.hint,
                    )
                )
    return diags


def check_request_tests(ms: ManifestSet) -> list[Diagnostic]:
    """Case names are what a failure report names: unique within a RequestTest."""
    diags: list[Diagnostic] = []
    for test in ms.request_tests.values():
        seen: dict[str, int] = {}
        for i, case in enumerate(test.spec.cases):
            if case.name in seen:
                diags.append(
                    test.error(
                        "GW217",
                        f'case name "{case.name}" is used twice in this RequestTest',
                        "spec", "cases", i, "name",
                        hint=f"first used by spec.cases[{seen[case.name]}]; give each case "
                        "its own name, so that a failure names one case",
                    )
                )
            seen.setdefault(case.name, i)
    return diags


# Policy fields this version validates and plans but whose data-plane part is not built yet
# (none now: the response cache is render/envoy/cache.py, the output guardrails
# render/envoy/outguard.py); a field added to the format before the data plane goes here.
UNENFORCED: tuple[str, ...] = ()


def check_unrendered(ms: ManifestSet) -> list[Diagnostic]:
    """Fields listed in UNENFORCED: an error, so that nobody relies on a setting that does
    nothing."""
    diags: list[Diagnostic] = []
    for policy in ms.policies.values():
        for section in UNENFORCED:
            if getattr(policy.spec, section) is None:
                continue
            diags.append(
                policy.error(
                    "GW404",
                    f"{section} is not enforced by this version of the gateway yet",
                    "spec", section,
                    hint="remove the field for now; it is validated and planned, but the "
                    "rendered Envoy would not act on it (docs/diagnostics.md#gw404)",
                )
            )
    return diags


def check_budgets(ms: ManifestSet) -> list[Diagnostic]:
    """An enforced budget is counted in the shared Redis of global limits: per replica, each
    Envoy would only see its own share of a consumer's spending."""
    gateway = ms.gateway
    if gateway is None or gateway.spec.limits.scope == "global":
        return []
    diags: list[Diagnostic] = []
    for consumer in ms.consumers.values():
        budget = consumer.spec.budget
        if budget is None or not budget.enforce:
            continue
        diags.append(
            consumer.error(
                "GW218",
                "an enforced budget needs global limits, but Gateway/"
                f"{gateway.name} has limits.scope {gateway.spec.limits.scope}",
                "spec", "budget", "enforce",
                hint="set the Gateway's spec.limits to {scope: global, redis: {address: "
                "host:port}}, or remove enforce (the budget then only alerts)",
            )
        )
    return diags


def check_set(ms: ManifestSet) -> list[Diagnostic]:
    return [
        *check_unrendered(ms),
        *check_request_tests(ms),
        *check_budgets(ms),
        *check_references(ms),
        *check_routes(ms),
        *check_rollouts(ms),
        *check_prompts(ms),
        *check_patterns(ms),
        *check_output_automata(ms),
    ]
