"""Finding literal credentials in manifests. Credentials are only ever secretRefs.

The scan covers every string of every document, valid or not, and never echoes what it found.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gatewayctl.diagnostics import Diagnostic, error
from gatewayctl.manifests.yamlsource import FieldPath, SourceDocument, dotted
from gatewayctl.redaction import find_credential

__all__ = ["find_credential", "scan_document"]


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
