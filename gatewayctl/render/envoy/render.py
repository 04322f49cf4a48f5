"""render_envoy: GatewayIR -> EnvoyBundle. Pure: no I/O, inputs never mutated."""

from __future__ import annotations

from gatewayctl.ir import GatewayIR
from gatewayctl.render.envoy.bootstrap import render_bootstrap, render_static
from gatewayctl.render.envoy.bundle import EnvoyBundle, discovery_response
from gatewayctl.render.envoy.cache import render_cache_store_cluster
from gatewayctl.render.envoy.clusters import render_clusters
from gatewayctl.render.envoy.global_limits import render_ratelimit_cluster
from gatewayctl.render.envoy.listener import render_listener, with_inline_routes
from gatewayctl.render.envoy.names import CLUSTER_TYPE, LISTENER_TYPE, ROUTE_CONFIG_TYPE
from gatewayctl.render.envoy.options import EnvoyOptions
from gatewayctl.render.envoy.routes import render_route_config


def render_envoy(ir: GatewayIR, options: EnvoyOptions | None = None) -> EnvoyBundle:
    opts = options if options is not None else EnvoyOptions()
    listeners = [render_listener(ir, opts)]
    route_config = render_route_config(ir, opts)
    clusters = sorted(
        render_clusters(ir, opts) + render_ratelimit_cluster(ir, opts)
        + render_cache_store_cluster(ir, opts),
        key=lambda c: str(c["name"]),
    )
    return EnvoyBundle(
        bootstrap=render_bootstrap(ir, opts),
        lds=discovery_response(listeners, LISTENER_TYPE),
        cds=discovery_response(clusters, CLUSTER_TYPE),
        rds=discovery_response([route_config], ROUTE_CONFIG_TYPE),
        # The same dicts as lds/cds/rds, not copies: nothing mutates a rendered bundle.
        static=render_static(
            ir, opts, [with_inline_routes(x, route_config) for x in listeners], clusters
        ),
    )
