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

#include "gw_value.h"

typedef struct gw_body gw_body;

#define GW_MAX_CONSUMER_BYTES 256
#define GW_MAX_MODEL_BYTES 256 /* a longer answering model's name is read again for the label */
#define GW_STREAM_LIMITS 8 /* = GB_MAX_TOKEN_LIMITS */

/* The `gw` values of a request the module's body filter served, as the stream's metadata would
 * hold them (a later write of a key replaces its value): the compiled access logger (gw_log.c)
 * reads these instead of asking Envoy for each key, and the values only it reads on the route
 * (the config's log_only) are not written to Envoy's metadata at all (`written` false). Keys
 * are the config's names or literals (they outlive the stream); string values are copied into
 * `text`. `overflow`: a value did not fit: every value is then written to Envoy's metadata too
 * and the logger asks Envoy; likewise without memory for the record (`log_lost`). Allocated on
 * the first value, apart from the stream: the stream stays small enough for the allocator's
 * per-thread cache (a 2.2 KiB stream cost ~2k instructions more per request).
 * The logger also takes the stream's `model` (the response's x-gateway-model, read by the
 * response path) and the method (POST: the filter serves no other). */
#define GW_LOG_VALUES 12 /* the module writes 11 `gw` keys at most */
#define GW_LOG_TEXT 256
enum { GW_LOG_STRING, GW_LOG_NUMBER, GW_LOG_BOOL };
typedef struct {
  const char *key;
  const char *string; /* in the record's text */
  double number;
  uint32_t key_length, length;
  int type;
  bool flag;
  bool written; /* to Envoy's metadata too */
} gw_log_value;
typedef struct {
  const char *ns; /* the namespace written to (the config's `gw`) */
  size_t ns_length;
  const char *model_header; /* the response header the stream's `model` is from */
  size_t model_header_length;
  size_t count, text_length;
  bool overflow;
  gw_log_value values[GW_LOG_VALUES];
  char text[GW_LOG_TEXT];
} gw_log_values;

/* What one request carries from its headers to its body and to its response: the response
 * path reads no metadata back. */
typedef struct {
  int kind; /* GW_KIND_BODY_STREAM (gw_module.h): the hooks tell a stream from a config */
  gw_body *body;
  int endpoint;  /* index into the config's endpoints, or -1: not a request the filter reads */
  bool buffered; /* the filter buffered earlier request chunks (StopIterationAndBuffer) */
  /* set when the module served the request (forwarded it on one of its routes): */
  const void *route; /* the gb_route, or NULL: the response is not this filter's */
  char consumer[GW_MAX_CONSUMER_BYTES];
  size_t consumer_length;
  bool has_prompt_version;
  long long prompt_version;
  double carried[GW_STREAM_LIMITS]; /* the token debt each limit's charge carried */
  uint64_t charges[GW_STREAM_LIMITS]; /* 1 + carried: what the `limits` filter charges */
  /* the response: */
  int reading;           /* what the body hook does (gw_body_response.c) */
  const void *price;     /* the answering model's gb_price, or NULL */
  bool has_model;        /* `model` holds the reply's x-gateway-model (the counters' label) */
  char model[GW_MAX_MODEL_BYTES];
  size_t model_length;
  gw_usage_scan scan;    /* a stream's usage */
  const void *counters;  /* the config's gw_counters (gw_counters.h) */
  gw_log_values *log;    /* the `gw` metadata written on this request (gw_log.c reads it) */
  bool log_lost;         /* no memory for it: the logger asks Envoy */
} gw_body_stream;

/* A `gw` value of the request (key GB_LOG_*, gw_body_config.h) on route `route`: noted for
 * the logger, and written to Envoy's metadata unless the compiled logger is its only reader on
 * the route and the record holds it (gw_body.c). A string's write is the caller's (batched):
 * true when it must be written. */
bool gw_log_note_string(gw_envoy_ptr filter, gw_body_stream *s, const void *route, int id,
                        gw_buffer value);
void gw_meta_string(gw_envoy_ptr filter, gw_body_stream *s, const void *route, int id,
                    gw_buffer value);
void gw_meta_number(gw_envoy_ptr filter, gw_body_stream *s, const void *route, int id,
                    double value);
/* The body filter's stream whose access log is being written on this worker: the stream Envoy
 * completed last (on_http_filter_stream_complete) and has not destroyed yet, or NULL
 * (gw_module.c). */
const gw_body_stream *gw_log_stream(void);

/* The body filter's config from its JSON (the renderer's data); NULL if it is not valid. */
gw_body *gw_body_new(const gj_node *config);
void gw_body_destroy(gw_body *body);

int gw_body_request_headers(gw_envoy_ptr filter, gw_body_stream *stream, bool end_of_stream);
int gw_body_request_body(gw_envoy_ptr filter, gw_body_stream *stream, bool end_of_stream);
int gw_body_response_headers(gw_envoy_ptr filter, gw_body_stream *stream, bool end_of_stream);
int gw_body_response_body(gw_envoy_ptr filter, gw_body_stream *stream, bool end_of_stream);
/* Frees what the stream holds (not the stream). */
void gw_body_stream_free(gw_body_stream *stream);

#endif
