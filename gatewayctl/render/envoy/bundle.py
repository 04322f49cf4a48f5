"""The rendered Envoy configuration and its byte-deterministic file form."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
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
    bootstrap: dict[str, Any]  # admin, node, LDS+CDS from files in config_dir
    lds: dict[str, Any]  # DiscoveryResponse with the listener (route config inline)
    cds: dict[str, Any]  # DiscoveryResponse with the clusters
    static: dict[str, Any]  # the same listeners and clusters as static_resources

    def files(self) -> dict[str, str]:
        """File name -> text; identical IR and options give identical bytes."""
        return {
            "bootstrap.yaml": yaml.safe_dump(
                self.bootstrap, sort_keys=True, default_flow_style=False, allow_unicode=True
            ),
            "lds.json": dump_compact(self.lds),
            "cds.json": dump_compact(self.cds),
            # JSON is YAML; json.dumps is far faster than a YAML dumper on a large config.
            "validate.yaml": json.dumps(self.static, sort_keys=True, indent=1, ensure_ascii=False)
            + "\n",
        }
