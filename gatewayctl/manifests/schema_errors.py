"""Pydantic's validation errors -> diagnostics.

Each error becomes one diagnostic with the file position of the field, its dotted path, a
summary in users' words and a hint listing what would be valid. Values are described, never
echoed when they look like a credential. However many errors pydantic reports, only those the
sink will show are turned into messages: the rest are counted.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from gatewayctl.diagnostics import DiagnosticSink, Severity, did_you_mean, error
from gatewayctl.manifests.types import (
    INVALID,
    MODEL_NAME_PATTERN,
    NAME_PATTERN,
    SECRET_KEY_PATTERN,
)
from gatewayctl.manifests.yamlsource import FieldPath, SourceDocument, dotted
from gatewayctl.redaction import looks_secret


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


_WRITE = {
    "an integer": "write a whole number{}, e.g. 3",
    "a number": "write a number{}, e.g. 2.5",
    "true or false": "write true or false{}",
    "a string": "write text; quote it when it could be read as something else",
    "a list": "write a list: [a, b] on one line, or one `- item` line per entry",
    "a mapping": "write a mapping: {{key: value}} on one line, or indented `key: value` lines",
    "a date (YYYY-MM-DD)": "write a date as YYYY-MM-DD{}, e.g. 2026-12-31",
}


def _type_hint(wanted: list[str], value: Any) -> str | None:
    """What to write instead, for the YAML habits behind most type errors: a number in quotes,
    and text that YAML reads as a number or a boolean (true/false only: the loader reads YAML
    1.2's booleans, so yes/no/on/off stay text; a quoted "true" is taken as true)."""
    if isinstance(value, str) and not looks_secret(value):
        text = value.strip()
        if {"an integer", "a number"} & set(wanted) and _is_number(text):
            return "remove the quotes: a quoted value is text in YAML, not a number"
    if wanted == ["a string"] and isinstance(value, bool):
        return "put the value in quotes: YAML reads an unquoted true or false as a boolean"
    if wanted == ["a string"] and isinstance(value, (int, float)):
        return ('put the value in quotes: YAML reads unquoted digits as a number (1.10 '
                'becomes 1.1, 0755 becomes 493)')
    if len(wanted) != 1 or wanted[0] not in _WRITE:
        return None
    return _WRITE[wanted[0]].format(" without quotes" if isinstance(value, str) else "")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.lower() not in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity")


def describe(value: Any) -> str:
    """A value in words for a message: short, and never a credential."""
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
    if pattern == SECRET_KEY_PATTERN:
        return "letters, digits, '-', '_' and '.', not '.' or '..' and not starting with '..'"
    return f"the pattern {pattern}"


def translate_errors(
    exc: ValidationError,
    doc: SourceDocument,
    root_model: type[BaseModel],
    prefix: FieldPath,
    resource: str,
    sink: DiagnosticSink,
) -> set[str]:
    """Report the errors of validating `doc` at `prefix` against `root_model` into the sink;
    returns the dotted paths of the fields that have an error."""
    data = _value_at(doc.data, prefix)
    grouped: dict[FieldPath, list[ErrorDetails]] = {}
    for err in exc.errors(include_url=False, include_input=False):
        path = _doc_path(data, tuple(err["loc"]))
        grouped.setdefault(path, []).append(err)
    bad: set[str] = set()
    for path, errs in grouped.items():
        full = (*prefix, *path)
        first = errs[0]
        etype = first["type"]
        bad.add(dotted(full))
        where = doc.location(full, key=etype == "extra_forbidden")
        if not sink.wants(Severity.ERROR, where):
            sink.skip(Severity.ERROR)
            continue
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
            hint = hint.strip() or None
        elif etype == "missing":
            code, summary = "GW103", f'missing required field "{leaf}"'
            hint = f'add "{leaf}" to {dotted(full[:-1]) or "the document"}'
        else:
            code = "GW105"
            types_wanted = [_TYPE_WORDS[e["type"]] for e in errs if e["type"] in _TYPE_WORDS]
            if etype == "literal_error" or any(e["type"] == "literal_error" for e in errs):
                choices = _literal_choices(parent, str(leaf)) if isinstance(leaf, str) else []
                if not choices and len(path) >= 2:
                    choices = _literal_choices(_model_at(root_model, path[:-2]), str(path[-2]))
                summary = f"{describe(value)} is not one of: {', '.join(choices)}"
                guess = did_you_mean(str(value), choices) if isinstance(value, str) else None
                hint = f'did you mean "{guess}"?' if guess else f"use one of: {', '.join(choices)}"
            elif etype == "string_pattern_mismatch":
                pattern = first.get("ctx", {}).get("pattern", "")
                summary = f"{describe(value)} is not valid: use {_pattern_words(pattern)}"
                if pattern in (NAME_PATTERN, MODEL_NAME_PATTERN):
                    code = "GW106"
                    hint = "names are lowercase DNS-style, e.g. team-limits"
                elif pattern == SECRET_KEY_PATTERN:
                    hint = "a key of a Kubernetes Secret (a file name in its volume), e.g. api-key"
            elif any(e["type"] == INVALID for e in errs):
                own = next(e for e in errs if e["type"] == INVALID)
                summary, hint = own["msg"], str(own.get("ctx", {}).get("hint") or "") or None
            elif types_wanted and len(types_wanted) == len(errs):
                wanted = " or ".join(dict.fromkeys(types_wanted))
                summary = f"expected {wanted}, got {describe(value)}"
                hint = _type_hint(list(dict.fromkeys(types_wanted)), value)
            else:
                msgs = [str(e["msg"]).removeprefix("Value error, ") for e in errs]
                summary = "; ".join(dict.fromkeys(msgs))
                if (
                    value is not None
                    and not isinstance(value, (dict, list))
                    and str(value) not in summary
                ):
                    summary = f"{describe(value)}: {summary}"
                if etype == "url_parsing":
                    summary = f"{describe(value)} is not a valid URL"
                    hint = "use a full URL with scheme and host, like https://api.openai.com"
        sink.add(
            error(
                code,
                summary,
                location=where,
                field=dotted(full),
                hint=hint,
                resource=resource,
            )
        )
    return bad
