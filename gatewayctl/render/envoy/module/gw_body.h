/* The body filter, compiled (gw_body.c): what lua/gateway.lua's envoy_on_request does, with
 * access.lua, prompts.lua, secrets.lua's set_credential and, through the value library
 * (gw_value.h), json.lua, text.lua and redact.lua, for the routes the renderer gives it
 * (render/envoy/body_module.py). Requests to the other routes pass untouched to the Lua body
 * filter placed after it; the Lua's response path serves every route.
 *
 * The per-stream state is declared here so that the hooks (gw_module.c) and a response path
 * can share it. */
#ifndef GW_BODY_H
#define GW_BODY_H

#include "gw_abi.h"
#include "gw_json.h"

typedef struct gw_body gw_body;

/* What one request carries from its headers to its body (and, later, to its response). */
typedef struct {
  int kind; /* GW_KIND_BODY_STREAM (gw_module.h): the hooks tell a stream from a config */
  const gw_body *body;
  int endpoint;  /* index into the config's endpoints, or -1: not a request the filter reads */
  bool buffered; /* the filter buffered earlier chunks (StopIterationAndBuffer) */
} gw_body_stream;

/* The body filter's config from its JSON (the renderer's data); NULL if it is not valid. */
gw_body *gw_body_new(const gj_node *config);
void gw_body_destroy(gw_body *body);

int gw_body_request_headers(gw_envoy_ptr filter, gw_body_stream *stream, bool end_of_stream);
int gw_body_request_body(gw_envoy_ptr filter, gw_body_stream *stream, bool end_of_stream);

#endif
