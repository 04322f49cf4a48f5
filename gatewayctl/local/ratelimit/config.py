"""envoyproxy/ratelimit's configuration format, read and matched as the official service does.

A document has `domain` and `descriptors`; a descriptor has `key`, optional `value`,
optional `rate_limit: {unit, requests_per_unit}` (also `unlimited`, `name`), and optional child
`descriptors`. A request descriptor's entries are matched level by level: `key_value` first,
then the key without a value (every value, each counted apart); a limit applies only when the
match reaches the descriptor's last entry. The count's key is
`<domain>_<key>_<value>_..._<window start>`, the official service's, so both count alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gatewayctl.local.ratelimit.wire import UNIT_NUMBERS, Descriptor

UNIT_SECONDS = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "week": 7 * 86400,
    "month": 30 * 86400,
    "year": 365 * 86400,
}


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Limit:
    requests_per_unit: int
    unit: str
    unlimited: bool = False

    @property
    def seconds(self) -> int:
        return UNIT_SECONDS[self.unit]


@dataclass
class Node:
    limit: Limit | None = None
    children: dict[str, Node] = field(default_factory=dict)


def _node(raw: Any, where: str) -> tuple[str, Node]:
    if not isinstance(raw, dict) or not isinstance(raw.get("key"), str) or not raw["key"]:
        raise ConfigError(f"{where}: a descriptor needs a non-empty `key`")
    unknown = set(raw) - {"key", "value", "rate_limit", "descriptors", "shadow_mode",
                          "detailed_metric", "quota_mode"}
    if unknown:
        raise ConfigError(f"{where}: unknown fields {sorted(unknown)}")
    key = raw["key"] if raw.get("value") is None else f"{raw['key']}_{raw['value']}"
    node = Node()
    rate = raw.get("rate_limit")
    if rate is not None:
        unit = str(rate.get("unit", "")).lower()
        if unit not in UNIT_NUMBERS and not rate.get("unlimited"):
            raise ConfigError(f"{where}: unknown unit {rate.get('unit')!r}")
        node.limit = Limit(int(rate.get("requests_per_unit", 0)), unit or "second",
                           bool(rate.get("unlimited", False)))
    node.children = _level(raw.get("descriptors") or [], f"{where}.{key}")
    return key, node


def _level(raws: Any, where: str) -> dict[str, Node]:
    if not isinstance(raws, list):
        raise ConfigError(f"{where}: `descriptors` must be a list")
    out: dict[str, Node] = {}
    for i, raw in enumerate(raws):
        key, node = _node(raw, f"{where}[{i}]")
        if key in out:
            raise ConfigError(f"{where}: duplicate descriptor {key}")
        out[key] = node
    return out


@dataclass(frozen=True)
class RateLimitConfig:
    domains: dict[str, dict[str, Node]]

    def limit_for(self, domain: str, descriptor: Descriptor) -> Limit | None:
        level = self.domains.get(domain)
        found: Limit | None = None
        for i, (key, value) in enumerate(descriptor.entries):
            if level is None:
                return None
            node = level.get(f"{key}_{value}") or level.get(key)
            if node is None:
                return None
            if node.limit is not None and i == len(descriptor.entries) - 1:
                found = node.limit
            level = node.children
        return found


def parse_config(texts: list[str]) -> RateLimitConfig:
    domains: dict[str, dict[str, Node]] = {}
    for n, text in enumerate(texts):
        doc = yaml.safe_load(text)
        if not isinstance(doc, dict) or not isinstance(doc.get("domain"), str):
            raise ConfigError(f"document {n + 1}: needs `domain`")
        if doc["domain"] in domains:
            raise ConfigError(f"domain {doc['domain']} is configured twice")
        domains[doc["domain"]] = _level(doc.get("descriptors") or [], doc["domain"])
    return RateLimitConfig(domains)


def read_config(path: Path) -> RateLimitConfig:
    """A file, or every *.yaml / *.yml of a folder (the official service's runtime folder)."""
    files = [path] if path.is_file() else sorted(
        p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()
    )
    return parse_config([p.read_text() for p in files])


def key_prefix(domain: str, descriptor: Descriptor) -> str:
    """The count's key without its window: `<domain>_<key>_<value>_..._`."""
    parts = [domain]
    for key, value in descriptor.entries:
        parts += [key, value]
    return "_".join(parts) + "_"


def cache_key(domain: str, descriptor: Descriptor, limit: Limit, now: int) -> str:
    return f"{key_prefix(domain, descriptor)}{now // limit.seconds * limit.seconds}"
