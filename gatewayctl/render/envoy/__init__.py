"""IR -> Envoy v3 configuration: the data plane of SPEC section 2 (see docs/data-plane.md).

One module per Envoy feature: listener (filter chain), routes, clusters, lua (generated
code), auth, ratelimit, guardrails, prompts, access_log, local_reply, bootstrap. Structured
config is built as Python data and serialised; only Lua is text, and manifest data enters it
escaped through `lua.to_lua`.
"""

from gatewayctl.render.envoy.bootstrap import ENVOY_ARGS
from gatewayctl.render.envoy.bundle import EnvoyBundle
from gatewayctl.render.envoy.options import EnvoyOptions, loopback_options
from gatewayctl.render.envoy.render import render_envoy

__all__ = ["ENVOY_ARGS", "EnvoyBundle", "EnvoyOptions", "loopback_options", "render_envoy"]
