/* A benchmark HTTP filter for Envoy 1.40's dynamic modules: how much of the Lua filter's cost
 * a compiled filter would save (see docs/performance.md, "A compiled filter"). Never part of
 * the product: benchmarks/dataplane_module.py builds it from this source and loads it.
 *
 * Four filters, chosen by the filter config's filter_name:
 *   noop   every hook returns Continue (what the filter machinery alone costs);
 *   model  the first step of the gateway's body filter: wait for the whole request body, find
 *          the top-level "model" string, set it as the x-gw-model request header and as the
 *          dynamic metadata gw.model, and clear the route cache so the route is chosen again.
 *          A body without a top-level string "model" passes unchanged.
 *   meta   on the response headers, the dynamic metadata the gateway's counters are made of,
 *          as the body filter sets it for a successful reply (gw.consumer, gw.route,
 *          gw.prompt_tokens, gw.completion_tokens, gw.internal.cost_nano_usd), for Envoy's
 *          stats access logger to count;
 *   counters  the same metadata (the JSON access line still reads it), and the gateway's four
 *          per-consumer counters incremented by the module itself (counters it defines with
 *          the labels consumer, route and model) instead of by a stats access logger;
 *   meta-all, counters-all  the same, the `gw` namespace also holding the other keys the
 *          access line shows for a successful bench-full request (requested_model, prompt,
 *          prompt_version, cost_usd): eight keys, as on the gateway. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw_abi.h"

enum mode { MODE_NOOP = 1, MODE_MODEL = 2, MODE_META = 3, MODE_COUNTERS = 4, MODE_META_ALL = 5,
            MODE_COUNTERS_ALL = 6 };
static const enum mode NOOP = MODE_NOOP, MODEL = MODE_MODEL, META = MODE_META,
                       META_ALL = MODE_META_ALL;

/* The counters config: its mode first (every config starts with one), then the counter ids.
 * The ABI's counter ids start at 1 (0 is refused as unknown). */
enum { REQUESTS, PROMPT_TOKENS, COMPLETION_TOKENS, COST, COUNTERS };
struct counters_config {
  enum mode mode;
  size_t ids[COUNTERS];
};

#define BUF(s) ((gw_buffer){(s), sizeof(s) - 1})

const char *envoy_dynamic_module_on_program_init(void) { return GW_ABI_VERSION; }

static gw_module_ptr new_counters_config(gw_envoy_ptr config, enum mode mode) {
  static const char *const names[COUNTERS] = {"consumer.requests", "consumer.prompt_tokens",
                                              "consumer.completion_tokens",
                                              "consumer.cost_nano_usd"};
  gw_buffer labels[3] = {BUF("consumer"), BUF("route"), BUF("model")};
  struct counters_config *c = malloc(sizeof *c);
  if (c == NULL) return NULL;
  c->mode = mode;
  for (int i = 0; i < COUNTERS; i++) {
    gw_buffer name = {names[i], strlen(names[i])};
    if (envoy_dynamic_module_callback_http_filter_config_define_counter(config, name, labels, 3,
                                                                        &c->ids[i]) != 0) {
      free(c);
      return NULL;
    }
  }
  return c;
}

gw_module_ptr envoy_dynamic_module_on_http_filter_config_new(gw_envoy_ptr config, gw_buffer name,
                                                             gw_buffer value) {
  (void)value;
  if (name.length == 4 && memcmp(name.ptr, "noop", 4) == 0) return &NOOP;
  if (name.length == 5 && memcmp(name.ptr, "model", 5) == 0) return &MODEL;
  if (name.length == 4 && memcmp(name.ptr, "meta", 4) == 0) return &META;
  if (name.length == 8 && memcmp(name.ptr, "counters", 8) == 0)
    return new_counters_config(config, MODE_COUNTERS);
  if (name.length == 8 && memcmp(name.ptr, "meta-all", 8) == 0) return &META_ALL;
  if (name.length == 12 && memcmp(name.ptr, "counters-all", 12) == 0)
    return new_counters_config(config, MODE_COUNTERS_ALL);
  return NULL; /* Envoy rejects the filter config */
}

void envoy_dynamic_module_on_http_filter_config_destroy(gw_module_ptr config) {
  enum mode mode = *(const enum mode *)config;
  if (mode == MODE_COUNTERS || mode == MODE_COUNTERS_ALL) free((void *)config);
}

/* No per-stream state: the filter is its config. */
gw_module_ptr envoy_dynamic_module_on_http_filter_new(gw_module_ptr config, gw_envoy_ptr filter) {
  (void)filter;
  return config;
}

void envoy_dynamic_module_on_http_filter_destroy(gw_module_ptr self) { (void)self; }

int envoy_dynamic_module_on_http_filter_request_headers(gw_envoy_ptr filter, gw_module_ptr self,
                                                        bool end_of_stream) {
  (void)filter;
  if (*(const enum mode *)self == MODE_NOOP || end_of_stream) return GW_HEADERS_CONTINUE;
  return GW_HEADERS_STOP_ITERATION; /* hold the headers until the body is read */
}

/* JSON scanning: enough structure to find a top-level member, not a validator. */

static const char *skip_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  return p;
}

/* p at an opening quote: the byte after the closing quote, or NULL. */
static const char *skip_string(const char *p, const char *end, bool *escaped) {
  *escaped = false;
  for (p++; p < end; p++) {
    if (*p == '"') return p + 1;
    if (*p == '\\') {
      *escaped = true;
      p++;
    } else if ((unsigned char)*p < 0x20) {
      return NULL;
    }
  }
  return NULL;
}

static const char *skip_value(const char *p, const char *end) {
  bool escaped;
  if (p >= end) return NULL;
  if (*p == '"') return skip_string(p, end, &escaped);
  if (*p == '{' || *p == '[') {
    int depth = 0;
    while (p < end) {
      if (*p == '"') {
        p = skip_string(p, end, &escaped);
        if (p == NULL) return NULL;
        continue;
      }
      if (*p == '{' || *p == '[') {
        if (++depth > 64) return NULL;
      } else if (*p == '}' || *p == ']') {
        if (--depth == 0) return p + 1;
      }
      p++;
    }
    return NULL;
  }
  const char *start = p; /* a number, true, false or null */
  while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' &&
         *p != '\n' && *p != '\r')
    p++;
  return p == start ? NULL : p;
}

/* The value of the top-level "model" member (the last one if repeated) when it is a string
 * without escapes. */
static bool find_model(const char *p, const char *end, gw_buffer *model) {
  bool found = false, escaped;
  p = skip_ws(p, end);
  if (p >= end || *p != '{') return false;
  p = skip_ws(p + 1, end);
  while (p < end && *p == '"') {
    const char *key = p + 1, *key_end = skip_string(p, end, &escaped);
    if (key_end == NULL) return false;
    bool is_model = !escaped && key_end - 1 - key == 5 && memcmp(key, "model", 5) == 0;
    p = skip_ws(key_end, end);
    if (p >= end || *p != ':') return false;
    p = skip_ws(p + 1, end);
    const char *value_end = skip_value(p, end);
    if (value_end == NULL) return false;
    if (is_model) {
      found = false;
      if (*p == '"') {
        skip_string(p, end, &escaped);
        found = !escaped;
        *model = (gw_buffer){p + 1, (size_t)(value_end - 1 - (p + 1))};
      }
    }
    p = skip_ws(value_end, end);
    if (p < end && *p == ',') {
      p = skip_ws(p + 1, end);
      continue;
    }
    return p < end && *p == '}' && found;
  }
  return false;
}

/* Appends the chunks of one body to out (grown as needed); false on allocation failure. */
static bool append_body(gw_envoy_ptr filter, int type, char **out, size_t *len, size_t *cap) {
  size_t n = envoy_dynamic_module_callback_http_get_body_chunks_size(filter, type);
  if (n == 0) return true;
  gw_buffer stack[8], *chunks = n <= 8 ? stack : malloc(n * sizeof(gw_buffer));
  if (chunks == NULL) return false;
  bool ok = envoy_dynamic_module_callback_http_get_body_chunks(filter, type, chunks);
  for (size_t i = 0; ok && i < n; i++) {
    if (*len + chunks[i].length > *cap) {
      size_t want = (*len + chunks[i].length) * 2;
      char *grown = realloc(*out, want);
      if (grown == NULL) {
        ok = false;
        break;
      }
      *out = grown;
      *cap = want;
    }
    memcpy(*out + *len, chunks[i].ptr, chunks[i].length);
    *len += chunks[i].length;
  }
  if (chunks != stack) free(chunks);
  return ok;
}

/* What the step does with the model it found. */
static void publish(gw_envoy_ptr filter, gw_buffer model) {
  envoy_dynamic_module_callback_http_set_header(filter, GW_REQUEST_HEADERS, BUF("x-gw-model"),
                                                model);
  envoy_dynamic_module_callback_http_set_dynamic_metadata_string(filter, BUF("gw"), BUF("model"),
                                                                 model);
  envoy_dynamic_module_callback_http_clear_route_cache(filter);
}

int envoy_dynamic_module_on_http_filter_request_body(gw_envoy_ptr filter, gw_module_ptr self,
                                                     bool end_of_stream) {
  if (*(const enum mode *)self == MODE_NOOP) return GW_BODY_CONTINUE;
  if (!end_of_stream) return GW_BODY_STOP_AND_BUFFER;
  /* The whole body: what earlier calls buffered, then this call's data. One chunk (the usual
   * small request) is scanned in place; more are copied into one piece first. */
  size_t buffered = envoy_dynamic_module_callback_http_get_body_chunks_size(
      filter, GW_BUFFERED_REQUEST_BODY);
  size_t received = envoy_dynamic_module_callback_http_get_body_chunks_size(
      filter, GW_RECEIVED_REQUEST_BODY);
  gw_buffer model;
  if (buffered + received == 1) {
    gw_buffer one;
    if (envoy_dynamic_module_callback_http_get_body_chunks(
            filter, buffered ? GW_BUFFERED_REQUEST_BODY : GW_RECEIVED_REQUEST_BODY, &one) &&
        find_model(one.ptr, one.ptr + one.length, &model))
      publish(filter, model);
    return GW_BODY_CONTINUE;
  }
  char *body = NULL;
  size_t len = 0, cap = 0;
  if (append_body(filter, GW_BUFFERED_REQUEST_BODY, &body, &len, &cap) &&
      append_body(filter, GW_RECEIVED_REQUEST_BODY, &body, &len, &cap) && body != NULL &&
      find_model(body, body + len, &model))
    publish(filter, model); /* Envoy copies the value before this returns */
  free(body);
  return GW_BODY_CONTINUE;
}

int envoy_dynamic_module_on_http_filter_request_trailers(gw_envoy_ptr filter, gw_module_ptr self) {
  (void)filter;
  (void)self;
  return GW_TRAILERS_CONTINUE;
}

/* The values of the benchmark's successful bench-full reply. */
#define BENCH_PROMPT_TOKENS 28
#define BENCH_COMPLETION_TOKENS 16
#define BENCH_COST_NANO_USD 230000

int envoy_dynamic_module_on_http_filter_response_headers(gw_envoy_ptr filter, gw_module_ptr self,
                                                         bool end_of_stream) {
  (void)end_of_stream;
  enum mode mode = *(const enum mode *)self;
  if (mode != MODE_META && mode != MODE_COUNTERS && mode != MODE_META_ALL &&
      mode != MODE_COUNTERS_ALL)
    return GW_HEADERS_CONTINUE;
  envoy_dynamic_module_callback_http_set_dynamic_metadata_string(filter, BUF("gw"),
                                                                 BUF("consumer"), BUF("bench-app"));
  envoy_dynamic_module_callback_http_set_dynamic_metadata_string(filter, BUF("gw"), BUF("route"),
                                                                 BUF("bench-full"));
  envoy_dynamic_module_callback_http_set_dynamic_metadata_number(
      filter, BUF("gw"), BUF("prompt_tokens"), BENCH_PROMPT_TOKENS);
  envoy_dynamic_module_callback_http_set_dynamic_metadata_number(
      filter, BUF("gw"), BUF("completion_tokens"), BENCH_COMPLETION_TOKENS);
  envoy_dynamic_module_callback_http_set_dynamic_metadata_number(
      filter, BUF("gw.internal"), BUF("cost_nano_usd"), BENCH_COST_NANO_USD);
  if (mode == MODE_META_ALL || mode == MODE_COUNTERS_ALL) {
    envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
        filter, BUF("gw"), BUF("requested_model"), BUF("bench-full"));
    envoy_dynamic_module_callback_http_set_dynamic_metadata_string(filter, BUF("gw"),
                                                                   BUF("prompt"),
                                                                   BUF("bench-prompt"));
    envoy_dynamic_module_callback_http_set_dynamic_metadata_number(filter, BUF("gw"),
                                                                   BUF("prompt_version"), 1);
    envoy_dynamic_module_callback_http_set_dynamic_metadata_number(filter, BUF("gw"),
                                                                   BUF("cost_usd"), 0.00023);
  }
  if (mode == MODE_COUNTERS || mode == MODE_COUNTERS_ALL) {
    const struct counters_config *c = self;
    gw_buffer labels[3] = {BUF("bench-app"), BUF("bench-full"), BUF("bench-model")};
    static const uint64_t values[COUNTERS] = {1, BENCH_PROMPT_TOKENS, BENCH_COMPLETION_TOKENS,
                                              BENCH_COST_NANO_USD};
    for (int i = 0; i < COUNTERS; i++)
      envoy_dynamic_module_callback_http_filter_increment_counter(filter, c->ids[i], labels, 3,
                                                                  values[i]);
  }
  return GW_HEADERS_CONTINUE;
}

int envoy_dynamic_module_on_http_filter_response_body(gw_envoy_ptr filter, gw_module_ptr self,
                                                      bool end_of_stream) {
  (void)filter;
  (void)self;
  (void)end_of_stream;
  return GW_BODY_CONTINUE;
}

int envoy_dynamic_module_on_http_filter_response_trailers(gw_envoy_ptr filter,
                                                          gw_module_ptr self) {
  (void)filter;
  (void)self;
  return GW_TRAILERS_CONTINUE;
}

void envoy_dynamic_module_on_http_filter_stream_complete(gw_envoy_ptr filter, gw_module_ptr self) {
  (void)filter;
  (void)self;
}

/* Hooks Envoy 1.40 requires but never calls for this module: it starts no HTTP callout, no
 * stream and no scheduler, and ignores write-buffer watermarks. Their arguments go unread. */
#define UNUSED_HOOK(name) \
  void envoy_dynamic_module_on_http_filter_##name(void);  \
  void envoy_dynamic_module_on_http_filter_##name(void) {}
UNUSED_HOOK(http_callout_done)
UNUSED_HOOK(http_stream_headers)
UNUSED_HOOK(http_stream_data)
UNUSED_HOOK(http_stream_trailers)
UNUSED_HOOK(http_stream_complete)
UNUSED_HOOK(http_stream_reset)
UNUSED_HOOK(scheduled)
UNUSED_HOOK(downstream_above_write_buffer_high_watermark)
UNUSED_HOOK(downstream_below_write_buffer_low_watermark)
