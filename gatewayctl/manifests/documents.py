"""One YAML document -> one typed manifest, or diagnostics saying exactly what is wrong.

Pydantic's errors are translated here into diagnostics with the file position of the field,
its dotted path, and a hint listing what would be valid.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from gatewayctl.diagnostics import Diagnostic, did_you_mean, error
from gatewayctl.manifests.kinds import API_VERSION, KINDS, SPEC_MODELS, Metadata
from gatewayctl.manifests.types import MODEL_NAME_PATTERN, NAME_PATTERN, Strict
from gatewayctl.manifests.yamlsource import FieldPath, SourceDocument, dotted
from gatewayctl.redaction import looks_secret

S = TypeVar("S", bound=Strict)

TOP_LEVEL_FIELDS = ("apiVersion", "kind", "metadata", "spec")
_NAME_RE = re.compile(NAME_PATTERN)
_MODEL_NAME_RE = re.compile(MODEL_NAME_PATTERN)


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


def _value_at(data: Any, fpath: FieldPath) -> Any:
    for part in fpath:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def _doc_path(data: Any, loc: tuple[Any, ...]) -> FieldPath:
    """Drop pydantic's union labels from an error location, keeping the real document path."""
    out: list[str | int] = []
    for part in loc:
        if (
            isinstance(data, dict)
            and part in data
            or isinstance(data, list)
            and isinstance(part, int)
            and part < len(data)
        ):
            data = data[part]
            out.append(part)
        elif isinstance(data, dict) and isinstance(part, str) and not out_has_label(part):
            out.append(part)  # a missing or unknown key: keep it, it is the field in question
            data = None
    return tuple(out)


def out_has_label(part: str) -> bool:
    # Union member labels look like type names: "bool", "date", "function-after[...]", "str".
    return "[" in part or part in {"bool", "date", "str", "int", "float", "list", "dict", "none"}


def _unwrap(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in _unwrap(arg)]
    return [annotation]


def _model_at(model: type[BaseModel], fpath: FieldPath) -> type[BaseModel] | None:
    """The pydantic model that describes the mapping at fpath (below spec), if any."""
    current: Any = model
    for part in fpath:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        info = current.model_fields.get(part)
        if info is None:
            return None
        nxt: Any = None
        for cand in _unwrap(info.annotation):
            origin = typing.get_origin(cand)
            if origin in (list, tuple):
                cand = _unwrap(typing.get_args(cand)[0])[0]
            elif origin is dict:
                cand = _unwrap(typing.get_args(cand)[1])[0]
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                nxt = cand
                break
        current = nxt
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _literal_choices(model: type[BaseModel] | None, name: str) -> list[str]:
    if model is None or name not in model.model_fields:
        return []
    choices: list[str] = []
    for cand in _unwrap(model.model_fields[name].annotation):
        if typing.get_origin(cand) is typing.Literal:
            choices.extend(str(a) for a in typing.get_args(cand))
        elif typing.get_origin(cand) is list:
            for inner in _unwrap(typing.get_args(cand)[0]):
                if typing.get_origin(inner) is typing.Literal:
                    choices.extend(str(a) for a in typing.get_args(inner))
    return choices


_TYPE_WORDS = {
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "date_type": "a date (YYYY-MM-DD)",
    "date_parsing": "a date (YYYY-MM-DD)",
    "date_from_datetime_parsing": "a date (YYYY-MM-DD)",
}


def _describe(value: Any) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = str(value)
    if looks_secret(text):
        return "a value that looks like a credential (not shown)"
    if len(text) > 40:
        text = text[:37] + "..."
    return f'"{text}"' if isinstance(value, str) else text


def _pattern_words(pattern: str) -> str:
    if pattern == NAME_PATTERN:
        return "lowercase letters, digits and '-', starting and ending with a letter or digit"
    if pattern == MODEL_NAME_PATTERN:
        return "lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
    return f"the pattern {pattern}"


def translate_errors(
    exc: ValidationError,
    doc: SourceDocument,
    root_model: type[BaseModel],
    prefix: FieldPath,
    resource: str,
) -> list[Diagnostic]:
    data = _value_at(doc.data, prefix)
    grouped: dict[FieldPath, list[dict[str, Any]]] = {}
    for err in exc.errors(include_url=False):
        path = _doc_path(data, tuple(err["loc"]))
        grouped.setdefault(path, []).append(dict(err))
    out: list[Diagnostic] = []
    for path, errs in grouped.items():
        full = (*prefix, *path)
        first = errs[0]
        etype = first["type"]
        value = _value_at(data, path)
        parent = _model_at(root_model, path[:-1]) if path else root_model
        leaf = path[-1] if path else ""
        hint: str | None = None
        if etype == "extra_forbidden":
            code, summary = "GW104", f'unknown field "{leaf}"'
            valid = sorted(parent.model_fields) if parent else []
            guess = did_you_mean(str(leaf), valid)
            hint = (f'did you mean "{guess}"? ' if guess else "") + (
                f"valid fields here: {', '.join(valid)}" if valid else ""
            )
            out.append(
                error(
                    code,
                    summary,
                    location=doc.location(full, key=True),
                    field=dotted(full),
                    hint=hint.strip() or None,
                    resource=resource,
                )
            )
            continue
        if etype == "missing":
            code, summary = "GW103", f'missing required field "{leaf}"'
            hint = f'add "{leaf}" to {dotted(full[:-1]) or "the document"}'
        else:
            code = "GW105"
            types_wanted = [_TYPE_WORDS[e["type"]] for e in errs if e["type"] in _TYPE_WORDS]
            if etype == "literal_error" or any(e["type"] == "literal_error" for e in errs):
                choices = _literal_choices(parent, str(leaf)) if isinstance(leaf, str) else []
                if not choices and len(path) >= 2:
                    choices = _literal_choices(_model_at(root_model, path[:-2]), str(path[-2]))
                summary = f"{_describe(value)} is not one of: {', '.join(choices)}"
                guess = did_you_mean(str(value), choices) if isinstance(value, str) else None
                hint = f'did you mean "{guess}"?' if guess else f"use one of: {', '.join(choices)}"
            elif etype == "string_pattern_mismatch":
                pattern = first.get("ctx", {}).get("pattern", "")
                summary = f"{_describe(value)} is not valid: use {_pattern_words(pattern)}"
                if pattern in (NAME_PATTERN, MODEL_NAME_PATTERN):
                    code = "GW106"
                    hint = "names are lowercase DNS-style, e.g. team-limits"
            elif types_wanted and len(types_wanted) == len(errs):
                wanted = " or ".join(dict.fromkeys(types_wanted))
                summary = f"expected {wanted}, got {_describe(value)}"
            else:
                msgs = [str(e["msg"]).removeprefix("Value error, ") for e in errs]
                summary = "; ".join(dict.fromkeys(msgs))
                if (
                    value is not None
                    and not isinstance(value, (dict, list))
                    and str(value) not in summary
                ):
                    summary = f"{_describe(value)}: {summary}"
                if etype == "url_parsing":
                    summary = f"{_describe(value)} is not a valid URL"
                    hint = "use a full URL with scheme and host, like https://api.openai.com"
        out.append(
            error(
                code,
                summary,
                location=doc.location(full),
                field=dotted(full),
                hint=hint,
                resource=resource,
            )
        )
    return out


def load_manifest(doc: SourceDocument) -> tuple[Manifest[Any] | None, list[Diagnostic]]:
    data = doc.data
    if data is None:
        return None, []  # an empty document (a trailing ---) is not an error
    if not isinstance(data, dict):
        return None, [
            error(
                "GW006",
                f"a manifest must be a mapping, got {_describe(data)}",
                location=doc.location(()),
                hint="start the document with apiVersion: and kind:",
            )
        ]
    diags: list[Diagnostic] = []
    kind = data.get("kind")
    name = data.get("metadata", {}).get("name") if isinstance(data.get("metadata"), dict) else None
    resource = f"{kind}/{name}" if isinstance(kind, str) and isinstance(name, str) else ""
    for key in data:
        if key not in TOP_LEVEL_FIELDS:
            guess = did_you_mean(key, TOP_LEVEL_FIELDS)
            diags.append(
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
        diags.append(
            error(
                "GW101",
                "missing apiVersion" if api is None else f"unsupported apiVersion {_describe(api)}",
                location=doc.location(("apiVersion",)),
                field="apiVersion",
                resource=resource,
                hint=f"use apiVersion: {API_VERSION}",
            )
        )
    if kind not in SPEC_MODELS:
        guess = did_you_mean(str(kind), KINDS) if isinstance(kind, str) else None
        diags.append(
            error(
                "GW102",
                "missing kind" if kind is None else f"unknown kind {_describe(kind)}",
                location=doc.location(("kind",)),
                field="kind",
                resource=resource,
                hint=(f'did you mean "{guess}"? ' if guess else "") + f"kinds: {', '.join(KINDS)}",
            )
        )
        return None, diags
    assert isinstance(kind, str)
    metadata: Metadata | None = None
    if "metadata" not in data:
        diags.append(
            error(
                "GW103",
                'missing required field "metadata"',
                location=doc.location(()),
                field="metadata",
                hint="add metadata: {name: ...}",
                resource=resource,
            )
        )
    else:
        try:
            metadata = Metadata.model_validate(data["metadata"])
        except ValidationError as exc:
            diags.extend(translate_errors(exc, doc, Metadata, ("metadata",), resource))
    if metadata is not None:
        rule = _MODEL_NAME_RE if kind == "Model" else _NAME_RE
        limit = 253 if kind == "Model" else 63
        if not rule.match(metadata.name) or len(metadata.name) > limit:
            words = "lowercase letters, digits, '-'" + (" and '.'" if kind == "Model" else "")
            diags.append(
                error(
                    "GW106",
                    f"{_describe(metadata.name)} is not a valid {kind} name",
                    location=doc.location(("metadata", "name")),
                    field="metadata.name",
                    resource=resource,
                    hint=f"use {words}, at most {limit} characters, "
                    "starting and ending with a letter or digit",
                )
            )
            metadata = None
    spec_model = SPEC_MODELS[kind]
    spec: Strict | None = None
    if "spec" not in data:
        diags.append(
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
            diags.extend(translate_errors(exc, doc, spec_model, ("spec",), resource))
    if diags or metadata is None or spec is None:
        return None, diags
    return Manifest(kind, metadata.name, metadata, spec, doc), []
