"""The rendered Envoy configuration and its byte-deterministic file form.

Serialising a large gateway's config is most of the cost of rendering it, so each file is
serialised once per bundle (`files()` is cached) and every JSON file uses the C encoder
(compact; an indented `json.dumps` runs the pure-Python encoder, several times slower).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import yaml


def dump_compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


def content_version(resources: list[dict[str, Any]]) -> str:
    """version_info of a DiscoveryResponse: a hash of its resources, stable across renders."""
    digest = hashlib.sha256(dump_compact(resources).encode("utf-8")).hexdigest()
    return digest[:16]


def discovery_response(resources: list[dict[str, Any]], type_url: str) -> dict[str, Any]:
    typed = [{"@type": type_url, **r} for r in resources]
    return {"version_info": content_version(typed), "resources": typed}


@dataclass(frozen=True)
class EnvoyBundle:
    """The five files' content. The trees are shared, not copied (the static twin holds the
    same listener and cluster dicts as lds/cds): treat them as read-only."""

    bootstrap: dict[str, Any]  # admin, node, LDS+CDS from files in config_dir
    lds: dict[str, Any]  # DiscoveryResponse with the listener (its routes from RDS)
    cds: dict[str, Any]  # DiscoveryResponse with the clusters
    static: dict[str, Any]  # the same listeners (routes inline) and clusters, static
    rds: dict[str, Any] = field(default_factory=dict)  # DiscoveryResponse: the route table
    _files: dict[str, str] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def files(self) -> dict[str, str]:
        """File name -> text; identical IR and options give identical bytes."""
        if not self._files:
            self._files.update(
                {
                    "bootstrap.yaml": yaml.safe_dump(
                        self.bootstrap,
                        sort_keys=True,
                        default_flow_style=False,
                        allow_unicode=True,
                    ),
                    "lds.json": dump_compact(self.lds),
                    "cds.json": dump_compact(self.cds),
                    "rds.json": dump_compact(self.rds),
                    # JSON is YAML; compact, as the watched files are, for the C encoder.
                    "validate.yaml": dump_compact(self.static),
                }
            )
        return dict(self._files)
