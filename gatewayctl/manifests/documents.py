"""One YAML document -> one typed manifest, or diagnostics saying exactly what is wrong.

The document's envelope (apiVersion, kind, metadata) is checked here; the spec is validated by
its kind's pydantic model, whose errors `schema_errors.py` turns into diagnostics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from gatewayctl.diagnostics import Diagnostic, DiagnosticSink, did_you_mean, error, warning
from gatewayctl.manifests.kinds import API_VERSION, KINDS, SPEC_MODELS, Metadata
from gatewayctl.manifests.schema_errors import describe, translate_errors
from gatewayctl.manifests.types import (
    GATEWAY_NAME_PATTERN,
    MODEL_NAME_PATTERN,
    NAME_PATTERN,
    Strict,
)
from gatewayctl.manifests.yamlsource import SourceDocument, dotted

S = TypeVar("S", bound=Strict)

TOP_LEVEL_FIELDS = ("apiVersion", "kind", "metadata", "spec")
_NAME_RE = re.compile(NAME_PATTERN)
_MODEL_NAME_RE = re.compile(MODEL_NAME_PATTERN)
_GATEWAY_NAME_RE = re.compile(GATEWAY_NAME_PATTERN)

# Per kind: the name rule, its length limit, and how to say it.
_NAME_RULES: dict[str, tuple[re.Pattern[str], int, str]] = {
    "Model": (
        _MODEL_NAME_RE,
        253,
        "use lowercase letters, digits, '-' and '.', at most 253 characters, starting and "
        "ending with a letter or digit",
    ),
    "Gateway": (
        _GATEWAY_NAME_RE,
        63,
        "the Gateway's name is its Kubernetes Service's name: use lowercase letters, digits "
        "and '-', at most 63 characters, starting with a letter and ending with a letter or "
        "digit",
    ),
}
_DNS_LABEL_RULE = (
    _NAME_RE,
    63,
    "use lowercase letters, digits, '-', at most 63 characters, starting and ending with a "
    "letter or digit",
)


@dataclass(frozen=True)
class Manifest(Generic[S]):
    """A validated manifest: its kind, name, metadata and typed spec, and where it came from."""

    kind: str
    name: str
    metadata: Metadata
    spec: S
    doc: SourceDocument = field(compare=False, repr=False)

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"

    def location(self, *fpath: str | int, key: bool = False) -> Any:
        return self.doc.location(fpath, key=key)

    def error(self, code: str, summary: str, *fpath: str | int, hint: str | None = None,
              key: bool = False) -> Diagnostic:
        """An error about the field at `fpath` of this manifest (its location, its dotted
        name, this manifest as the resource); `key`: point at the field's key."""
        return error(code, summary, location=self.location(*fpath, key=key),
                     field=dotted(fpath), resource=self.ref, hint=hint)

    def warning(self, code: str, summary: str, *fpath: str | int, hint: str | None = None,
                key: bool = False) -> Diagnostic:
        """A warning, placed as `error` places an error."""
        return warning(code, summary, location=self.location(*fpath, key=key),
                       field=dotted(fpath), resource=self.ref, hint=hint)


def load_manifest(
    doc: SourceDocument, sink: DiagnosticSink
) -> tuple[Manifest[Any] | None, frozenset[str]]:
    """The document as a typed manifest, or None; its problems go to the sink. Also returns the
    dotted paths of the fields that have an error (a reference there is not checked again)."""
    data = doc.data
    if data is None:
        return None, frozenset()  # an empty document (a trailing ---) is not an error
    if not isinstance(data, dict):
        sink.add(
            error(
                "GW006",
                f"a manifest must be a mapping, got {describe(data)}",
                location=doc.location(()),
                hint="start the document with apiVersion: and kind:",
            )
        )
        return None, frozenset({""})
    bad: set[str] = set()
    kind = data.get("kind")
    name = data.get("metadata", {}).get("name") if isinstance(data.get("metadata"), dict) else None
    resource = f"{kind}/{name}" if isinstance(kind, str) and isinstance(name, str) else ""
    for key in data:
        if key not in TOP_LEVEL_FIELDS:
            guess = did_you_mean(key, TOP_LEVEL_FIELDS)
            bad.add(key)
            sink.add(
                error(
                    "GW104",
                    f'unknown field "{key}"',
                    location=doc.location((key,), key=True),
                    field=key,
                    resource=resource,
                    hint=(f'did you mean "{guess}"? ' if guess else "")
                    + "a manifest has apiVersion, kind, metadata and spec",
                )
            )
    api = data.get("apiVersion")
    if api != API_VERSION:
        bad.add("apiVersion")
        sink.add(
            error(
                "GW101",
                "missing apiVersion" if api is None else f"unsupported apiVersion {describe(api)}",
                location=doc.location(("apiVersion",)),
                field="apiVersion",
                resource=resource,
                hint=f"use apiVersion: {API_VERSION}",
            )
        )
    if kind not in SPEC_MODELS:
        guess = did_you_mean(str(kind), KINDS) if isinstance(kind, str) else None
        sink.add(
            error(
                "GW102",
                "missing kind" if kind is None else f"unknown kind {describe(kind)}",
                location=doc.location(("kind",)),
                field="kind",
                resource=resource,
                hint=(f'did you mean "{guess}"? ' if guess else "") + f"kinds: {', '.join(KINDS)}",
            )
        )
        return None, frozenset(bad | {"kind"})
    assert isinstance(kind, str)
    metadata = _load_metadata(doc, kind, resource, sink, bad)
    spec_model = SPEC_MODELS[kind]
    spec: Strict | None = None
    if "spec" not in data:
        bad.add("spec")
        sink.add(
            error(
                "GW103",
                'missing required field "spec"',
                location=doc.location(()),
                field="spec",
                hint=f"add the spec of the {kind}",
                resource=resource,
            )
        )
    else:
        try:
            spec = spec_model.model_validate(data["spec"])
        except ValidationError as exc:
            bad |= translate_errors(exc, doc, spec_model, ("spec",), resource, sink)
    if bad or metadata is None or spec is None:
        return None, frozenset(bad)
    return Manifest(kind, metadata.name, metadata, spec, doc), frozenset()


def _load_metadata(
    doc: SourceDocument, kind: str, resource: str, sink: DiagnosticSink, bad: set[str]
) -> Metadata | None:
    if "metadata" not in doc.data:
        bad.add("metadata")
        sink.add(
            error(
                "GW103",
                'missing required field "metadata"',
                location=doc.location(()),
                field="metadata",
                hint="add metadata: {name: ...}",
                resource=resource,
            )
        )
        return None
    try:
        metadata = Metadata.model_validate(doc.data["metadata"])
    except ValidationError as exc:
        bad |= translate_errors(exc, doc, Metadata, ("metadata",), resource, sink)
        return None
    rule, limit, words = _NAME_RULES.get(kind, _DNS_LABEL_RULE)
    if not rule.match(metadata.name) or len(metadata.name) > limit:
        bad.add("metadata.name")
        sink.add(
            error(
                "GW106",
                f"{describe(metadata.name)} is not a valid {kind} name",
                location=doc.location(("metadata", "name")),
                field="metadata.name",
                resource=resource,
                hint=words,
            )
        )
        return None
    return metadata
