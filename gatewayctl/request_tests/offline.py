"""Running cases offline: each request through explain, on the root's own IR."""

from __future__ import annotations

from gatewayctl.explain import ExplainRequest, Explanation, explain_request
from gatewayctl.ir import GatewayIR
from gatewayctl.request_tests.cases import Case, Observed, Result, check, provider_texts


def observe(exp: Explanation) -> Observed:
    forwarded = [b.forwarded for b in exp.branches if b.forwarded is not None]
    texts: list[str] = []
    for body in forwarded:
        texts.extend(provider_texts(body))
    return Observed(
        status=exp.status,
        route=exp.route,
        models=exp.models if exp.outcome.forwarded else (),
        prompt_versions=exp.prompt_versions,
        provider_texts=tuple(texts),
        note=exp.outcome.reason,
        other_statuses=tuple(sorted({b.outcome.status for b in exp.branches} - {exp.status})),
    )


def run_offline(ir: GatewayIR, cases: list[Case]) -> list[Result]:
    results = []
    for case in cases:
        exp = explain_request(ir, ExplainRequest(case.body, case.path, case.headers,
                                                 case.consumer, case.jwt_issuer, case.used))
        observed = observe(exp)
        results.append(Result(case, observed, check(case.expect, observed)))
    return results
