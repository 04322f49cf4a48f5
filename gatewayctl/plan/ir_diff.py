"""The backstop of the manifest layer: every difference between two IRs, as IR paths.

`ir_differences` walks the two IRs' JSON forms; list items that carry a name (`name`,
`version`, `metric`, `policy`, `model`) are matched by it, so a reordering or an insertion
does not read as a change of every later item. `uncovered` keeps the differences that no
reviewer-worded change explains: the manifest layer shows them as "other change: <IR path>:
old -> new", so that no IR field, present or added later, can change without a plan saying
so. Pure functions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gatewayctl.ir import GatewayIR, to_dict

ITEM_KEYS = ("name", "version", "metric", "policy", "model")
Json = Any


@dataclass(frozen=True)
class IRDifference:
    path: tuple[str | int, ...]  # ("routes", "chat", "rollout", "canary_header")
    text: str  # `routes[chat].rollout.canary_header`: list items by name, else by index
    before: Json
    after: Json


def _key_of(before: list[Json], after: list[Json]) -> str | None:
    """The field that names the items of both lists (unique within each), if one does."""
    for key in ITEM_KEYS:
        if all(isinstance(x, dict) and key in x for x in before + after) and all(
                len({str(x[key]) for x in side}) == len(side) for side in (before, after)):
            return key
    return None


def _walk(before: Json, after: Json, path: tuple[str | int, ...], text: str,
          out: list[IRDifference]) -> None:
    if before == after:
        return
    if isinstance(before, dict) and isinstance(after, dict):
        for k in sorted(set(before) | set(after)):
            _walk(before.get(k), after.get(k), (*path, k), f"{text}.{k}" if text else k, out)
        return
    if isinstance(before, list) and isinstance(after, list):
        key = _key_of(before, after)
        if key is not None:
            old = {str(x[key]): x for x in before}
            new = {str(x[key]): x for x in after}
            for name in [*old, *(n for n in new if n not in old)]:
                _walk(old.get(name), new.get(name), (*path, name), f"{text}[{name}]", out)
            return
        if len(before) == len(after) and all(isinstance(x, (dict, list)) for x in before):
            for i, (b, a) in enumerate(zip(before, after, strict=True)):
                _walk(b, a, (*path, i), f"{text}[{i}]", out)
            return
    out.append(IRDifference(path, text, before, after))


def ir_differences(before: GatewayIR, after: GatewayIR) -> tuple[IRDifference, ...]:
    out: list[IRDifference] = []
    _walk(to_dict(before), to_dict(after), (), "", out)
    return tuple(out)


# IR fields that reviewer-worded changes explain (a trailing "*": the field and below). A field
# listed here must really be worded: tests mutate every IR field and check the plan.
COVERED = tuple(re.compile(p) for p in (
    r"^(namespace|listener_port|replicas_min|replicas_max|target_cpu|image"
    r"|data_plane_filters)$",
    r"^kubernetes\.",
    r"^limits\.(scope|redis_address|redis_username|redis_password|redis_tls|redis_ca"
    r"|failure_mode)(\.|$)",
    r"^providers\[[^]]+\]\.(type|scheme|host|port|base_path|timeout_ms|max_connections"
    r"|credential)(\.|$)",
    r"^models\[[^]]+\]\.(provider|upstream_model|context_window|input_per_million"
    r"|output_per_million|deprecated)$",
    r"^routes\[[^]]+\]\.(public_model|backends|fallback|retry_attempts|per_try_timeout_ms"
    r"|timeout_ms)(\.|\[|$)",
    r"^routes\[[^]]+\]\.policy\.(sources|api_keys|allow_consumers|allow_rules|rate_limits"
    r"|token_limits|max_request_bytes|deny_patterns|guard_action|redact|jwt|cache"
    r"|output_deny_patterns|output_action|output_redact)(\.|\[|$)",
    r"^routes\[[^]]+\]\.prompt(\.name|\.texts|\.active\[[^]]+\]\.(weight|template|parts"
    r"|required|variables))?(\.|\[|$)",
    r"^routes\[[^]]+\]\.rollout(\.(name|stable|canary|step|steps|state|canary_weight"
    r"|canary_header|pauses_ms|thresholds|analysis_window_ms|analysis_min_requests))?"
    r"(\.|\[|$)",
    r"^consumers\[[^]]+\]\.(team|api_key|budget_usd_per_month|budget_enforce)(\.|$)",
))


def is_covered(difference: IRDifference) -> bool:
    text = difference.text
    return any(p.search(text) for p in COVERED)


def owner(difference: IRDifference) -> tuple[str, str] | None:
    """The manifest-level object a difference belongs to: (kind, name); None: the gateway."""
    kinds = {"providers": "Provider", "models": "Model", "routes": "Route",
             "consumers": "Consumer"}
    path = difference.path
    if len(path) >= 2 and path[0] in kinds:
        return kinds[str(path[0])], str(path[1])
    return None


def exists_on_both_sides(difference: IRDifference) -> bool:
    """True unless the difference is a whole object added or removed (a create or delete)."""
    return not (len(difference.path) == 2 and owner(difference) is not None)
