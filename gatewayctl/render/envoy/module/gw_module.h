/* gatewayctl's dynamic module: the filters it holds and what the hooks (gw_module.c) call.
 *
 * One library, libgatewayctl.so; the filter config's filter_name picks the filter: `auth`
 * (gw_auth.c, the compiled form of lua/auth.lua and secrets.lua's key files, with gw_jwt.c for
 * jwt.lua's token principals), `body` (gw_body*.c, gateway.lua's request and response
 * paths) and `limits` (gw_limits.c, the local_ratelimit filters' work for the body filter's
 * routes); the Lua and Envoy's filters stay the fallback and the reference the tests hold
 * these to. The same library holds the JSON access logger (gw_log.c, logger_name `json`). */
#ifndef GW_MODULE_H
#define GW_MODULE_H

#include "gw_abi.h"
#include "gw_json.h"

/* The marker gatewayctl reads from a built library (render/envoy/dynamic_module.py) to refuse
 * one built for another ABI: the module's ABI version after a fixed prefix. */
#define GW_MODULE_MARKER "gatewayctl-module-abi="

#include "gw_body.h"
#include "gw_counters.h"
#include "gw_limits.h"

/* What Envoy hands back to the hooks starts with one of these, so they can tell a filter
 * config (auth: no per-stream state) from a body filter's stream. */
enum { GW_KIND_AUTH = 1, GW_KIND_BODY = 2, GW_KIND_BODY_STREAM = 3, GW_KIND_LIMITS = 4,
       GW_KIND_LIMITS_STREAM = 5, GW_KIND_LOG = 6 };

#define GW_MAX_NAME_BYTES 253 /* a consumer's name (a Kubernetes name) */

/* A request header's value: every value of the name joined with "," (as the Lua's
 * headers:get() returns it). `owned` is set (and to be freed) when the value had to be
 * joined. False when the request has no such header. */
typedef struct {
  const char *ptr;
  size_t length;
  char *owned;
} gw_header_value;
bool gw_request_header(gw_envoy_ptr filter, gw_buffer name, gw_header_value *out);

/* JWT principals (gw_jwt.c): the config's `jwt`, `jwt_consumers` and `jwt_caps`. */
typedef struct gw_jwt gw_jwt;
/* False if the config is not valid; *out stays NULL on a gateway without JWT policies. */
bool gw_jwt_load(const gj_node *jwt, const gj_node *consumers, const gj_node *caps,
                 gw_jwt **out);
void gw_jwt_destroy(gw_jwt *jwt);
typedef enum { GW_JWT_NONE, GW_JWT_CONSUMER, GW_JWT_UNKNOWN, GW_JWT_EXPIRED, GW_JWT_INVALID }
    gw_jwt_outcome;
typedef struct {
  gw_jwt_outcome outcome;
  /* GW_JWT_CONSUMER: the provider that verified the token, the consumer it names and that
   * consumer's body bound through this provider (if it has one) */
  const char *provider, *consumer;
  size_t provider_length, consumer_length;
  bool has_cap;
  long long cap;
} gw_jwt_result;
/* What jwt_authn found in the request's token (jwt.lua's jwt_principal). */
void gw_jwt_principal(gw_envoy_ptr filter, const gw_jwt *jwt, gw_jwt_result *out);

typedef struct gw_auth gw_auth;

/* The auth filter's config from its JSON (the renderer's data); NULL if it is not valid. */
gw_auth *gw_auth_new(const gj_node *config);
void gw_auth_destroy(gw_auth *auth);
/* The request's headers: the principal, or a local reply (401/403/413). */
int gw_auth_request_headers(gw_envoy_ptr filter, gw_auth *auth);

#endif
