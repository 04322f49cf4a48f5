"""`gatewayctl test` results as text (each failing case named, with its file:line) and JUnit.

Failure messages quote the request's text (what reached the provider, the gateway's reason):
anything shaped like a credential is masked (gatewayctl.redaction).
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

from gatewayctl.output import paint
from gatewayctl.redaction import redact
from gatewayctl.request_tests.cases import Result


def _problems(result: Result) -> list[str]:
    return [result.error] if result.error is not None else list(result.failures)


def format_text(results: Sequence[Result], *, mode: str, colour: bool = False) -> str:
    lines: list[str] = []
    for r in results:
        if r.passed:
            lines.append(f"{paint('PASS', 'green', colour)}  {r.case.title}")
            continue
        lines.append(f"{paint('FAIL', 'red', colour)}  {r.case.title}  ({r.case.where})")
        lines.extend(f"      {p}" for p in _problems(r))
    failed = sum(1 for r in results if not r.passed)
    passed = len(results) - failed
    lines.append(f"{passed} passed, {failed} failed ({mode})")
    return redact("\n".join(lines)) + "\n"


def format_junit(results: Sequence[Result], *, mode: str, root: str) -> str:
    failed = sum(1 for r in results if not r.passed)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<testsuites name="gatewayctl test" tests="{len(results)}" failures="{failed}">\n',
        f'  <testsuite name={quoteattr(f"{root} ({mode})")} tests="{len(results)}" '
        f'failures="{failed}">\n',
    ]
    for r in results:
        head = (f"    <testcase classname={quoteattr(r.case.test)} "
                f"name={quoteattr(r.case.name)} file={quoteattr(r.case.where)}")
        if r.passed:
            out.append(head + "/>\n")
            continue
        problems = _problems(r)
        out.append(head + ">\n")
        out.append(f"      <failure message={quoteattr(problems[0])}>"
                   f"{escape(chr(10).join(problems))}</failure>\n")
        out.append("    </testcase>\n")
    out.append("  </testsuite>\n</testsuites>\n")
    return redact("".join(out))
