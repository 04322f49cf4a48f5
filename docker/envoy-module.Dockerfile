# gatewayctl's Envoy image: the pinned upstream Envoy with gatewayctl's compiled filters (the
# Envoy dynamic module libgatewayctl.so) at Envoy's module search path, for Gateways with
# `dataPlaneFilters: module` (docs/deployment.md). Build from the repository root:
#   docker build -f docker/envoy-module.Dockerfile -t registry.example.com/gatewayctl-envoy:v1.40.0 .
# and set the Gateway's `image` to the result. The module is compiled in a stage built FROM the
# same Envoy image (the same C library as the one it runs with), from the sources in
# gatewayctl/render/envoy/module/, with the flags `gatewayctl up` uses
# (render/envoy/dynamic_module.py CFLAGS; a test keeps the two the same). The ABI version is
# compiled in: rebuild this image with each new Envoy release, never copy the library across.
ARG ENVOY_IMAGE=envoyproxy/envoy:v1.40.0

FROM ${ENVOY_IMAGE} AS build
RUN apt-get update \
 && apt-get install --yes --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY gatewayctl/render/envoy/module/ ./
RUN cc -std=c11 -O2 -Wall -Wextra -Werror -fPIC -shared -pthread \
      -fstack-protector-strong -D_FORTIFY_SOURCE=2 \
      -o libgatewayctl.so gw_module.c gw_auth.c gw_jwt.c gw_json.c gw_body.c gw_body_config.c \
      gw_body_response.c gw_counters.c gw_limits.c gw_log.c gw_value.c gw_text.c gw_usage.c

FROM ${ENVOY_IMAGE}
COPY --from=build /src/libgatewayctl.so /usr/local/lib/gatewayctl/libgatewayctl.so
# The rendered Deployment sets the same variable; set here too so the image alone works.
ENV ENVOY_DYNAMIC_MODULES_SEARCH_PATH=/usr/local/lib/gatewayctl
