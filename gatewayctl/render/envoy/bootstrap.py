"""The bootstrap (dynamic: LDS and CDS from watched files) and its static twin for validation.

Only process-level settings live in the bootstrap; everything that changes with routing,
weights, prompts or policies is in lds.json / cds.json, so a change reaches a running Envoy
by replacing those files (Kubernetes ConfigMap `..data` swap) with no restart. Run Envoy with
`--reject-unknown-dynamic-fields` so a bad file is rejected instead of half-applied.
`envoy --mode validate` does not read LDS/CDS files, hence the static twin (validate.yaml).
"""

from __future__ import annotations

from typing import Any

from gatewayctl.ir import GatewayIR
from gatewayctl.manifests.deny_patterns import MAX_PROGRAM_SIZE
from gatewayctl.render.envoy.options import EnvoyOptions
from gatewayctl.render.envoy.probes import render_admin_cluster, render_stats_listener


def _base(ir: GatewayIR, options: EnvoyOptions) -> dict[str, Any]:
    return {
        "node": {"id": options.node_id, "cluster": options.node_cluster or ir.name},
        "admin": {
            "address": {
                "socket_address": {
                    "address": options.admin_address,
                    "port_value": options.admin_port,
                }
            }
        },
        "stats_flush_interval": f"{options.stats_flush_interval_ms / 1000:g}s",
        "layered_runtime": {
            "layers": [
                {
                    "name": "static",
                    # Deny patterns are user RE2; allow larger programs than the default 100.
                    # validate rejects a pattern over this (manifests/deny_patterns.py).
                    "static_layer": {"re2.max_program_size.error_level": MAX_PROGRAM_SIZE},
                },
            ]
        },
    }


def _file_source(options: EnvoyOptions, name: str) -> dict[str, Any]:
    return {
        "resource_api_version": "V3",
        "path_config_source": {
            "path": f"{options.config_dir}/{name}",
            "watched_directory": {"path": options.config_dir},
        },
    }


def _static_probes(options: EnvoyOptions) -> dict[str, Any]:
    """The stats listener and its admin cluster (probes.py): static, so they serve whatever
    happens to the dynamic configuration."""
    listener = render_stats_listener(options)
    cluster = render_admin_cluster(options)
    if listener is None or cluster is None:
        return {}
    return {"listeners": [listener], "clusters": [cluster]}


def render_bootstrap(ir: GatewayIR, options: EnvoyOptions) -> dict[str, Any]:
    boot = _base(ir, options)
    boot["dynamic_resources"] = {
        "lds_config": _file_source(options, "lds.json"),
        "cds_config": _file_source(options, "cds.json"),
    }
    probes = _static_probes(options)
    if probes:
        boot["static_resources"] = probes
    return boot


def render_static(
    ir: GatewayIR,
    options: EnvoyOptions,
    listeners: list[dict[str, Any]],
    clusters: list[dict[str, Any]],
) -> dict[str, Any]:
    boot = _base(ir, options)
    probes = _static_probes(options)
    boot["static_resources"] = {
        "listeners": [*listeners, *probes.get("listeners", [])],
        "clusters": [*clusters, *probes.get("clusters", [])],
    }
    return boot


# Command-line flags the rendered bootstrap is meant to run with. Unknown fields in a
# published lds/cds file are rejected (the old config stays) instead of silently dropped.
# Every routing/prompt/policy change is an in-place listener update; connections on the old
# filter chain are drained, and with the default gradual strategy a keep-alive client kept the
# old weights for the whole drain time (600 s) in a real run. Immediate drain closes them
# after their next response, so changes reach every client within a request.
ENVOY_ARGS: tuple[str, ...] = (
    "--reject-unknown-dynamic-fields",
    "--drain-strategy",
    "immediate",
    "--drain-time-s",
    "5",
)
