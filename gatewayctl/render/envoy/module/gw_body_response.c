/* The body filter's response path, compiled: lua/gateway.lua's envoy_on_response for the
 * requests the module served (their routes switch the Lua body filter off), from the state the
 * request left in the stream (gw_body.h): the provider's 401/403 replaced by the gateway's 502,
 * x-gateway-prompt-version, the guardrail mark, a limiter's refund of carried token debt, and
 * the usage of the reply or stream (usage.lua, through gw_value.h) as the access log's and
 * counters' metadata (tokens, cost) and as token debt (tokens.lua).
 *
 * A whole reply is buffered until its end (as the Lua's h:body() does) and read once; a stream
 * (text/event-stream) passes chunk by chunk and is scanned as it goes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_body_config.h"
#include "gw_counters.h"

#define BUF(s) ((gw_buffer){(s), sizeof(s) - 1})

enum { PASS, REPLACE, WHOLE, STREAM };

static const char UPSTREAM_AUTH_ERROR[] =
    "{\"error\":{\"code\":\"upstream_authentication_failed\",\"message\":\"The provider rejected "
    "the gateway's credentials for this model; the gateway's operators have to fix them.\","
    "\"type\":\"server_error\"}}";
static const char *const DROPPED[] = {"content-encoding", "www-authenticate", "set-cookie", "etag",
                                      "last-modified"};

static gw_buffer text_buf(gb_text t) { return (gw_buffer){t.ptr, t.length}; }

static bool header(gw_envoy_ptr f, gw_buffer name, gw_buffer *value) {
  return gb_first_header(f, GW_RESPONSE_HEADERS, name, value);
}

static void set(gw_envoy_ptr f, gw_buffer name, gw_buffer value) {
  envoy_dynamic_module_callback_http_set_header(f, GW_RESPONSE_HEADERS, name, value);
}

static bool contains(gw_buffer hay, const char *needle) {
  size_t n = strlen(needle);
  for (size_t i = 0; i + n <= hay.length; i++)
    if (memcmp(hay.ptr + i, needle, n) == 0) return true;
  return false;
}

/* The debt key of a limit: "<limit key>|<route>|<consumer or nothing>". */
static void debt_key(const gw_body_stream *s, const gb_route *r, const gb_token_limit *l,
                     gw_out *key) {
  gw_out_append(key, l->key.ptr, l->key.length);
  gw_out_append(key, "|", 1);
  gw_out_append(key, r->name.ptr, r->name.length);
  gw_out_append(key, "|", 1);
  if (l->by_consumer) gw_out_append(key, s->consumer, s->consumer_length);
}

static void add_debt(gw_envoy_ptr f, gw_body_stream *s, const gb_route *r, size_t i,
                     double tokens) {
  gw_out key = {0};
  debt_key(s, r, &r->limits[i], &key);
  if (!key.failed)
    gb_debt_add(s->body, envoy_dynamic_module_callback_http_filter_get_worker_index(f), key.ptr,
                key.length, tokens);
  gw_out_free(&key);
}

int gw_body_response_headers(gw_envoy_ptr f, gw_body_stream *s, bool end_of_stream) {
  const gb_route *r = s->route;
  gw_body *b = s->body;
  s->reading = PASS;
  s->has_model = false;
  s->model_length = 0;
  if (r == NULL) return GW_HEADERS_CONTINUE;
  /* each header read only where its answer matters (a lookup costs ~500 instructions) */
  gw_buffer value, model = {NULL, 0}, ignored;
  int status = 0;
  if (header(f, BUF(":status"), &value))
    for (size_t i = 0; i < value.length && value.ptr[i] >= '0' && value.ptr[i] <= '9' && i < 4;
         i++)
      status = status * 10 + (value.ptr[i] - '0');
  bool success = status >= 200 && status < 300;
  bool denied = status == 401 || status == 403;
  bool guardrail = denied && header(f, text_buf(b->guardrail_response_header), &ignored);
  bool has_model = (success || denied) && header(f, text_buf(b->model_response_header), &model);
  if (has_model && success) {
    s->price = gb_find_price(b, model.ptr, model.length);
    /* the counters' model label, kept for the body hook (a longer name is read again there) */
    if (model.length <= sizeof s->model) {
      memcpy(s->model, model.ptr, model.length);
      s->model_length = model.length;
      s->has_model = true;
    }
  }

  if ((status == 401 || status == 403) && has_model && !guardrail) {
    /* the provider rejected the gateway's credential: none of its reply is passed on */
    gw_meta_number(f, s, r, GB_LOG_UPSTREAM_STATUS, status);
    set(f, BUF(":status"), BUF("502"));
    set(f, BUF("content-type"), BUF("application/json"));
    for (size_t i = 0; i < sizeof DROPPED / sizeof DROPPED[0]; i++)
      set(f, (gw_buffer){DROPPED[i], strlen(DROPPED[i])}, BUF(""));
    if (end_of_stream) return GW_HEADERS_CONTINUE;
    s->reading = REPLACE;
    return GW_HEADERS_STOP_ITERATION;
  }
  if (s->has_prompt_version) {
    char version[32];
    set(f, text_buf(b->prompt_version_header),
        (gw_buffer){version, gb_format_int(s->prompt_version, version)});
  }
  if (r->guard_logs) {
    /* action log: the RBAC shadow rules record a match without denying */
    gw_buffer result = {NULL, 0};
    if (envoy_dynamic_module_callback_http_get_metadata_string(
            f, GW_METADATA_DYNAMIC, text_buf(b->rbac_filter), BUF("shadow_engine_result"),
            &result) &&
        result.length == 6 && memcmp(result.ptr, "denied", 6) == 0)
      gw_meta_string(f, s, r, GB_LOG_GUARDRAIL, BUF("logged"));
  } else if (r->has_guard && status == 403 && guardrail) {
    gw_meta_string(f, s, r, GB_LOG_GUARDRAIL, BUF("blocked"));
  }
  if (status == 429 && header(f, text_buf(b->limit_response_header), &ignored)) {
    /* refused by a limiter before (or at) the token charge: the carried debt is owed again */
    for (size_t i = 0; i < r->limit_count; i++)
      if (s->carried[i] > 0) add_debt(f, s, r, i, s->carried[i]);
    return GW_HEADERS_CONTINUE;
  }
  if (!success) return GW_HEADERS_CONTINUE;
  gw_buffer type = {"", 0};
  header(f, BUF("content-type"), &type);
  if (contains(type, "text/event-stream")) {
    s->reading = STREAM;
    return GW_HEADERS_CONTINUE;
  }
  if (end_of_stream) return GW_HEADERS_CONTINUE; /* no body: no usage */
  s->reading = WHOLE;
  return GW_HEADERS_STOP_ITERATION;
}

/* usage -> metadata (access log, counters) and token debt (gateway.lua's envoy_on_response) */
static void account(gw_envoy_ptr f, gw_body_stream *s, const gw_usage *u) {
  const gb_route *r = s->route;
  gw_body *b = s->body;
  const gb_price *price = s->price;
  double cost = price != NULL ? (u->prompt * price->input + u->completion * price->output) / 1e6
                              : 0;
  gw_meta_number(f, s, r, GB_LOG_PROMPT_TOKENS, u->prompt);
  gw_meta_number(f, s, r, GB_LOG_COMPLETION_TOKENS, u->completion);
  if (u->has_cached && u->cached > 0) gw_meta_number(f, s, r, GB_LOG_CACHED_TOKENS, u->cached);
  if (price != NULL) gw_meta_number(f, s, r, GB_LOG_COST, gb_round8(cost));
  /* the per-consumer counters, counted here (gw_counters.c) rather than by the access log */
  gw_buffer model = {"", 0};
  if (s->has_model) model = (gw_buffer){s->model, s->model_length};
  else header(f, text_buf(b->model_response_header), &model);
  gw_counters_count(f, s->counters, (gw_buffer){s->consumer, s->consumer_length},
                    text_buf(r->name), model, u->prompt, u->completion, floor(cost * 1e9 + 0.5));
  double used = u->prompt + u->completion - 1;
  for (size_t i = 0; i < r->limit_count; i++) add_debt(f, s, r, i, used > 0 ? used : 0);
}

static void feed_chunks(gw_envoy_ptr f, gw_usage_scan *scan) {
  size_t count = envoy_dynamic_module_callback_http_get_body_chunks_size(f, GW_RECEIVED_RESPONSE_BODY);
  if (count == 0) return;
  gw_buffer *chunks = calloc(count, sizeof *chunks);
  if (chunks == NULL) return;
  if (envoy_dynamic_module_callback_http_get_body_chunks(f, GW_RECEIVED_RESPONSE_BODY, chunks))
    for (size_t i = 0; i < count; i++) gw_usage_scan_feed(scan, chunks[i].ptr, chunks[i].length);
  free(chunks);
}

int gw_body_response_body(gw_envoy_ptr f, gw_body_stream *s, bool end_of_stream) {
  if (s->reading == PASS) return GW_BODY_CONTINUE;
  if (s->reading == STREAM) {
    feed_chunks(f, &s->scan);
    if (end_of_stream) {
      s->reading = PASS;
      if (s->scan.found) account(f, s, &s->scan.last);
    }
    return GW_BODY_CONTINUE;
  }
  if (!end_of_stream) return GW_BODY_STOP_AND_BUFFER;
  int reading = s->reading;
  s->reading = PASS;
  if (reading == REPLACE) {
    size_t held = envoy_dynamic_module_callback_http_get_body_size(f, GW_BUFFERED_RESPONSE_BODY);
    envoy_dynamic_module_callback_http_drain_body(f, GW_BUFFERED_RESPONSE_BODY, held);
    size_t got = envoy_dynamic_module_callback_http_get_body_size(f, GW_RECEIVED_RESPONSE_BODY);
    envoy_dynamic_module_callback_http_drain_body(f, GW_RECEIVED_RESPONSE_BODY, got);
    envoy_dynamic_module_callback_http_append_body(f, GW_RECEIVED_RESPONSE_BODY,
                                                   BUF(UPSTREAM_AUTH_ERROR));
    char length[24];
    int n = snprintf(length, sizeof length, "%zu", sizeof UPSTREAM_AUTH_ERROR - 1);
    gw_buffer sent;
    if (header(f, BUF("content-length"), &sent))
      set(f, BUF("content-length"), (gw_buffer){length, n > 0 ? (size_t)n : 0});
    return GW_BODY_CONTINUE;
  }
  gw_out copy = {0};
  gw_buffer reply;
  gw_usage usage;
  if (gb_body_bytes(f, GW_BUFFERED_RESPONSE_BODY, GW_RECEIVED_RESPONSE_BODY, &copy, &reply) &&
      gw_usage_of(reply.ptr, reply.length, &usage))
    account(f, s, &usage);
  gw_out_free(&copy);
  return GW_BODY_CONTINUE;
}

void gw_body_stream_free(gw_body_stream *s) {
  gw_usage_scan_free(&s->scan);
  free(s->log);
}
