"""JSON Schemas of the manifest kinds, generated from the pydantic models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gatewayctl.atomic import write_output
from gatewayctl.errors import EXIT_ERROR, EXIT_OK
from gatewayctl.manifests.kinds import API_VERSION, SPEC_MODELS, Metadata


def kind_schema(kind: str) -> dict[str, Any]:
    spec = SPEC_MODELS[kind].model_json_schema(ref_template="#/$defs/{model}")
    defs = spec.pop("$defs", {})
    meta = Metadata.model_json_schema(ref_template="#/$defs/{model}")
    defs.update(meta.pop("$defs", {}))
    defs["Metadata"] = meta
    defs[f"{kind}Spec"] = spec
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://gatewayctl.dev/schemas/{kind.lower()}.json",
        "title": kind,
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": API_VERSION},
            "kind": {"const": kind},
            "metadata": {"$ref": "#/$defs/Metadata"},
            "spec": {"$ref": f"#/$defs/{kind}Spec"},
        },
        "$defs": dict(sorted(defs.items())),
    }


def all_schemas() -> dict[str, str]:
    """File name -> JSON text, including all.json that accepts any kind."""
    files: dict[str, str] = {}
    refs = []
    for kind in SPEC_MODELS:
        name = f"{kind.lower()}.json"
        files[name] = json.dumps(kind_schema(kind), indent=2, sort_keys=True) + "\n"
        refs.append({"$ref": name})
    union = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://gatewayctl.dev/schemas/all.json",
        "title": "gatewayctl manifest",
        "oneOf": refs,
    }
    files["all.json"] = json.dumps(union, indent=2, sort_keys=True) + "\n"
    return files


def export_schemas(out: Path, *, check: bool) -> tuple[int, str]:
    files = all_schemas()
    if check:
        stale = sorted(
            name
            for name, text in files.items()
            if not (out / name).exists() or (out / name).read_text(encoding="utf-8") != text
        )
        extra = sorted(p.name for p in out.glob("*.json") if p.name not in files)
        if stale or extra:
            return EXIT_ERROR, (
                f"{out} is out of date: {', '.join(stale + extra)}; "
                f"run `gatewayctl schema export {out}`"
            )
        return EXIT_OK, f"{out} is up to date ({len(files)} schemas)"
    for name, text in files.items():
        write_output(out / name, text, "the schema")
    return EXIT_OK, f"wrote {len(files)} schemas to {out}"
