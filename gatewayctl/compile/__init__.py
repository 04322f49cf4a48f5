"""Manifests -> IR. Weights after rollouts, merged policies and parsed prompts are resolved here.

Input is a ManifestSet without errors; output is a new GatewayIR. Nothing here performs I/O.
"""

from gatewayctl.compile.gateway import compile_gateway, rollout_canary_weight

__all__ = ["compile_gateway", "rollout_canary_weight"]
