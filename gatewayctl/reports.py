"""Validation reports for CI: GitLab Code Quality JSON and JUnit XML."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from gatewayctl.diagnostics import Diagnostic, Severity, shown_path
from gatewayctl.errors import UsageError
from gatewayctl.manifests.manifest_set import ManifestSet

REPORT_FORMATS = ("codequality", "junit")


def parse_report_option(value: str) -> tuple[str, Path]:
    fmt, sep, path = value.partition("=")
    if not sep or fmt not in REPORT_FORMATS or not path:
        raise UsageError(
            f'invalid --report "{value}"',
            hint="use --report codequality=FILE or --report junit=FILE",
        )
    return fmt, Path(path)


def _cq_path(diag: Diagnostic, root: str) -> str:
    return root if diag.location is None else shown_path(root, diag.location.path)


def codequality(diags: Sequence[Diagnostic], root: str) -> str:
    """GitLab Code Quality report (a CodeClimate subset) as JSON text."""
    items = []
    for d in diags:
        items.append(
            {
                "description": f"{d.code}: {d.message()}"
                + (f" (hint: {d.hint})" if d.hint else ""),
                "check_name": d.code,
                # the path (root included) makes it unique when one pipeline validates
                # several roots: GitLab merges findings with equal fingerprints
                "fingerprint": hashlib.sha256(
                    f"{_cq_path(d, root)}|{d.fingerprint()}".encode()).hexdigest()[:32],
                "severity": "major" if d.severity is Severity.ERROR else "minor",
                "location": {
                    "path": _cq_path(d, root),
                    "lines": {"begin": d.location.line if d.location else 1},
                },
            }
        )
    return json.dumps(items, indent=2, sort_keys=True) + "\n"


def junit(diags: Sequence[Diagnostic], mset: ManifestSet) -> str:
    """One test case per manifest (plus one per file-level problem), failed by its errors."""
    by_resource: dict[str, list[Diagnostic]] = {}
    loose: list[Diagnostic] = []
    for d in diags:
        (by_resource.setdefault(d.resource, []) if d.resource else loose).append(d)
    cases: list[str] = []
    names = sorted({m.ref for m in mset.all()} | set(by_resource))
    for ref in names:
        problems = by_resource.get(ref, [])
        cases.append(_case(ref, problems, mset.root))
    for d in loose:
        cases.append(_case(f"{d.location.path if d.location else mset.root}: {d.code}", [d],
                           mset.root))
    failures = sum(1 for c in cases if "<failure" in c)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<testsuites name="gatewayctl validate" tests="{len(cases)}" failures="{failures}">\n'
        f'  <testsuite name={quoteattr(mset.root)} tests="{len(cases)}" failures="{failures}">\n'
        + "".join(cases)
        + "  </testsuite>\n</testsuites>\n"
    )


def _case(name: str, problems: list[Diagnostic], root: str) -> str:
    errors = [p for p in problems if p.severity is Severity.ERROR]
    head = f'    <testcase classname="manifests" name={quoteattr(name)}'
    if not errors:
        out = [p.format(root) for p in problems]
        if out:
            return (
                head + ">\n      <system-out>" + escape("\n".join(out)) + "</system-out>\n"
                "    </testcase>\n"
            )
        return head + "/>\n"
    text = "\n".join(p.format(root) for p in problems)
    return (
        head + ">\n"
        f"      <failure message={quoteattr(errors[0].format(root).splitlines()[0])} "
        f'type="{errors[0].code}">{escape(text)}</failure>\n'
        "    </testcase>\n"
    )
