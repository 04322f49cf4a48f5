/* A seeded random harness for gatewayctl's module (tests/render/test_module_fuzz.py), built
 * with the module's sources and -fsanitize=address,undefined: Envoy's callbacks are stubbed
 * over an in-memory request, every buffer handed to the module is allocated to its exact size
 * (so a read past it is caught), and the module is driven with
 *   - filter configs: the valid config of argv[1], mutated (bytes flipped, inserted, removed,
 *     truncated, spliced with JSON fragments), through config_new (must accept or refuse,
 *     never crash or leak);
 *   - requests: random header sets (method, path, the key headers with real, mangled and
 *     random keys, Content-Length, repeated names, empty and binary values; jwt_authn's
 *     verdict headers with real and mangled payloads and failure messages) through the
 *     request-headers hook of an accepted config;
 *   - for the body filter (FILTER `body`), also a random body (request bodies spliced from
 *     JSON fragments, escapes, prompts, redactable text, repeated keys, or random bytes) in one
 *     to three chunks through the request-body hook, then a random response (status, the
 *     gateway's response headers, a JSON reply or an SSE stream with usage, or random bytes)
 *     through the response hooks.
 * Prints counts, one per line, "name value": the test checks every path was exercised.
 * Usage: fuzz_module CONFIG_FILE SEED ITERATIONS [FILTER] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_abi.h"
#include "gw_body_config.h"

static uint64_t rng;
static uint64_t next(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}
static size_t below(size_t n) { return n == 0 ? 0 : (size_t)(next() % n); }

/* ---- the stubbed request ---- */
#define MAX_HEADERS 24
static struct {
  char *key, *value;
  size_t key_length, value_length;
} headers[MAX_HEADERS];
static size_t header_count;
static long replies[600], route_clears, header_sets, token_consumers, token_replies,
    metadata_sets, bodies_replaced, buffer_limits;

/* Bodies by type (GW_*_BODY): chunks, each allocated to its exact size. */
#define MAX_CHUNKS 4
static struct {
  char *ptr[MAX_CHUNKS];
  size_t length[MAX_CHUNKS];
  size_t count;
} bodies[4];

static void clear_body(int type) {
  for (size_t i = 0; i < bodies[type].count; i++) free(bodies[type].ptr[i]);
  bodies[type].count = 0;
}

static void touch(gw_buffer b) { /* read every byte: ASan checks the range */
  volatile unsigned char sink = 0;
  for (size_t i = 0; i < b.length; i++) sink ^= (unsigned char)b.ptr[i];
  (void)sink;
}

bool envoy_dynamic_module_callback_http_get_header(gw_envoy_ptr filter, int header_type,
                                                   gw_buffer key, gw_buffer *value,
                                                   size_t index, size_t *count) {
  (void)filter;
  touch(key);
  size_t seen = 0;
  bool found = false;
  if (header_type == GW_REQUEST_HEADERS || header_type == GW_RESPONSE_HEADERS) {
    for (size_t i = 0; i < header_count; i++) {
      if (headers[i].key_length != key.length || memcmp(headers[i].key, key.ptr, key.length))
        continue;
      if (seen == index) {
        *value = (gw_buffer){headers[i].value, headers[i].value_length};
        found = true;
      }
      seen++;
    }
  }
  *count = seen;
  return found;
}

bool envoy_dynamic_module_callback_http_set_header(gw_envoy_ptr filter, int header_type,
                                                   gw_buffer key, gw_buffer value) {
  (void)filter;
  (void)header_type;
  touch(key);
  touch(value);
  header_sets++;
  /* a principal a token gave: `j0:<consumer>` or `j1:<consumer>` */
  if (value.length > 3 && value.ptr[0] == 'j' && value.ptr[2] == ':') token_consumers++;
  return true;
}

void envoy_dynamic_module_callback_http_clear_route_cache(gw_envoy_ptr filter) {
  (void)filter;
  route_clears++;
}

void envoy_dynamic_module_callback_http_set_dynamic_metadata_bool(gw_envoy_ptr filter,
                                                                  gw_buffer ns, gw_buffer key,
                                                                  bool value) {
  (void)filter;
  (void)value;
  touch(ns);
  touch(key);
}

void envoy_dynamic_module_callback_http_set_dynamic_metadata_string(gw_envoy_ptr filter,
                                                                    gw_buffer ns, gw_buffer key,
                                                                    gw_buffer value) {
  (void)filter;
  touch(ns);
  touch(key);
  touch(value);
  metadata_sets++;
}

void envoy_dynamic_module_callback_http_set_dynamic_metadata_string_batch(gw_envoy_ptr filter,
                                                                          gw_buffer ns,
                                                                          const gw_header *entries,
                                                                          size_t count) {
  (void)filter;
  touch(ns);
  for (size_t i = 0; i < count; i++) {
    touch(entries[i].key);
    touch(entries[i].value);
  }
  metadata_sets += (long)count;
}

void envoy_dynamic_module_callback_http_set_dynamic_metadata_number(gw_envoy_ptr filter,
                                                                    gw_buffer ns, gw_buffer key,
                                                                    double value) {
  (void)filter;
  (void)value;
  touch(ns);
  touch(key);
  metadata_sets++;
}

bool envoy_dynamic_module_callback_http_get_metadata_string(gw_envoy_ptr filter, int source,
                                                            gw_buffer ns, gw_buffer key,
                                                            gw_buffer *result) {
  (void)filter;
  (void)source;
  touch(ns);
  touch(key);
  static const char denied[] = {'d', 'e', 'n', 'i', 'e', 'd'}; /* no NUL after it */
  if (below(2)) return false;
  *result = (gw_buffer){denied, sizeof denied};
  return true;
}

/* The counters (gw_counters.c, gw_limits.c): ids from 1, as Envoy gives them; an increment
 * names a defined id and as many label values as it was defined with, whose bytes it reads. */
static size_t counters_defined, *counter_labels;
int envoy_dynamic_module_callback_http_filter_config_define_counter(gw_envoy_ptr config,
                                                                    gw_buffer name,
                                                                    gw_buffer *label_names,
                                                                    size_t label_count,
                                                                    size_t *id) {
  (void)config;
  touch(name);
  for (size_t i = 0; i < label_count; i++) touch(label_names[i]);
  size_t *labels = realloc(counter_labels, (counters_defined + 2) * sizeof *labels);
  if (labels == NULL) abort();
  counter_labels = labels;
  *id = ++counters_defined;
  counter_labels[*id] = label_count;
  return 0;
}

int envoy_dynamic_module_callback_http_filter_increment_counter(gw_envoy_ptr filter, size_t id,
                                                                gw_buffer *label_values,
                                                                size_t label_count,
                                                                uint64_t value) {
  (void)filter;
  (void)value;
  if (id == 0 || id > counters_defined || label_count != counter_labels[id]) abort();
  for (size_t i = 0; i < label_count; i++) touch(label_values[i]);
  return 0;
}

void envoy_dynamic_module_callback_http_set_buffer_limit(gw_envoy_ptr filter, uint64_t limit) {
  (void)filter;
  (void)limit;
  buffer_limits++;
}

uint32_t envoy_dynamic_module_callback_http_filter_get_worker_index(gw_envoy_ptr filter) {
  (void)filter;
  return (uint32_t)below(3);
}

size_t envoy_dynamic_module_callback_http_get_body_chunks_size(gw_envoy_ptr filter,
                                                               int body_type) {
  (void)filter;
  return body_type >= 0 && body_type < 4 ? bodies[body_type].count : 0;
}

bool envoy_dynamic_module_callback_http_get_body_chunks(gw_envoy_ptr filter, int body_type,
                                                        gw_buffer *chunks) {
  (void)filter;
  if (body_type < 0 || body_type >= 4) return false;
  for (size_t i = 0; i < bodies[body_type].count; i++)
    chunks[i] = (gw_buffer){bodies[body_type].ptr[i], bodies[body_type].length[i]};
  return true;
}

size_t envoy_dynamic_module_callback_http_get_body_size(gw_envoy_ptr filter, int body_type) {
  (void)filter;
  size_t n = 0;
  for (size_t i = 0; body_type >= 0 && body_type < 4 && i < bodies[body_type].count; i++)
    n += bodies[body_type].length[i];
  return n;
}

bool envoy_dynamic_module_callback_http_drain_body(gw_envoy_ptr filter, int body_type,
                                                   size_t length) {
  (void)filter;
  if (body_type < 0 || body_type >= 4) return false;
  if (length >= envoy_dynamic_module_callback_http_get_body_size(NULL, body_type))
    clear_body(body_type);
  return true;
}

bool envoy_dynamic_module_callback_http_append_body(gw_envoy_ptr filter, int body_type,
                                                    gw_buffer data) {
  (void)filter;
  touch(data);
  bodies_replaced++;
  return body_type >= 0 && body_type < 4;
}

/* The `limits` filter's live-buckets gauge (gw_limits.c). */
int envoy_dynamic_module_callback_http_filter_config_define_gauge(gw_envoy_ptr config,
                                                                  gw_buffer name,
                                                                  gw_buffer *label_names,
                                                                  size_t label_count, size_t *id);
int envoy_dynamic_module_callback_http_filter_config_define_gauge(gw_envoy_ptr config,
                                                                  gw_buffer name,
                                                                  gw_buffer *label_names,
                                                                  size_t label_count, size_t *id) {
  (void)config, (void)label_names;
  touch(name);
  if (label_count != 0) abort();
  *id = 0;
  return 0;
}
int envoy_dynamic_module_callback_http_filter_set_gauge(gw_envoy_ptr filter, size_t id,
                                                        gw_buffer *label_values,
                                                        size_t label_count, uint64_t value);
int envoy_dynamic_module_callback_http_filter_set_gauge(gw_envoy_ptr filter, size_t id,
                                                        gw_buffer *label_values,
                                                        size_t label_count, uint64_t value) {
  (void)filter, (void)id, (void)label_values, (void)value;
  if (label_count != 0) abort();
  return 0;
}

/* The `limits` filter's RL custom flag (gw_limits.c). */
void envoy_dynamic_module_callback_http_add_custom_flag(gw_envoy_ptr filter, gw_buffer flag);
void envoy_dynamic_module_callback_http_add_custom_flag(gw_envoy_ptr filter, gw_buffer flag) {
  (void)filter;
  touch(flag);
}

void envoy_dynamic_module_callback_http_send_response(gw_envoy_ptr filter, uint32_t status,
                                                      gw_header *hs, size_t count,
                                                      gw_buffer body, gw_buffer details) {
  (void)filter;
  for (size_t i = 0; i < count; i++) {
    touch(hs[i].key);
    touch(hs[i].value);
  }
  touch(body);
  touch(details);
  if (status < 600) replies[status]++;
  for (size_t i = 0; i + 6 <= body.length; i++) /* the bearer-token replies */
    if (memcmp(body.ptr + i, "token", 5) == 0) {
      token_replies++;
      break;
    }
}

/* The access logger's callbacks (gw_log.c): this harness drives the filters only
 * (tests/render/module/fuzz_log.c drives the logger), so they are never called. */
#define NEVER abort()
void envoy_dynamic_module_callback_access_logger_get_timing_info(gw_envoy_ptr l,
                                                                 gw_access_log_timing *o) {
  (void)l, (void)o;
  NEVER;
}
void envoy_dynamic_module_callback_access_logger_get_bytes_info(gw_envoy_ptr l,
                                                                gw_access_log_bytes *o) {
  (void)l, (void)o;
  NEVER;
}
bool envoy_dynamic_module_callback_access_logger_get_header_value(gw_envoy_ptr l, int t,
                                                                  gw_buffer k, gw_buffer *v,
                                                                  size_t i, size_t *c) {
  (void)l, (void)t, (void)k, (void)v, (void)i, (void)c;
  NEVER;
}
uint32_t envoy_dynamic_module_callback_access_logger_get_response_code(gw_envoy_ptr l) {
  (void)l;
  NEVER;
}
bool envoy_dynamic_module_callback_access_logger_get_response_code_details(gw_envoy_ptr l,
                                                                           gw_buffer *o) {
  (void)l, (void)o;
  NEVER;
}
uint64_t envoy_dynamic_module_callback_access_logger_get_response_flags(gw_envoy_ptr l) {
  (void)l;
  NEVER;
}
uint32_t envoy_dynamic_module_callback_access_logger_get_attempt_count(gw_envoy_ptr l) {
  (void)l;
  NEVER;
}
bool envoy_dynamic_module_callback_access_logger_get_upstream_cluster(gw_envoy_ptr l,
                                                                      gw_buffer *o) {
  (void)l, (void)o;
  NEVER;
}
bool envoy_dynamic_module_callback_access_logger_get_upstream_remote_address(gw_envoy_ptr l,
                                                                             gw_buffer *a,
                                                                             uint32_t *p) {
  (void)l, (void)a, (void)p;
  NEVER;
}
bool envoy_dynamic_module_callback_access_logger_get_dynamic_metadata(gw_envoy_ptr l,
                                                                      gw_buffer n, gw_buffer k,
                                                                      gw_buffer *o) {
  (void)l, (void)n, (void)k, (void)o;
  NEVER;
}
bool envoy_dynamic_module_callback_access_logger_get_dynamic_metadata_number(gw_envoy_ptr l,
                                                                             gw_buffer n,
                                                                             gw_buffer k,
                                                                             double *o) {
  (void)l, (void)n, (void)k, (void)o;
  NEVER;
}
bool envoy_dynamic_module_callback_access_logger_get_dynamic_metadata_bool(gw_envoy_ptr l,
                                                                           gw_buffer n,
                                                                           gw_buffer k, bool *o) {
  (void)l, (void)n, (void)k, (void)o;
  NEVER;
}
bool envoy_dynamic_module_callback_is_validation_mode(void) { NEVER; }

/* ---- inputs ---- */
static char *copy(const char *p, size_t n) {
  char *out = malloc(n ? n : 1);
  if (out == NULL) abort();
  if (n) memcpy(out, p, n);
  return out;
}

static const char *FRAGMENTS[] = {
    "{", "}", "[", "]", "\"", ":", ",", "null", "true", "1e9", "-1", "99999999999999999999",
    "\\u0000", "\\ud800", "\\u00e9", "\"abi\":\"v0.1.0\"", "{\"a\":[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]}",
    "\"consumers\":[{\"name\":\"x\"}]", "\"first_cap\":\"1\"", "\"jwt\":{}", "\\", "\x01", "\xff",
};

static char *mutate_config(const char *base, size_t n, size_t *out_n) {
  size_t cap = n * 2 + 256;
  char *s = malloc(cap);
  if (s == NULL) abort();
  memcpy(s, base, n);
  size_t len = n;
  size_t edits = below(4);
  for (size_t e = 0; e < edits; e++) {
    switch (below(5)) {
      case 0: /* flip a byte */
        if (len) s[below(len)] = (char)next();
        break;
      case 1: /* truncate */
        len = below(len + 1);
        break;
      case 2: { /* remove a run */
        if (!len) break;
        size_t at = below(len), run = below(len - at) + 1;
        if (run > 16) run = 16;
        memmove(s + at, s + at + run, len - at - run);
        len -= run;
        break;
      }
      default: { /* insert a fragment */
        const char *f = FRAGMENTS[below(sizeof FRAGMENTS / sizeof *FRAGMENTS)];
        size_t fl = strlen(f), at = below(len + 1);
        if (len + fl > cap) break;
        memmove(s + at + fl, s + at, len - at);
        memcpy(s + at, f, fl);
        len += fl;
      }
    }
  }
  char *exact = copy(s, len);
  free(s);
  *out_n = len;
  return exact;
}

static const char *NAMES[] = {":method", ":path", "authorization", "x-api-key", "api-key",
                              "content-length", "x-other", "x-gw-jwt-j0", "x-gw-jwt-j1",
                              "x-gw-jwt-j0-failed", "x-gw-jwt-j1-failed", "x-gw-route",
                              "x-gw-consumer", "x-gw-token-charge-0", "x-gw-token-charge-1"};
/* base64url payloads: {"sub":"search-app"}, {"azp":"helpdesk","sub":1}, {"sub":"s\u0065arch-app",
 * "x":[{"y":"}"}]}, {"sub":"\ud800"}, {} and unpadded / padded / broken forms */
static const char *VALUES[] = {
    "POST", "GET", "/v1/chat/completions", "/v1/embeddings?x=1", "/v1/completions", "/v2",
    "Bearer ", "bearer\t", "BEARER  ", "Basic abc", "", " ", "\t\r\n", "0", "12", "999999999",
    "99999999999999999999999", "1e3", "-5", "KEY-ONE", "KEY-TWO", "Bearer KEY-ONE",
    "Bearer\tKEY-TWO ", " KEY-ONE\n",
    "eyJzdWIiOiJzZWFyY2gtYXBwIn0", "eyJhenAiOiJoZWxwZGVzayIsInN1YiI6MX0=",
    "eyJzdWIiOiJzXHUwMDY1YXJjaC1hcHAiLCJ4IjpbeyJ5IjoifSJ9XX0", "eyJzdWIiOiJcdWQ4MDAifQ", "e30",
    "eyJzdWIiOiJzZWFyY2gtYXBw", "eyJzdWIi", "e", "!!!!", "Jwt is expired",
    "Jwt issuer is not configured", "Jwt verification fails",
    "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
    "claude-limited", "claude-tokens", "search-app", "1", "40",
};

static void random_request(void) {
  header_count = 0;
  size_t n = below(MAX_HEADERS);
  for (size_t i = 0; i < n; i++) {
    const char *name = NAMES[below(sizeof NAMES / sizeof *NAMES)];
    headers[i].key = copy(name, strlen(name));
    headers[i].key_length = strlen(name);
    char value[96];
    size_t vl = 0;
    size_t parts = below(3) + 1;
    for (size_t p = 0; p < parts; p++) {
      if (below(4) == 0) { /* random bytes */
        size_t r = below(24);
        for (size_t k = 0; k < r && vl < sizeof value; k++) value[vl++] = (char)next();
      } else {
        const char *v = VALUES[below(sizeof VALUES / sizeof *VALUES)];
        size_t l = strlen(v);
        if (vl + l > sizeof value) break;
        memcpy(value + vl, v, l);
        vl += l;
      }
    }
    headers[i].value = copy(value, vl);
    headers[i].value_length = vl;
    header_count++;
  }
  if (below(2)) { /* usually an endpoint POST, so the interesting path runs */
    for (size_t i = 0; i < header_count && i < 2; i++) {
      free(headers[i].key);
      free(headers[i].value);
      const char *k = i == 0 ? ":method" : ":path";
      const char *v = i == 0 ? "POST" : "/v1/chat/completions";
      headers[i].key = copy(k, strlen(k));
      headers[i].key_length = strlen(k);
      headers[i].value = copy(v, strlen(v));
      headers[i].value_length = strlen(v);
    }
  }
}

static void free_request(void);

static const char *BODY_PARTS[] = {
    "{\"model\":\"chat\"", "{\"model\":\"assistant\"", "{\"model\":\"guarded\"",
    "{\"model\":\"tokens\"", "{\"model\":\"keys\"", "{\"model\":\"no-such\\u0000x\"",
    "{\"model\":\"weird/model:v1.0_x\"", "{\"model\":7", "{",
    ",\"messages\":[{\"role\":\"user\",\"content\":\"mail a@b.co or 4111 1111 1111 1111\"}]",
    ",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}]",
    ",\"messages\":\"x\"", ",\"prompt\":\"complete \\ud83d\\ude00\"", ",\"input\":[\"a\",1]",
    ",\"prompt_variables\":{\"product\":\"Acme\",\"language\":{\"x\":[1.5e300,null]}}",
    ",\"prompt_variables\":\"no\"", ",\"prompt_variables\":{\"product\":null}",
    ",\"model\":\"chat\"", ",\"temperature\":-0.0", ",\"x\":\"\\u00e9\\n\\\"\"",
    ",\"ssn\":\"123-45-6789 (555) 123-4567\"", "}", "}", "}", "]", "\"", ":", ",", "nul",
    "\\ud800", "1e99999",
};
static const char *STATUSES[] = {"200", "200", "401", "403", "429", "500", "2000", "", "abc"};
static const char *REPLY_PARTS[] = {
    "{\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3}}",
    "{\"usage\":{\"prompt_tokens\":1e308,\"completion_tokens\":-4,"
    "\"prompt_tokens_details\":{\"cached_tokens\":2}}}",
    "data: {\"choices\":[]}\n\n", "data: {\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":6}}\n\n",
    "data: [DONE]\n\n", "{\"usage\":", "\n", "data: ", "{\"error\":{}}",
};

/* A body of `parts` (or random bytes) split into `type`'s chunks, each of its exact size. */
static void random_body(int type, const char **parts, size_t part_count) {
  char data[4096];
  size_t n = 0;
  if (parts == BODY_PARTS && below(10) == 0) { /* over the `guarded` route's 2048-byte bound */
    static const char head[] = "{\"model\":\"guarded\",\"pad\":\"";
    memcpy(data, head, sizeof head - 1);
    n = sizeof head - 1 + 2100 + below(1000);
    memset(data + sizeof head - 1, 'a', n - (sizeof head - 1));
    data[n++] = '"';
    data[n++] = '}';
  } else if (below(8) == 0) {
    size_t r = below(200);
    for (size_t k = 0; k < r; k++) data[n++] = (char)next();
  } else if (parts == BODY_PARTS && below(2)) { /* a well-formed request: model, members, } */
    size_t pick[5] = {below(9), 9 + below(12), 9 + below(12), 9 + below(12), 21};
    size_t count = 2 + below(4);
    pick[count - 1] = 21;
    for (size_t p = 0; p < count; p++) {
      size_t l = strlen(parts[pick[p]]);
      memcpy(data + n, parts[pick[p]], l);
      n += l;
    }
  } else {
    size_t count = below(8) + 1;
    for (size_t p = 0; p < count; p++) {
      const char *v = parts[below(part_count)];
      size_t l = strlen(v);
      if (n + l > sizeof data) break;
      memcpy(data + n, v, l);
      n += l;
    }
  }
  clear_body(type);
  size_t chunks = below(3) + 1, at = 0;
  for (size_t c = 0; c < chunks && at < n; c++) {
    size_t l = c + 1 == chunks ? n - at : below(n - at + 1);
    bodies[type].ptr[bodies[type].count] = copy(data + at, l);
    bodies[type].length[bodies[type].count++] = l;
    at += l;
  }
}

static void set_header_value(size_t i, const char *key, const char *value) {
  headers[i].key = copy(key, strlen(key));
  headers[i].key_length = strlen(key);
  headers[i].value = copy(value, strlen(value));
  headers[i].value_length = strlen(value);
}

static const char *PRINCIPALS[] = {"c:search-app", "c:helpdesk", "c:", "none", "invalid",
                                   "token:expired", "token:invalid", "token:unknown",
                                   "jwtp:search-app", ":x", "c:x:y"};

/* The `limits` filter: a random request, often for a route the Lua serves (x-gw-route), its
 * consumer and charges as random as the rest. */
static const char *LIMITED_ROUTES[] = {"claude-limited", "claude-tokens", "claude-limite", ""};
static void limits_request(void) {
  random_request();
  if (below(4) != 0 && header_count < MAX_HEADERS)
    set_header_value(header_count++, "x-gw-route", LIMITED_ROUTES[below(4)]);
}

/* The body filter: a request (headers, body) and then its response. */
static void body_request(gw_module_ptr filter) {
  random_request();
  if (header_count < MAX_HEADERS && below(4) != 0) {
    set_header_value(header_count++, "x-gw-principal",
                     PRINCIPALS[below(sizeof PRINCIPALS / sizeof *PRINCIPALS)]);
  }
  bool end = below(8) == 0;
  envoy_dynamic_module_on_http_filter_request_headers(NULL, filter, end);
  if (!end) {
    if (below(4) == 0) { /* an earlier chunk, buffered */
      random_body(GW_RECEIVED_REQUEST_BODY, BODY_PARTS, sizeof BODY_PARTS / sizeof *BODY_PARTS);
      envoy_dynamic_module_on_http_filter_request_body(NULL, filter, false);
      bodies[GW_BUFFERED_REQUEST_BODY] = bodies[GW_RECEIVED_REQUEST_BODY];
      bodies[GW_RECEIVED_REQUEST_BODY].count = 0;
    }
    random_body(GW_RECEIVED_REQUEST_BODY, BODY_PARTS, sizeof BODY_PARTS / sizeof *BODY_PARTS);
    envoy_dynamic_module_on_http_filter_request_body(NULL, filter, true);
  }
  free_request();
  /* the response */
  const char *status = STATUSES[below(sizeof STATUSES / sizeof *STATUSES)];
  set_header_value(header_count++, ":status", status);
  if (below(2)) set_header_value(header_count++, "x-gateway-model", below(2) ? "gpt-4o" : "m");
  if (below(6) == 0) set_header_value(header_count++, "x-gateway-guardrail", "blocked");
  if (below(6) == 0) set_header_value(header_count++, "x-gateway-limit", "tokens");
  if (below(3) == 0) set_header_value(header_count++, "content-type", "text/event-stream");
  if (below(3) == 0) set_header_value(header_count++, "content-length", "12");
  end = below(6) == 0;
  envoy_dynamic_module_on_http_filter_response_headers(NULL, filter, end);
  for (size_t c = below(3); !end; c--) {
    end = c == 0;
    random_body(GW_RECEIVED_RESPONSE_BODY, REPLY_PARTS, sizeof REPLY_PARTS / sizeof *REPLY_PARTS);
    envoy_dynamic_module_on_http_filter_response_body(NULL, filter, end);
    if (!end) { /* what the filter asked to buffer */
      clear_body(GW_BUFFERED_RESPONSE_BODY);
      bodies[GW_BUFFERED_RESPONSE_BODY] = bodies[GW_RECEIVED_RESPONSE_BODY];
      bodies[GW_RECEIVED_RESPONSE_BODY].count = 0;
    }
  }
  free_request();
  for (int t = 0; t < 4; t++) clear_body(t);
}

static void free_request(void) {
  for (size_t i = 0; i < header_count; i++) {
    free(headers[i].key);
    free(headers[i].value);
  }
  header_count = 0;
}

int main(int argc, char **argv) {
  if (argc != 4 && argc != 5) return 2;
  const char *filter_name = argc == 5 ? argv[4] : "auth";
  bool body = strcmp(filter_name, "body") == 0, limits = strcmp(filter_name, "limits") == 0;
  FILE *f = fopen(argv[1], "rb");
  if (f == NULL) return 2;
  static char base[1 << 16];
  size_t base_n = fread(base, 1, sizeof base, f);
  fclose(f);
  rng = strtoull(argv[2], NULL, 10) * 2654435761u + 1;
  long iterations = strtol(argv[3], NULL, 10);
  long accepted = 0, refused = 0, requests = 0;
  if (strcmp(envoy_dynamic_module_on_program_init(), GW_ABI_VERSION) != 0) return 3;
  /* the module's number formatting against printf's (and strtod's), on costs and counts */
  long numbers = 0;
  for (long i = 0; i < iterations * 20; i++) {
    double tokens = (double)below(2000000), price = (double)below(40000) / 1000;
    double x = below(4) == 0 ? (double)(int64_t)next() / (double)(1ULL << below(64))
                             : tokens * price / 1e6;
    char want[400], got[32];
    snprintf(want, sizeof want, "%.8f", x);
    double a = gb_round8(x), e = strtod(want, NULL);
    if (memcmp(&a, &e, sizeof a) != 0) {
      printf("round8 %.17g: %.17g != %.17g\n", x, a, e);
      return 4;
    }
    snprintf(want, sizeof want, "%.14g", x);
    size_t n = gb_format_number(x, got);
    if (n != strlen(want) || memcmp(got, want, n) != 0) {
      printf("format %.17g: %.*s != %s\n", x, (int)n, got, want);
      return 4;
    }
    numbers++;
  }
  for (long it = 0; it < iterations; it++) {
    size_t n = base_n;
    char *config = below(4) == 0 ? copy(base, base_n) : mutate_config(base, base_n, &n);
    gw_module_ptr c = envoy_dynamic_module_on_http_filter_config_new(
        NULL, (gw_buffer){filter_name, strlen(filter_name)}, (gw_buffer){config, n});
    free(config); /* the module keeps no pointer into its config bytes */
    if (c == NULL) {
      refused++;
      continue;
    }
    accepted++;
    for (int r = 0; r < 20; r++) {
      gw_module_ptr filter = envoy_dynamic_module_on_http_filter_new(c, NULL);
      if (body) {
        body_request(filter);
      } else {
        if (limits) limits_request();
        else random_request();
        envoy_dynamic_module_on_http_filter_request_headers(NULL, filter, below(2));
        free_request();
      }
      envoy_dynamic_module_on_http_filter_destroy(filter);
      requests++;
    }
    envoy_dynamic_module_on_http_filter_config_destroy(c);
  }
  printf("accepted %ld\nrefused %ld\nrequests %ld\nreplies_400 %ld\nreplies_401 %ld\n"
         "replies_403 %ld\nreplies_404 %ld\nreplies_413 %ld\nheader_sets %ld\n"
         "route_clears %ld\ntoken_consumers %ld\ntoken_replies %ld\nmetadata_sets %ld\n"
         "bodies_replaced %ld\nnumbers %ld\nreplies_429 %ld\nbuffer_limits %ld\n",
         accepted, refused, requests, replies[400], replies[401], replies[403], replies[404],
         replies[413], header_sets, route_clears, token_consumers, token_replies, metadata_sets,
         bodies_replaced, numbers, replies[429], buffer_limits);
  free(counter_labels);
  return 0;
}
