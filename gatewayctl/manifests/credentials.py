"""Finding literal credentials in manifests. Credentials are only ever secretRefs.

The scan covers every string of every document, valid or not, and never echoes what it found.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from gatewayctl.diagnostics import Diagnostic, error
from gatewayctl.manifests.yamlsource import FieldPath, SourceDocument, dotted

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("an API key (sk-...)", re.compile(r"\bsk-(?:proj-|ant-|live-)?[A-Za-z0-9_-]{16,}")),
    ("a bearer token", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{16,}")),
    ("an AWS access key", re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b")),
    ("a GitLab token", re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}")),
    ("a GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}")),
    ("a password in a URL", re.compile(r"://[^/\s:@]+:[^/\s@]+@")),
)


def find_credential(text: str) -> str | None:
    """What kind of credential the text holds, or None."""
    for label, pattern in _PATTERNS:
        if pattern.search(text):
            return label
    return None


def redact_text(text: str) -> str:
    """The text with every credential it holds masked, for printing source snippets."""
    for _, pattern in _PATTERNS:
        text = pattern.sub("****", text)
    return text


def _strings(value: Any, path: FieldPath) -> Iterator[tuple[FieldPath, str, bool]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key), str(key), True
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, (*path, i))
    elif isinstance(value, str):
        yield path, value, False


def scan_document(doc: SourceDocument) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for fpath, text, is_key in _strings(doc.data, ()):
        if len(text) < 16:
            continue
        label = find_credential(text)
        if label:
            out.append(
                error(
                    "GW402",
                    f"literal credential: this value contains {label}",
                    location=doc.location(fpath, key=is_key),
                    field=dotted(fpath),
                    hint="store the credential in a Kubernetes Secret and refer to it with "
                    "secretRef: {name: ..., key: ...}; rotate the exposed one",
                )
            )
    return out
