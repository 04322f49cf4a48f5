"""`gatewayctl validate`: every problem of a manifest root in one pass."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from gatewayctl.atomic import write_output
from gatewayctl.diagnostics import Diagnostic, Diagnostics, count
from gatewayctl.errors import EXIT_ERROR, EXIT_OK, UsageError
from gatewayctl.manifests.manifest_set import ManifestSet, load_manifest_set
from gatewayctl.output import paint, use_colour
from gatewayctl.redaction import redact
from gatewayctl.reports import codequality, junit, parse_report_option


def format_text(diags: Sequence[Diagnostic], mset: ManifestSet, colour: bool) -> str:
    lines: list[str] = []
    for d in diags:
        head, _, rest = d.format(mset.root).partition("\n")
        sev = d.severity.value
        head = head.replace(
            f"{sev}[", paint(sev, "red" if d.is_error else "yellow", colour) + "[", 1
        )
        lines.append(head)
        src = _snippet(d, mset)
        if src:
            lines.append(src)
        if rest:
            lines.append(rest)
    n_err, n_warn = count(diags)
    files = len(
        {doc.path for doc in mset.documents} | {d.location.path for d in diags if d.location}
    )
    resources = len(mset.all())
    if diags:
        lines.append(
            f"{_plural(n_err, 'error')}, {_plural(n_warn, 'warning')} in {_plural(files, 'file')}"
        )
    else:
        lines.append(
            paint("ok", "green", colour)
            + f": {_plural(resources, 'manifest')} in {_plural(files, 'file')} are valid"
        )
    return "\n".join(lines) + "\n"


def format_json(diags: Sequence[Diagnostic], failed: bool) -> str:
    """The diagnostics as `validate -o json` prints them (also `plan -o json` on bad input)."""
    n_err, n_warn = count(diags)
    body = {
        "valid": not failed,
        "errors": n_err,
        "warnings": n_warn,
        "omitted": diags.omitted if isinstance(diags, Diagnostics) else 0,
        "diagnostics": [d.to_json() for d in diags],
    }
    return json.dumps(body, indent=2) + "\n"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _snippet(d: Diagnostic, mset: ManifestSet) -> str:
    if d.location is None:
        return ""
    lines = mset.sources.get(d.location.path, [])
    idx = d.location.line - 1
    if not 0 <= idx < len(lines):
        return ""
    text = redact(lines[idx].rstrip("\r"))
    if len(text) > 160:
        return ""
    num = str(d.location.line)
    caret = " " * (len(num) + 4 + d.location.column - 1) + "^"
    return f"  {num} | {text}\n {caret}"


def run_validate(
    root: Path, *, output: str, strict: bool, reports: Sequence[str], colour: bool | None = None
) -> tuple[int, str]:
    if not root.exists():
        raise UsageError(f"{root} does not exist", hint="give the folder that holds the manifests")
    parsed = [parse_report_option(r) for r in reports]
    mset, diags = load_manifest_set(root)
    for fmt, path in parsed:
        if fmt == "codequality":
            write_output(path, codequality(diags, str(root)), "the Code Quality report")
        else:
            write_output(path, junit(diags, mset), "the JUnit report")
    n_err, n_warn = count(diags)
    failed = n_err > 0 or (strict and n_warn > 0)
    if output == "json":
        text = format_json(diags, failed)
    else:
        text = format_text(diags, mset, use_colour() if colour is None else colour)
    return (EXIT_ERROR if failed else EXIT_OK), text
