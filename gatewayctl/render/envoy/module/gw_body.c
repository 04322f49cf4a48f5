/* The body filter's request path, compiled: lua/gateway.lua's envoy_on_request for the routes
 * the config serves (docs/data-plane.md, "Compiled filters"), with the same answers, the same
 * forwarded body and headers and the same metadata (names, types) as the Lua's, which the
 * RBAC, the limiters, the access log and the Lua response path read.
 *
 * For an endpoint POST the headers wait (StopIteration) until the whole body is here, which
 * this filter buffers (StopIterationAndBuffer) within the stream's bound, the principal's,
 * which the auth filter set (listener.module_bounds_bodies: no buffer filter in the chain;
 * Envoy answers 413 past it). Then: decode (gw_value.h), route on `model`,
 * check the route's body limit and access (access.lua), render and inject the prompt
 * (prompts.lua), publish the guard text, redact, and forward the body: the client's member
 * bytes with `model` first when only `model` and `prompt_variables` change (gateway.lua's
 * rebuild), re-encoded otherwise. A request for a route the config does not hold goes on
 * untouched to the Lua body filter after this one; on the routes the config holds, that Lua is
 * switched off (LuaPerRoute disabled, body_module.py), and this filter's x-gw-route and route
 * cache clearing come before the Lua filter's turn. */
#define _GNU_SOURCE

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "gw_body_config.h"
#include "gw_value.h"

#define BUF(s) ((gw_buffer){(s), sizeof(s) - 1})

static gw_buffer text_buf(gb_text t) { return (gw_buffer){t.ptr, t.length}; }
static gw_buffer out_buf(const gw_out *o) { return (gw_buffer){o->ptr, o->length}; }

/* The request's string metadata of the `gw` namespace, set together (one merge into the
 * stream's metadata instead of one per key): added as the Lua sets them, written before any
 * reply and when the request goes on. Thread-local: one request_body call at a time per worker,
 * and every value stays valid until that call returns. */
#define MAX_PENDING 8
static __thread struct {
  gw_header entries[MAX_PENDING];
  int ids[MAX_PENDING]; /* GB_LOG_* */
  size_t count;
} pending;

static void flush_meta(gw_envoy_ptr f, gb_text ns) {
  if (pending.count > 0)
    envoy_dynamic_module_callback_http_set_dynamic_metadata_string_batch(
        f, text_buf(ns), pending.entries, pending.count);
  pending.count = 0;
}

/* ---- the record of the `gw` metadata for the access logger (gw_body.h) ---- */

/* Whether the compiled logger is the only reader of key `id` on route `r` (NULL: a request
 * not served yet, whose values Envoy's metadata gets). */
static bool only_logged(const gw_body_stream *s, const gb_route *r, int id) {
  return r != NULL && (s->body->log_only & (1u << id)) && !(r->metadata_keys & (1u << id));
}

/* The record cannot take a value: every value it holds that Envoy's metadata does not is
 * written there now, and the logger will read them all through Envoy (overflow). */
static void spill(gw_envoy_ptr f, gw_body_stream *s) {
  gw_log_values *l = s->log;
  if (l == NULL || l->overflow) return;
  l->overflow = true;
  gw_buffer ns = text_buf(s->body->metadata_ns);
  for (size_t i = 0; i < l->count; i++) {
    gw_log_value *v = &l->values[i];
    gw_buffer key = {v->key, v->key_length};
    if (v->written || v->type < 0) continue;
    if (v->type == GW_LOG_STRING)
      envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
          f, ns, key, (gw_buffer){v->string, v->length});
    else if (v->type == GW_LOG_NUMBER)
      envoy_dynamic_module_callback_http_set_dynamic_metadata_number(f, ns, key, v->number);
    v->written = true;
  }
}

/* The record's slot for key `id` (a new one, or the one a later write replaces), or NULL: no
 * record (no memory: s->log_lost) or no room (spilled). */
static gw_log_value *log_slot(gw_envoy_ptr f, gw_body_stream *s, gw_buffer key) {
  if (s->log_lost) return NULL;
  gw_log_values *l = s->log;
  if (l == NULL) {
    l = s->log = malloc(sizeof *l); /* not zeroed: only what `count` and `text_length` cover */
    if (l == NULL) {
      s->log_lost = true;
      return NULL;
    }
    l->ns = s->body->metadata_ns.ptr;
    l->ns_length = s->body->metadata_ns.length;
    l->model_header = s->body->model_response_header.ptr;
    l->model_header_length = s->body->model_response_header.length;
    l->count = l->text_length = 0;
    l->overflow = false;
  }
  if (l->overflow) return NULL;
  for (size_t i = 0; i < l->count; i++)
    if (l->values[i].key_length == key.length && memcmp(l->values[i].key, key.ptr, key.length) == 0)
      return &l->values[i];
  if (l->count == GW_LOG_VALUES || key.length > UINT32_MAX) {
    spill(f, s);
    return NULL;
  }
  gw_log_value *v = &l->values[l->count++];
  v->key = key.ptr;
  v->key_length = (uint32_t)key.length;
  v->type = -1; /* until set */
  v->written = true;
  return v;
}

bool gw_log_note_string(gw_envoy_ptr f, gw_body_stream *s, const void *route, int id,
                        gw_buffer value) {
  gw_log_value *v = log_slot(f, s, gb_log_key(s->body, id));
  if (v == NULL) return true;
  gw_log_values *l = s->log;
  if (value.length > GW_LOG_TEXT - l->text_length) { /* replaced values keep their bytes */
    v->type = -1;
    spill(f, s);
    return true;
  }
  char *at = l->text + l->text_length;
  if (value.length > 0) memcpy(at, value.ptr, value.length);
  l->text_length += value.length;
  v->type = GW_LOG_STRING;
  v->string = at;
  v->length = (uint32_t)value.length;
  v->written = !only_logged(s, route, id);
  return v->written;
}

void gw_meta_string(gw_envoy_ptr f, gw_body_stream *s, const void *route, int id,
                    gw_buffer value) {
  if (gw_log_note_string(f, s, route, id, value))
    envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
        f, text_buf(s->body->metadata_ns), gb_log_key(s->body, id), value);
}

void gw_meta_number(gw_envoy_ptr f, gw_body_stream *s, const void *route, int id,
                    double value) {
  gw_buffer key = gb_log_key(s->body, id);
  gw_log_value *v = log_slot(f, s, key);
  if (v != NULL) {
    v->type = GW_LOG_NUMBER;
    v->number = value;
    v->written = !only_logged(s, route, id);
  }
  if (v == NULL || v->written)
    envoy_dynamic_module_callback_http_set_dynamic_metadata_number(
        f, text_buf(s->body->metadata_ns), key, value);
}

static void set_meta(const gw_body *b, int id, gw_buffer value) {
  /* always the `gw` namespace: flushed to it */
  if (pending.count < MAX_PENDING) {
    pending.ids[pending.count] = id;
    pending.entries[pending.count++] = (gw_header){gb_log_key(b, id), value};
  }
}

static void set_header(gw_envoy_ptr f, gb_text name, gw_buffer value) {
  envoy_dynamic_module_callback_http_set_header(f, GW_REQUEST_HEADERS, text_buf(name), value);
}

static void set_header_raw(gw_envoy_ptr f, gw_buffer name, gw_buffer value) {
  envoy_dynamic_module_callback_http_set_header(f, GW_REQUEST_HEADERS, name, value);
}

bool gb_first_header(gw_envoy_ptr f, int type, gw_buffer name, gw_buffer *value) {
  size_t count = 0;
  *value = (gw_buffer){NULL, 0};
  if (!envoy_dynamic_module_callback_http_get_header(f, type, name, value, 0, &count) ||
      count == 0)
    return false;
  if (value->ptr == NULL) *value = (gw_buffer){"", 0};
  return true;
}

static bool get_header(gw_envoy_ptr f, gw_buffer name, gw_buffer *value) {
  return gb_first_header(f, GW_REQUEST_HEADERS, name, value);
}

/* ---- local replies --------------------------------------------------------------------- */

/* gateway.lua's reply(): json.encode({error = {message, type, code}}) (keys sorted), with
 * gw.local_reply set and the reply header on the request (the local_reply mappers leave it),
 * and the response code details of Envoy's Lua respond(), `lua_response`: the access log
 * says the same whichever implementation answered (operators' queries on it keep working). */
static int reply(gw_envoy_ptr f, const gw_body *b, uint32_t status, const char *message,
                 size_t message_length, const char *type, const char *code) {
  gw_out body = {0};
  gw_out_append(&body, "{\"error\":{\"code\":", 17);
  gv_encode_string(code, strlen(code), &body);
  gw_out_append(&body, ",\"message\":", 11);
  gv_encode_string(message, message_length, &body);
  gw_out_append(&body, ",\"type\":", 8);
  gv_encode_string(type, strlen(type), &body);
  gw_out_append(&body, "}}", 2);
  flush_meta(f, b->metadata_ns);
  envoy_dynamic_module_callback_http_set_dynamic_metadata_bool(f, text_buf(b->metadata_ns),
                                                               BUF("local_reply"), true);
  set_header(f, b->reply_header, BUF("lua"));
  gw_header headers[] = {{BUF("content-type"), BUF("application/json")}};
  envoy_dynamic_module_callback_http_send_response(
      f, status, headers, 1, body.failed ? BUF("") : out_buf(&body), BUF("lua_response"));
  gw_out_free(&body);
  return GW_BODY_STOP_NO_BUFFER;
}

static int too_large(gw_envoy_ptr f, const gw_body *b, const char *what, long long bytes,
                     const char *code);

static int fail(gw_envoy_ptr f, const gw_body *b, uint32_t status, const char *message,
                const char *type, const char *code) {
  return reply(f, b, status, message, strlen(message), type, code);
}

/* A message built from pieces (at most a few KiB: model names are shown() or known). */
static int fail_with(gw_envoy_ptr f, const gw_body *b, uint32_t status, const char *before,
                     gw_buffer middle, const char *after, const char *type, const char *code) {
  gw_out m = {0};
  gw_out_append(&m, before, strlen(before));
  gw_out_append(&m, middle.ptr, middle.length);
  gw_out_append(&m, after, strlen(after));
  int done = reply(f, b, status, m.failed ? "" : m.ptr, m.failed ? 0 : m.length, type, code);
  gw_out_free(&m);
  return done;
}

static int too_large(gw_envoy_ptr f, const gw_body *b, const char *what, long long bytes,
                     const char *code) {
  char message[128];
  int n = snprintf(message, sizeof message, "The %s larger than %lld bytes.", what, bytes);
  return reply(f, b, 413, message, n > 0 ? (size_t)n : 0, "invalid_request_error", code);
}

/* The request's values outgrew their arena (a bound proportional to the body): the body is
 * too large to serve. */
static bool out_of_memory(gw_envoy_ptr f, const gw_body *b, const gb_route *r) {
  too_large(f, b, "request body is", r->max_bytes, "request_too_large");
  return false;
}

/* ---- access (access.lua) ----------------------------------------------------------------- */

static bool listed(const gb_text *list, size_t count, const char *p, size_t n) {
  for (size_t i = 0; i < count; i++)
    if (list[i].length == n && memcmp(list[i].ptr, p, n) == 0) return true;
  return false;
}

static bool is(gw_buffer v, const char *s) {
  return v.length == strlen(s) && memcmp(v.ptr, s, v.length) == 0;
}

/* The consumer (into *consumer) or a local reply already sent (returns false). */
static bool decide_access(gw_envoy_ptr f, const gw_body *b, const gb_route *r,
                          gw_buffer principal, gw_buffer *consumer) {
  const char *colon = principal.length > 0 ? memchr(principal.ptr, ':', principal.length) : NULL;
  bool via_key = false, via_token = false, via_other = false, found = false;
  gw_buffer name = {NULL, 0};
  if (colon != NULL && colon > principal.ptr) {
    gw_buffer via = {principal.ptr, (size_t)(colon - principal.ptr)};
    name = (gw_buffer){colon + 1, principal.length - via.length - 1};
    via_key = is(via, "c");
    via_token = is(via, "token");
    via_other = !via_key && !via_token;
    if (via_key) found = r->keys_ok;
    else if (via_other) found = listed(r->jwt, r->jwt_count, via.ptr, via.length);
  }
  if (!found && r->needs_auth) {
    if (via_key)
      fail(f, b, 401, "This model does not accept API keys: send a bearer token from its issuer.",
           "authentication_error", "invalid_api_key");
    else if (via_other)
      fail(f, b, 401, "This model does not accept tokens from this issuer.",
           "authentication_error", "invalid_token");
    else if (is(principal, "token:expired"))
      fail(f, b, 401, "The bearer token has expired.", "authentication_error", "token_expired");
    else if (is(principal, "token:invalid"))
      fail(f, b, 401,
           "The bearer token is not valid for this gateway (signature, issuer or audience).",
           "authentication_error", "invalid_token");
    else if (is(principal, "token:unknown"))
      fail(f, b, 403, "The bearer token names no consumer of this gateway.", "permission_error",
           "consumer_not_allowed");
    else if (is(principal, "invalid"))
      fail(f, b, 401, "Invalid API key.", "authentication_error", "invalid_api_key");
    else if (r->jwt_count > 0 && !r->keys_ok)
      fail(f, b, 401, "Missing bearer token: send `Authorization: Bearer <token>`.",
           "authentication_error", "missing_api_key");
    else
      fail(f, b, 401, "Missing API key: send `Authorization: Bearer <key>` or `x-api-key`.",
           "authentication_error", "missing_api_key");
    return false;
  }
  if (r->has_allow && (!found || !listed(r->allow, r->allow_count, name.ptr, name.length))) {
    fail_with(f, b, 403, "This consumer may not use the model `", text_buf(r->public_name),
              "`.", "permission_error", "consumer_not_allowed");
    return false;
  }
  *consumer = found ? name : BUF("anonymous");
  return true;
}

/* ---- prompts (prompts.lua) ------------------------------------------------------------- */

static uint64_t next_random(void) {
  static __thread uint64_t state;
  if (state == 0) { /* seeded once per thread from the kernel, else the clock and the thread */
    if (getrandom(&state, sizeof state, GRND_NONBLOCK) != (ssize_t)sizeof state) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      state = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)&state;
    }
    state |= 1;
  }
  state ^= state << 13; /* xorshift64 */
  state ^= state >> 7;
  state ^= state << 17;
  return state;
}

static const gb_version *pick_version(const gb_prompt *p) {
  long long roll = (long long)(next_random() % 100) + 1, acc = 0;
  for (size_t i = 0; i < p->version_count; i++) {
    acc += p->versions[i].weight;
    if (roll <= acc) return &p->versions[i];
  }
  return &p->versions[p->version_count - 1];
}

static const gv_value *variable(const gv_value *vars, gb_text name) {
  const gv_value *v = vars != NULL ? gv_get(vars, name.ptr, name.length) : NULL;
  return v != NULL && v->type != GV_NULL ? v : NULL;
}

enum { RENDERED, MISSING, TOO_LARGE, NO_MEMORY };

/* prompts.render: the text into out; MISSING sets *missing. */
static int render_prompt(const gb_version *v, const gv_value *vars, long long limit, gw_out *out,
                         const gb_text **missing) {
  for (size_t i = 0; i < v->required_count; i++) {
    if (variable(vars, v->required[i]) == NULL) {
      *missing = &v->required[i];
      return MISSING;
    }
  }
  out->limit = (size_t)limit;
  for (size_t i = 0; i < v->part_count && !out->failed; i++) {
    const gb_part *part = &v->parts[i];
    const gv_value *value = part->is_var ? variable(vars, part->text) : NULL;
    if (!part->is_var) gw_out_append(out, part->text.ptr, part->text.length);
    else if (value == NULL && part->has_default)
      gw_out_append(out, part->fallback.ptr, part->fallback.length);
    else if (value != NULL && value->type == GV_STRING)
      gw_out_append(out, value->string, value->length);
    else if (value != NULL && !gv_encode(value, NULL, out))
      return NO_MEMORY;
  }
  /* past the limit (or out of memory, which a bounded text only reaches past it) */
  if (out->failed) return TOO_LARGE;
  out->limit = 0;
  return RENDERED;
}

/* ---- the provider's credential (secrets.lua's set_credential) -------------------------- */

static bool is_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

static void load_credential(gb_credential *c, long long now, long long ttl) {
  free(c->value);
  c->value = NULL;
  c->value_length = 0;
  c->loaded = true;
  c->expires = now + ttl;
  FILE *file = fopen(c->file.ptr, "rb");
  if (file == NULL) return;
  char data[8192];
  size_t n = fread(data, 1, sizeof data, file);
  bool whole = feof(file) && !ferror(file);
  fclose(file);
  size_t start = 0;
  while (start < n && is_space((unsigned char)data[start])) start++;
  while (n > start && is_space((unsigned char)data[n - 1])) n--;
  if (!whole || n == start) return;
  c->value = malloc(c->prefix.length + n - start);
  if (c->value == NULL) return;
  memcpy(c->value, c->prefix.ptr, c->prefix.length);
  memcpy(c->value + c->prefix.length, data + start, n - start);
  c->value_length = c->prefix.length + n - start;
}

/* The header is set under the lock (its value may be replaced by another worker's reload). */
static void set_credential(gw_envoy_ptr f, gw_body *b, gb_credential *c) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  pthread_mutex_lock(&b->lock);
  if (!c->loaded || (long long)ts.tv_sec >= c->expires)
    load_credential(c, (long long)ts.tv_sec, b->secret_ttl_s);
  if (c->value != NULL) set_header(f, c->header, (gw_buffer){c->value, c->value_length});
  pthread_mutex_unlock(&b->lock);
}

/* ---- the request --------------------------------------------------------------------------- */

int gw_body_request_headers(gw_envoy_ptr f, gw_body_stream *s, bool end_of_stream) {
  const gw_body *b = s->body;
  gw_buffer method, path;
  s->endpoint = -1;
  if (!get_header(f, BUF(":method"), &method) || !is(method, "POST") ||
      !get_header(f, BUF(":path"), &path))
    return GW_HEADERS_CONTINUE;
  const char *query = path.length > 0 ? memchr(path.ptr, '?', path.length) : NULL;
  size_t n = query != NULL ? (size_t)(query - path.ptr) : path.length;
  for (size_t i = 0; i < b->endpoint_count; i++)
    if (b->endpoints[i].path.length == n && memcmp(b->endpoints[i].path.ptr, path.ptr, n) == 0)
      s->endpoint = (int)i;
  if (s->endpoint < 0) return GW_HEADERS_CONTINUE;
  if (end_of_stream) {
    fail(f, b, 400, "The request body must be a JSON object.", "invalid_request_error",
         "invalid_body");
    return GW_HEADERS_STOP_ITERATION;
  }
  return GW_HEADERS_STOP_ITERATION; /* until the body is here */
}

/* The whole body (the chunks of `first`, if not -1, then of `second`), contiguous: Envoy's own
 * slice when the body is one slice (the usual case), else a copy in *copy. False: no memory. */
bool gb_body_bytes(gw_envoy_ptr f, int first, int second, gw_out *copy, gw_buffer *out) {
  size_t counts[2] = {first >= 0 ? envoy_dynamic_module_callback_http_get_body_chunks_size(f, first)
                                 : 0,
                      envoy_dynamic_module_callback_http_get_body_chunks_size(f, second)};
  int types[2] = {first, second};
  *out = (gw_buffer){"", 0};
  if (counts[0] + counts[1] == 1) {
    gw_buffer one = {NULL, 0};
    if (envoy_dynamic_module_callback_http_get_body_chunks(f, types[counts[0] == 1 ? 0 : 1],
                                                           &one) &&
        one.ptr != NULL)
      *out = one;
    return true;
  }
  for (int t = 0; t < 2; t++) {
    if (counts[t] == 0) continue;
    gw_buffer *chunks = calloc(counts[t], sizeof *chunks);
    if (chunks == NULL) return false;
    bool ok = envoy_dynamic_module_callback_http_get_body_chunks(f, types[t], chunks);
    for (size_t i = 0; ok && i < counts[t]; i++)
      gw_out_append(copy, chunks[i].ptr, chunks[i].length);
    free(chunks);
    if (!ok || copy->failed) return false;
  }
  if (copy->ptr != NULL) *out = (gw_buffer){copy->ptr, copy->length};
  return true;
}

static void set_length(gw_envoy_ptr f, size_t bytes) {
  char length[32];
  set_header_raw(f, BUF("content-length"),
                 (gw_buffer){length, gb_format_int((long long)bytes, length)});
}

/* As Envoy's buffer filter does once it has the whole body: a request without Content-Length
 * (chunked) gets one, so the provider (or the Lua body filter after this one) sees the same
 * framing as behind the buffer filter, which a module gateway does without
 * (listener.module_bounds_bodies). */
static void ensure_length(gw_envoy_ptr f, size_t bytes) {
  gw_buffer sent;
  if (!get_header(f, BUF("content-length"), &sent)) set_length(f, bytes);
}

static void replace_body(gw_envoy_ptr f, bool buffered, gw_buffer raw, gw_out *out) {
  if (out->length == raw.length && memcmp(out->ptr, raw.ptr, raw.length) == 0) {
    ensure_length(f, out->length);  /* the body as sent: only a chunked one needs a length */
    return;
  }
  if (buffered) {
    size_t held = envoy_dynamic_module_callback_http_get_body_size(f, GW_BUFFERED_REQUEST_BODY);
    envoy_dynamic_module_callback_http_drain_body(f, GW_BUFFERED_REQUEST_BODY, held);
  }
  size_t got = envoy_dynamic_module_callback_http_get_body_size(f, GW_RECEIVED_REQUEST_BODY);
  envoy_dynamic_module_callback_http_drain_body(f, GW_RECEIVED_REQUEST_BODY, got);
  envoy_dynamic_module_callback_http_append_body(f, GW_RECEIVED_REQUEST_BODY, out_buf(out));
  /* as Lua's body:setBytes does: the length is the new body's, whether or not one was sent */
  set_length(f, out->length);
}

/* gateway.lua's rebuild: `model` first, then the client's members but `model` and
 * `prompt_variables`, byte for byte. */
static void rebuild(gw_buffer raw, const gv_span *spans, size_t count, gb_text model,
                    gw_out *out) {
  gw_out_append(out, "{\"model\":", 9);
  gv_encode_string(model.ptr, model.length, out);
  for (size_t i = 0; i < count; i++) {
    const gv_span *m = &spans[i];
    if ((m->key_length == 5 && memcmp(m->key, "model", 5) == 0) ||
        (m->key_length == 16 && memcmp(m->key, "prompt_variables", 16) == 0))
      continue;
    gw_out_append(out, ",", 1);
    gw_out_append(out, raw.ptr + m->first, m->last - m->first);
  }
  gw_out_append(out, "}", 1);
}

typedef struct {
  gv_doc *doc;
  gw_out raw, text, out;
} work;

/* The prompt of the route into the request; false when a reply was sent. */
static bool inject_prompt(gw_envoy_ptr f, gw_body_stream *s, const gb_route *r, int endpoint,
                          gv_value *req, const gv_value *vars, work *w, bool *reencode) {
  const gw_body *b = s->body;
  if (vars != NULL && vars->type != GV_OBJECT) {
    fail(f, b, 400, "`prompt_variables` must be an object.", "invalid_request_error",
         "invalid_prompt_variables");
    return false;
  }
  const gb_version *version = pick_version(r->prompt);
  const gb_text *missing = NULL;
  int rendered = render_prompt(version, vars, r->max_bytes, &w->text, &missing);
  if (rendered != RENDERED && rendered != MISSING) {
    too_large(f, b, "rendered prompt would be", r->max_bytes, "prompt_too_large");
    return false;
  }
  if (rendered == MISSING) {
    fail_with(f, b, 400, "Missing required prompt variable `", text_buf(*missing),
              "` in `prompt_variables`.", "invalid_request_error", "missing_prompt_variable");
    return false;
  }
  if (endpoint == GB_CHAT) {
    gv_value *messages = gv_get(req, "messages", 8);
    gv_value *system = gv_new_object(w->doc), *role = gv_new_string(w->doc, "system", 6),
             *content = gv_new_string(w->doc, w->text.ptr, w->text.length);
    if (messages == NULL || messages->type != GV_ARRAY) {
      messages = gv_new_array(w->doc);
      if (messages != NULL && !gv_set(w->doc, req, "messages", 8, messages)) messages = NULL;
    }
    if (messages == NULL || system == NULL || role == NULL || content == NULL ||
        !gv_set(w->doc, system, "role", 4, role) ||
        !gv_set(w->doc, system, "content", 7, content) ||
        !gv_array_insert(w->doc, messages, 0, system))
      return out_of_memory(f, b, r);
    *reencode = true;
  } else if (endpoint == GB_COMPLETIONS) {
    gv_value *prompt = gv_get(req, "prompt", 6);
    if (prompt != NULL && prompt->type == GV_STRING) {
      gw_out_append(&w->text, "\n\n", 2);
      gw_out_append(&w->text, prompt->string, prompt->length);
      gv_value *joined = gv_new_string(w->doc, w->text.ptr, w->text.length);
      if (w->text.failed || joined == NULL || !gv_set(w->doc, req, "prompt", 6, joined))
        return out_of_memory(f, b, r);
      *reencode = true;
    }
  }
  set_meta(b, GB_LOG_PROMPT, text_buf(r->prompt->name));
  /* `prompt_version` is written by serve() once it knows whether the request goes on (the
   * logger's record alone, where only the logger reads it) or gets a reply (Envoy's
   * metadata: the logger takes a served request's values only) */
  s->has_prompt_version = true;
  s->prompt_version = version->version;
  return true;
}

/* Everything after the route is known; false when a reply was sent. */
/* tokens.lua's carry: each limit's debt into its charge header, and into the stream for a
 * refund on the response. */
static void carry_debt(gw_envoy_ptr f, gw_body_stream *s, const gb_route *r) {
  for (size_t i = 0; i < r->limit_count; i++) {
    const gb_token_limit *l = &r->limits[i];
    gw_out key = {0};
    gw_out_append(&key, l->key.ptr, l->key.length);
    gw_out_append(&key, "|", 1);
    gw_out_append(&key, r->name.ptr, r->name.length);
    gw_out_append(&key, "|", 1);
    if (l->by_consumer) gw_out_append(&key, s->consumer, s->consumer_length);
    double pending = key.failed ? 0
                                : gb_debt_take(s->body,
                                               envoy_dynamic_module_callback_http_filter_get_worker_index(f),
                                               key.ptr, key.length);
    gw_out_free(&key);
    double carried = pending < l->max - 1 ? pending : l->max - 1;
    s->carried[i] = carried; /* for a refund (the Lua keeps it in gw.internal, for its own) */
    s->charges[i] = (uint64_t)(1 + carried);
    if (r->module_limits) continue; /* the module's `limits` filter charges it (gw_limits.h) */
    char value[32];
    set_header(f, l->header, (gw_buffer){value, gb_format_number(1 + carried, value)});
  }
}

/* No memory after the prompt was injected: the reply's log line shows the version (Envoy's
 * metadata: the logger takes a served request's values only). */
static bool late_reply(gw_envoy_ptr f, gw_body_stream *s, const gb_route *r) {
  if (s->has_prompt_version)
    gw_meta_number(f, s, NULL, GB_LOG_PROMPT_VERSION, (double)s->prompt_version);
  return out_of_memory(f, s->body, r);
}

static bool serve(gw_envoy_ptr f, gw_body_stream *s, const gb_route *r, int endpoint,
                  gw_buffer raw,
                  gv_value *req, const gv_span *spans, size_t span_count, bool unique,
                  work *w) {
  gw_body *b = s->body;
  if ((long long)raw.length > r->max_bytes) {
    too_large(f, b, "request body is", r->max_bytes, "request_too_large");
    return false;
  }
  gw_buffer principal, consumer;
  if (!get_header(f, text_buf(b->principal_header), &principal)) principal = BUF("none");
  if (!decide_access(f, b, r, principal, &consumer)) return false;
  if (consumer.length > sizeof s->consumer) { /* no consumer has such a name */
    fail(f, b, 403, "This consumer may not use any model of this gateway.", "permission_error",
         "consumer_not_allowed");
    return false;
  }
  set_meta(b, GB_LOG_CONSUMER, consumer);
  /* the consumer's bytes live in the principal header, which goes below: copied first */
  memcpy(s->consumer, consumer.ptr, consumer.length);
  s->consumer_length = consumer.length;
  gw_buffer who = {s->consumer, s->consumer_length};
  for (size_t i = 0; i < b->key_header_count; i++) set_header(f, b->key_headers[i], BUF(""));

  /* a repeated key anywhere re-encodes: what the provider reads is what the gateway checked */
  bool reencode = !unique;
  gv_value *vars = gv_get(req, "prompt_variables", 16);
  if (vars != NULL) gv_remove(req, "prompt_variables", 16);
  bool ok = true;
  if (r->prompt != NULL) ok = inject_prompt(f, s, r, endpoint, req, vars, w, &reencode);
  if (ok && r->has_guard) {
    gw_out joined = {0};
    gv_guard_text(req, &joined);
    gw_carried_text(joined.ptr != NULL ? joined.ptr : "", joined.length, &w->out);
    gw_out_free(&joined);
    gw_header guard[] = {{text_buf(b->guard_set_key), text_buf(r->guard)},
                         {text_buf(b->guard_text_key), w->out.failed ? BUF("") : out_buf(&w->out)}};
    envoy_dynamic_module_callback_http_set_dynamic_metadata_string_batch(
        f, text_buf(b->internal_ns), guard, 2);
    w->out.length = 0;
  }
  if (ok && r->redact != 0 && gv_redact(w->doc, req, r->redact)) reencode = true;
  /* past the values' arena bound: a mutation may be undone, so the body is not sent on */
  if (ok && gv_doc_failed(w->doc)) ok = late_reply(f, s, r);
  if (ok) carry_debt(f, s, r);
  if (ok) {
    gb_text forward = r->has_direct ? r->direct_upstream
                                    : (gb_text){(char *)gv_get(req, "model", 5)->string,
                                                gv_get(req, "model", 5)->length};
    if (reencode) {
      gv_value *model = gv_new_string(w->doc, forward.ptr, forward.length);
      ok = model != NULL && gv_set(w->doc, req, "model", 5, model) &&
           gv_encode(req, "model", &w->out);
    } else {
      rebuild(raw, spans, span_count, forward, &w->out);
    }
    if (!ok || w->out.failed) ok = late_reply(f, s, r);
  }
  if (ok && s->has_prompt_version) /* the record's alone where only the logger reads it */
    gw_meta_number(f, s, r, GB_LOG_PROMPT_VERSION, (double)s->prompt_version);
  if (ok) {
    /* the logger's record; Envoy's metadata gets the values other readers need */
    size_t written = 0;
    for (size_t i = 0; i < pending.count; i++)
      if (gw_log_note_string(f, s, r, pending.ids[i], pending.entries[i].value))
        pending.entries[written++] = pending.entries[i];
    pending.count = written;
    flush_meta(f, b->metadata_ns);
    replace_body(f, s->buffered, raw, &w->out);
    set_header(f, b->route_header, text_buf(r->name));
    if (r->consumer_header) set_header(f, b->consumer_header, who);
    if (r->pinned) {
      set_header(f, (gb_text){":authority", 10}, text_buf(r->authority));
      if (r->credential != NULL) set_credential(f, b, r->credential);
    } else if (r->has_direct) {
      set_header(f, b->body_model_header, text_buf(r->direct_model));
    }
    envoy_dynamic_module_callback_http_clear_route_cache(f);
    s->route = r; /* the response is this filter's */
  }
  return ok;
}

int gw_body_request_body(gw_envoy_ptr f, gw_body_stream *s, bool end_of_stream) {
  if (s->endpoint < 0) return GW_BODY_CONTINUE;
  if (!end_of_stream) {
    s->buffered = true;
    return GW_BODY_STOP_AND_BUFFER;
  }
  gw_body *b = s->body;
  int endpoint = b->endpoints[s->endpoint].kind;
  s->endpoint = -1; /* read once */
  work w = {0};
  pending.count = 0;
  gw_buffer raw;
  if (!gb_body_bytes(f, s->buffered ? GW_BUFFERED_REQUEST_BODY : -1, GW_RECEIVED_REQUEST_BODY,
                     &w.raw, &raw)) {
    /* no memory for a copy: Envoy's 500 rather than a request the filter did not check */
    fail(f, b, 500, "The gateway could not read the request body.", "server_error",
         "internal_error");
    gw_out_free(&w.raw);
    return GW_BODY_STOP_NO_BUFFER;
  }
  if (raw.length == 0) {
    fail(f, b, 400, "The request body must be a JSON object.", "invalid_request_error",
         "invalid_body");
    gw_out_free(&w.raw);
    return GW_BODY_STOP_NO_BUFFER;
  }
  int status = GW_BODY_CONTINUE;
  gv_span *spans = NULL;
  size_t span_count = 0;
  bool unique = true;
  const char *error = NULL;
  w.doc = gv_doc_new(raw.length);
  gv_value *req = w.doc == NULL ? NULL
                                : gv_decode_members(w.doc, raw.ptr, raw.length, &spans,
                                                    &span_count, &unique, &error);
  const gv_value *model = req != NULL ? gv_get(req, "model", 5) : NULL;
  const gb_route *route = NULL;
  if (req == NULL) {
    status = fail(f, b, 400, "The request body is not a valid JSON object.",
                  "invalid_request_error", "invalid_json");
  } else if (model == NULL || model->type != GV_STRING) {
    status = fail(f, b, 400, "The request must name a `model`.", "invalid_request_error",
                  "missing_model");
  } else if (!gb_find_model(b, model->string, model->length, &route)) {
    gw_shown(model->string, model->length, &w.text);
    gw_buffer shown = w.text.failed ? BUF("") : out_buf(&w.text);
    set_meta(b, GB_LOG_REQUESTED_MODEL, shown);
    status = fail_with(f, b, 404, "The model `", shown, "` does not exist.",
                       "invalid_request_error", "model_not_found");
  } else if (route == NULL) {
    ensure_length(f, raw.length); /* the Lua body filter's route: the body goes on untouched */
  } else {
    /* a route's public name: known, short, valid UTF-8 */
    set_meta(b, GB_LOG_REQUESTED_MODEL, (gw_buffer){model->string, model->length});
    set_meta(b, GB_LOG_ROUTE, text_buf(route->name));
    if (!serve(f, s, route, endpoint, raw, req, spans, span_count, unique, &w))
      status = GW_BODY_STOP_NO_BUFFER;
  }
  gv_doc_free(w.doc);
  gw_out_free(&w.raw);
  gw_out_free(&w.text);
  gw_out_free(&w.out);
  return status;
}
