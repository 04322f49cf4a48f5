/* gatewayctl's dynamic module: the filters it holds and what the hooks (gw_module.c) call.
 *
 * One library, libgatewayctl.so; the filter config's filter_name picks the filter. Stage 1
 * holds the auth filter (gw_auth.c, the compiled form of lua/auth.lua and secrets.lua's key
 * files); the Lua stays the fallback and the reference the tests hold both to. */
#ifndef GW_MODULE_H
#define GW_MODULE_H

#include "gw_abi.h"
#include "gw_json.h"

/* The marker gatewayctl reads from a built library (render/envoy/dynamic_module.py) to refuse
 * one built for another ABI: the module's ABI version after a fixed prefix. */
#define GW_MODULE_MARKER "gatewayctl-module-abi="

typedef struct gw_auth gw_auth;

/* The auth filter's config from its JSON (the renderer's data); NULL if it is not valid. */
gw_auth *gw_auth_new(const gj_node *config);
void gw_auth_destroy(gw_auth *auth);
/* The request's headers: the principal, or a local reply (401/403/413). */
int gw_auth_request_headers(gw_envoy_ptr filter, gw_auth *auth);

#endif
