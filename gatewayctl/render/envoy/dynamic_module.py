"""gatewayctl's compiled filters (Envoy's dynamic modules): the filter entries the renderer
emits for them, and what a built module must be to be used.

The module is C source shipped in render/envoy/module/ (gw_abi.h: the part of Envoy's
dynamic-module ABI it uses; gw_module.c: the hooks; gw_auth.c: the auth filter, with gw_jwt.c
for token principals; gw_json.c: its bounded config reader; gw_body*.c: the body filter,
with gw_counters.c, the per-consumer counters it counts itself; gw_log.c: the JSON access
logger of the module gateways (access_log.py);
gw_value.h and its sources: the value library the body filter decodes, encodes, redacts and
reads usage with). local/module.py builds it for `gatewayctl up`;
docker/envoy-module.Dockerfile builds it into an Envoy image for Kubernetes. Each filter takes
the same data the Lua filter it replaces gets as its `DATA` table, as JSON in a StringValue,
plus `abi`: the ABI version of the Envoy the renderer targets, which the module compares with
its own and refuses the config (Envoy then rejects it) when they differ.

A Gateway opts in with `spec.dataPlaneFilters: module`; then the auth filter is the module's
(on a gateway with JWT policies it reads jwt_authn's verdict from the headers render/envoy/
jwt.py hands it over in), and the body filter is the module's on the routes body_module.py
says it serves. Owns no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

MODULE_NAME = "gatewayctl"  # lib<name>.so, found in the search path
LIBRARY = f"lib{MODULE_NAME}.so"
SEARCH_PATH_ENV = "ENVOY_DYNAMIC_MODULES_SEARCH_PATH"
# Where gatewayctl's Envoy image keeps the library (docker/envoy-module.Dockerfile).
IMAGE_MODULE_DIR = "/usr/local/lib/gatewayctl"
MODULE_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"
)
STRING_VALUE_TYPE = "type.googleapis.com/google.protobuf.StringValue"
DYNAMIC_MODULES_FILTER = "envoy.filters.http.dynamic_modules"

# Envoy minor version -> the dynamic-module ABI version it speaks (its
# envoy_dynamic_module_on_program_init check). The ABI carries no compatibility promise
# between Envoy releases: a new row needs the module rebuilt and checked against that Envoy.
ENVOY_ABI = {"1.40": "v0.2.0"}
TARGET_ENVOY = "1.40"  # the Envoy the renderer writes config for (the pinned image)
TARGET_ABI = ENVOY_ABI[TARGET_ENVOY]

# The C sources, compiled together into the library, and the header they include. The value
# library (gw_value.h: JSON values, encoding, guard text, redaction, usage) calls no Envoy
# function, so its tests build it alone (tests/render/test_module_value.py).
VALUE_SOURCES = ("gw_value.c", "gw_text.c", "gw_usage.c")
SOURCES = ("gw_module.c", "gw_auth.c", "gw_jwt.c", "gw_json.c", "gw_body.c", "gw_body_config.c",
           "gw_body_response.c", "gw_counters.c", "gw_limits.c", "gw_log.c", *VALUE_SOURCES)
HEADERS = ("gw_abi.h", "gw_json.h", "gw_module.h", "gw_body.h", "gw_body_config.h",
           "gw_counters.h", "gw_limits.h", "gw_value.h")
# The flags every build uses (local/module.py and the image's Dockerfile, checked by a test):
# warnings are errors, and the hardening a distribution builds C with.
CFLAGS = (
    "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared", "-pthread",
    "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2",
)  # fmt: skip

_MARKER = re.compile(rb"gatewayctl-module-abi=(v[0-9]+\.[0-9]+\.[0-9]+)\x00")


def source_files() -> dict[str, bytes]:
    """Every file of the module's source, by name (sorted): what a build hashes and compiles."""
    folder = resources.files(__package__) / "module"
    return {name: (folder / name).read_bytes() for name in sorted((*SOURCES, *HEADERS))}


def library_abi(library: bytes) -> str | None:
    """The ABI version a built library was compiled for (the marker gw_module.c keeps)."""
    found = _MARKER.search(library)
    return found.group(1).decode("ascii") if found else None


def envoy_abi(envoy_version: str) -> str | None:
    """The ABI version of an Envoy release ("1.40.0" -> "v0.2.0"); None if not known."""
    minor = ".".join(envoy_version.split(".")[:2])
    return ENVOY_ABI.get(minor)


def abi_problem(library: bytes, envoy_version: str) -> str | None:
    """Why a built library cannot serve this Envoy and this renderer's config, or None."""
    built = library_abi(library)
    wanted = envoy_abi(envoy_version)
    if built is None:
        return "it is not gatewayctl's module (no ABI marker)"
    if wanted is None:
        known = ", ".join(f"Envoy {v}" for v in sorted(ENVOY_ABI))
        return f"Envoy {envoy_version} has no known module ABI (gatewayctl knows {known})"
    if built != wanted:
        return (f"it was built for dynamic-module ABI {built}, and Envoy {envoy_version} "
                f"speaks {wanted}")
    if built != TARGET_ABI:
        return f"the renderer writes config for ABI {TARGET_ABI} (Envoy {TARGET_ENVOY})"
    return None


def module_config(data: Mapping[str, Any]) -> str:
    """The filter's config: its data as compact JSON with sorted keys and no nulls (a null
    member is an absent one to the module, as a nil is to the Lua), plus the target ABI."""
    return json.dumps({**_without_nulls(data), "abi": TARGET_ABI}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_without_nulls(v) for v in value]
    return value


def module_filter(name: str, filter_name: str, data: Mapping[str, Any],
                  metrics_namespace: str | None = None) -> dict[str, Any]:
    """An HTTP filter entry running the module's `filter_name` with `data` as its config;
    `metrics_namespace`: the stats scope of the counters the filter defines (gw_counters.h)."""
    module: dict[str, Any] = {"name": MODULE_NAME}
    if metrics_namespace is not None:
        module["metrics_namespace"] = metrics_namespace
    return {
        "name": name,
        "typed_config": {
            "@type": MODULE_TYPE,
            "dynamic_module_config": module,
            "filter_name": filter_name,
            "filter_config": {"@type": STRING_VALUE_TYPE, "value": module_config(data)},
        },
    }

