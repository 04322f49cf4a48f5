"""Deny patterns as Envoy compiles them: the wrapped form, RE2 syntax, the program-size limit.

A deny pattern is matched by Envoy's RBAC filter, whose `safe_regex` is a full match: the
renderer wraps each pattern so that it matches anywhere in the text (`search_regex`), and Envoy
compiles that wrapped text with RE2's default options, rejecting a program larger than the
runtime's `re2.max_program_size.error_level` (the bootstrap sets MAX_PROGRAM_SIZE). A pattern
Envoy would reject makes Envoy reject the whole listener, so `validate` compiles each pattern
this way (`envoy_problem`), and the renderer uses the same wrapping.

Program sizes differ between RE2 builds: the Python binding's RE2 counts more instructions
than Envoy 1.40's for the same wrapped pattern (measured: a literal of n characters is n + 18
here and n + 7 in Envoy; `[^a]{300}` 2,418 and 607; `\\w{300}` 918 and 907). So the
binding's count decides only below the limit; a pattern it counts above the limit is compiled
by Envoy itself (`envoy --mode validate` on a one-filter config, when `envoy` is on PATH),
whose verdict and count are final. Without `envoy`, the binding's (larger) count decides.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The bootstrap's runtime value for re2.max_program_size.error_level (Envoy's default: 100).
MAX_PROGRAM_SIZE = 10_000


def search_regex(pattern: str) -> str:
    """RE2 that fully matches any text containing a match of pattern (flags stay scoped)."""
    return f"(?s:.*)(?:{pattern})(?s:.*)"


@dataclass(frozen=True)
class PatternProblem:
    """Why Envoy would reject a deny pattern: RE2's message, or the program size."""

    message: str
    hint: str
    program_size: int | None = None


_SHORTEN = (
    "shorten the pattern: split a long alternation or literal into several deny patterns, "
    "or use a character class instead of listing characters"
)


def _reason(exc: Exception) -> str:
    reason = exc.args[0] if exc.args else "invalid pattern"
    return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)


def envoy_problem(pattern: str) -> PatternProblem | None:
    """None when Envoy accepts the pattern as rendered; else what it would say."""
    import re2

    options = re2.Options()
    options.log_errors = False  # the diagnostic says it; RE2 must not also log to stderr
    try:
        re2.compile(pattern, options=options)
    except re2.error as exc:
        reason = _reason(exc)
        return PatternProblem(
            f"deny pattern is not valid RE2: {reason}",
            _SHORTEN
            if "too large" in reason
            else "RE2 has no backreferences or lookaround; see "
            "https://github.com/google/re2/wiki/Syntax",
        )
    try:
        size = re2.compile(search_regex(pattern), options=options).programsize
    except re2.error as exc:
        # Valid alone, broken inside the wrapping: an unterminated \Q quotes the closing `)`.
        return PatternProblem(
            "deny pattern is not valid RE2 as Envoy matches it, inside "
            f"(?s:.*)(?:…)(?s:.*): {_reason(exc)}",
            "end a \\Q…\\E quote with \\E, or escape the characters instead",
        )
    if size > MAX_PROGRAM_SIZE:
        counted = envoy_program_size(pattern)
        if counted is not None:
            size = counted
    if size > MAX_PROGRAM_SIZE:
        return PatternProblem(
            f"deny pattern compiles to an RE2 program of {size} instructions; "
            f"Envoy rejects more than {MAX_PROGRAM_SIZE} (and with it the whole listener)",
            _SHORTEN,
            size,
        )
    return None


_ENVOY_SIZE = re.compile(r"RE2 program size of (\d+) > max program size")


def _probe_config(pattern: str) -> dict[str, Any]:
    """A static bootstrap whose one RBAC policy matches `pattern` as the gateway renders it."""
    principal = {
        "header": {"name": "x", "string_match": {"safe_regex": {"regex": search_regex(pattern)}}}
    }
    rbac = {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
        "rules": {
            "action": "DENY",
            "policies": {"p": {"permissions": [{"any": True}], "principals": [principal]}},
        },
    }
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "probe",
        "route_config": {},
        "http_filters": [
            {"name": "envoy.filters.http.rbac", "typed_config": rbac},
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            },
        ],
    }
    listener = {
        "name": "probe",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}},
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ]
            }
        ],
    }
    return {
        "layered_runtime": {
            "layers": [
                {
                    "name": "static",
                    "static_layer": {"re2.max_program_size.error_level": MAX_PROGRAM_SIZE},
                }
            ]
        },
        "static_resources": {"listeners": [listener]},
    }


def envoy_program_size(pattern: str) -> int | None:
    """Envoy's own count for the wrapped pattern when Envoy rejects it for its size; 0 when
    Envoy accepts it; None when no `envoy` could be asked."""
    import subprocess

    envoy = shutil.which("envoy")
    if envoy is None:
        return None
    with tempfile.TemporaryDirectory(prefix="gatewayctl-re2-") as tmp:
        config = Path(tmp) / "probe.json"
        config.write_text(json.dumps(_probe_config(pattern)))
        try:
            result = subprocess.run(
                [envoy, "--mode", "validate", "-c", str(config), "-l", "critical"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
    if result.returncode == 0:
        return 0
    found = _ENVOY_SIZE.search(result.stdout + result.stderr)
    return int(found.group(1)) if found else None
