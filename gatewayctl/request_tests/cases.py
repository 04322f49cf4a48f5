"""RequestTest cases and how an observed outcome is held against their expectations.

A case is a request (body, path, headers, the consumer whose key it carries) and what must
hold. Offline, the observation comes from explain; live, from the local gateway's answer, its
access log and what the mock provider received. The same `check` judges both:

- `status`, `route`: equal (the route is the Route's metadata.name);
- `models`: every model that may answer is listed (offline: each backend the request may
  reach; live: the model that answered);
- `promptVersion`: the request gets exactly this version (offline: no other active version
  may be picked for it, so an A/B split makes the case fail as not deterministic);
- `redacted`: none of the strings reaches the provider (in any text of the forwarded body).

Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gatewayctl.manifests.kinds import Expect
from gatewayctl.manifests.manifest_set import ManifestSet


@dataclass(frozen=True)
class Case:
    test: str  # the RequestTest's name
    name: str
    where: str  # file:line of the case
    path: str
    consumer: str | None
    headers: tuple[tuple[str, str], ...]
    body: bytes
    expect: Expect
    jwt_issuer: str | None = None  # the consumer comes with a JWT of this issuer
    used: tuple[tuple[str, float], ...] = ()  # what the limit buckets hold (explain --used)

    @property
    def title(self) -> str:
        return f"{self.test}: {self.name}"


@dataclass(frozen=True)
class Observed:
    """What happened to a case's request, as far as it is known."""

    status: int
    route: str | None
    models: tuple[str, ...]  # the models that may answer (offline) / answered (live)
    prompt_versions: tuple[int, ...]  # the versions it may get (offline) / got (live)
    provider_texts: tuple[str, ...] | None  # what reached the provider; None: not known
    note: str = ""  # the reason, shown with a failure
    other_statuses: tuple[int, ...] = ()  # offline: what other prompt versions would get


@dataclass(frozen=True)
class Result:
    case: Case
    observed: Observed | None
    failures: tuple[str, ...]
    error: str | None = None  # the case could not be run

    @property
    def passed(self) -> bool:
        return not self.failures and self.error is None


def request_body(request: dict[str, Any]) -> bytes:
    """The JSON body a case sends: compact, in the manifest's key order, UTF-8."""
    return json.dumps(request, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def collect_cases(mset: ManifestSet) -> list[Case]:
    cases: list[Case] = []
    for test in mset.request_tests.values():
        for i, case in enumerate(test.spec.cases):
            loc = test.location("spec", "cases", i, "name")
            cases.append(Case(
                test=test.name,
                name=case.name,
                where=f"{loc.path}:{loc.line}",
                path=case.path,
                consumer=case.consumer,
                jwt_issuer=case.jwtIssuer,
                used=tuple(sorted((k, float(v)) for k, v in
                                  (case.used.model_dump() if case.used else {}).items()
                                  if v is not None)),
                headers=tuple((k.lower(), v) for k, v in case.headers.items()),
                body=request_body(case.request),
                expect=case.expect,
            ))
    return cases


def _texts(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, list):
        for item in value:
            _texts(item, out)
    elif isinstance(value, dict):
        for key, item in value.items():
            out.append(key)
            _texts(item, out)


def provider_texts(body: Any, raw: str | None = None) -> tuple[str, ...]:
    """Every string of a forwarded body (keys included), plus its raw text if known."""
    out: list[str] = []
    _texts(body, out)
    if raw is not None:
        out.append(raw)
    return tuple(out)


def _list(values: Iterable[object]) -> str:
    return ", ".join(str(v) for v in values) or "none"


def check(expect: Expect, observed: Observed) -> tuple[str, ...]:
    """The expectations the observation breaks, each as one sentence."""
    failures: list[str] = []
    note = f" ({observed.note})" if observed.note else ""
    if expect.status is not None and observed.status != expect.status:
        failures.append(f"status: expected {expect.status}, got {observed.status}{note}")
    elif expect.status is not None and observed.other_statuses:
        failures.append(f"status: {_list(observed.other_statuses)} with another prompt version "
                        f"(the version is picked by weight: the case is not deterministic)")
    if expect.route is not None and observed.route != expect.route:
        failures.append(f"route: expected {expect.route}, got {observed.route or 'none'}")
    if expect.models is not None:
        extra = [m for m in observed.models if m not in expect.models]
        if not observed.models:
            failures.append(f"models: expected one of {_list(expect.models)} to answer, but "
                            f"no model answers (status {observed.status})")
        elif extra:
            failures.append(f"models: expected only {_list(expect.models)}, got "
                            f"{_list(observed.models)}")
    if expect.promptVersion is not None:
        versions = set(observed.prompt_versions)
        if versions != {expect.promptVersion}:
            shown = _list(sorted(versions))
            failures.append(f"promptVersion: expected {expect.promptVersion}, got {shown}"
                            + (" (the version is picked by weight: the case is not "
                               "deterministic)" if len(versions) > 1 else ""))
    if expect.redacted:
        if observed.provider_texts is None:
            failures.append("redacted: cannot tell what reached the provider (it is not the "
                            "mock provider)")
        else:
            leaked = [s for s in expect.redacted
                      if any(s in text for text in observed.provider_texts)]
            if leaked:
                failures.append("redacted: reached the provider: "
                                + ", ".join(repr(s) for s in leaked))
    return tuple(failures)
