/* The auth filter, compiled: what lua/auth.lua does with secrets.lua's consumer keys, from
 * the request headers alone, before any body is read (docs/data-plane.md, "Authentication").
 *
 * For a POST to an OpenAI endpoint: the presented key (`Authorization: Bearer`, then each
 * other key header, trimmed) names a consumer through the consumers' key files; no route open
 * to the principal is a local reply (401 missing or unknown key, 403 a consumer no route
 * allows, 413 a Content-Length over the principal's body bound, 415 a Content-Encoding other
 * than identity), with the same bodies and
 * headers as the Lua's; otherwise the principal goes into x-gw-principal (`c:<consumer>`,
 * `invalid`, `none`) and the body class of its bound into x-gw-route (route cache cleared),
 * or, with the config's `buffer_headroom` (no buffer filter in the chain), the stream's buffer
 * limit is set to the bound plus that headroom instead.
 *
 * The key files are read again together once secret_ttl_s has passed (a rotated Secret
 * applies within that time without a reload), once per filter config for all workers, under
 * a mutex; an unreadable or empty file names no consumer; a key shared by several consumers
 * names the last one in the config's order (secrets.lua's semantics). Keys are held in memory
 * only, never logged. On a gateway with JWT policies, a request whose key names no consumer
 * gets its principal from jwt_authn's verdict (gw_jwt.c): `<provider>:<consumer>`, or
 * `token:<expired|invalid|unknown>` with the anonymous bound, or the Lua's 401/403 without
 * one. */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw_module.h"

#define MAX_KEY_HEADERS 8
#define MAX_KEY_FILE_BYTES 65536

typedef struct {
  char *ptr;
  size_t length;
} text;

typedef struct {
  text name;
  char *file;
  bool has_cap;
  long long cap;
  char *key; /* the file's trimmed content, or NULL: guarded by gw_auth.lock */
  size_t key_length;
} consumer;

typedef struct {
  long long cap;
  text route; /* the x-gw-route key of the body class */
} body_class;

struct gw_auth {
  text key_headers[MAX_KEY_HEADERS];
  size_t key_header_count;
  text principal_header, route_header, metadata_ns, reply_header;
  text *endpoints;
  size_t endpoint_count;
  consumer *consumers;
  size_t consumer_count;
  body_class *classes;
  size_t class_count;
  long long secret_ttl_s, first_cap, anonymous_cap;
  bool has_anonymous_cap;
  /* -1: Envoy's buffer filter bounds the body (its body classes); else this filter sets the
   * stream's buffer limit to the principal's bound plus this many bytes */
  long long buffer_headroom;
  pthread_mutex_t lock;
  bool lock_ready;
  bool keys_loaded;
  long long keys_expire; /* monotonic seconds */
  gw_jwt *jwt;           /* NULL: no JWT policy */
};

#define BUF(s) ((gw_buffer){(s), sizeof(s) - 1})

static gw_buffer buf(text t) { return (gw_buffer){t.ptr, t.length}; }

/* ---- config ------------------------------------------------------------------------------ */

static bool copy_string(const gj_node *node, text *out) {
  if (node == NULL || node->type != GJ_STRING || node->length == 0) return false;
  out->ptr = malloc(node->length + 1);
  if (out->ptr == NULL) return false;
  memcpy(out->ptr, node->string, node->length + 1);
  out->length = node->length;
  return true;
}

static bool read_int(const gj_node *node, long long min, long long *out) {
  if (node == NULL || node->type != GJ_NUMBER || node->number < min) return false;
  *out = node->number;
  return true;
}

static bool load_names(gw_auth *a, const gj_node *names) {
  const gj_node *headers = gj_get(names, "client_key_headers");
  if (headers == NULL || headers->type != GJ_ARRAY || headers->count == 0 ||
      headers->count > MAX_KEY_HEADERS)
    return false;
  for (const gj_node *h = headers->first; h != NULL; h = h->next)
    if (!copy_string(h, &a->key_headers[a->key_header_count++])) return false;
  return copy_string(gj_get(names, "principal_header"), &a->principal_header) &&
         copy_string(gj_get(names, "route_header"), &a->route_header) &&
         copy_string(gj_get(names, "metadata_ns"), &a->metadata_ns) &&
         copy_string(gj_get(names, "reply_header"), &a->reply_header);
}

static bool load_endpoints(gw_auth *a, const gj_node *endpoints) {
  if (endpoints == NULL || endpoints->type != GJ_OBJECT || endpoints->count == 0) return false;
  a->endpoints = calloc(endpoints->count, sizeof(text));
  if (a->endpoints == NULL) return false;
  for (const gj_node *e = endpoints->first; e != NULL; e = e->next) {
    text *t = &a->endpoints[a->endpoint_count++];
    t->ptr = malloc(e->key_length + 1);
    if (t->ptr == NULL) return false;
    memcpy(t->ptr, e->key, e->key_length + 1);
    t->length = e->key_length;
  }
  return true;
}

static bool load_consumers(gw_auth *a, const gj_node *list, const gj_node *caps) {
  if (list == NULL || list->type != GJ_ARRAY || caps == NULL || caps->type != GJ_OBJECT)
    return false;
  for (const gj_node *c = caps->first; c != NULL; c = c->next)
    if (c->type != GJ_NUMBER || c->number < 0) return false;
  if (list->count == 0) return true;
  a->consumers = calloc(list->count, sizeof(consumer));
  if (a->consumers == NULL) return false;
  for (const gj_node *c = list->first; c != NULL; c = c->next) {
    consumer *out = &a->consumers[a->consumer_count++];
    text file = {0};
    if (!copy_string(gj_get(c, "name"), &out->name) || !copy_string(gj_get(c, "file"), &file))
      return false;
    out->file = file.ptr;
    if (out->name.length > GW_MAX_NAME_BYTES) return false;
    const gj_node *cap = gj_get(caps, out->name.ptr);
    if (cap != NULL) {
      out->has_cap = true;
      out->cap = cap->number;
    }
  }
  return true;
}

static bool load_classes(gw_auth *a, const gj_node *classes) {
  if (classes == NULL || classes->type != GJ_OBJECT) return false;
  if (classes->count == 0) return true;
  a->classes = calloc(classes->count, sizeof(body_class));
  if (a->classes == NULL) return false;
  for (const gj_node *c = classes->first; c != NULL; c = c->next) {
    body_class *out = &a->classes[a->class_count++];
    /* the key is the bound in decimal digits: at most 15 of them (below 2^53) */
    if (c->key_length == 0 || c->key_length > 15) return false;
    long long cap = 0;
    for (size_t i = 0; i < c->key_length; i++) {
      if (c->key[i] < '0' || c->key[i] > '9') return false;
      cap = cap * 10 + (c->key[i] - '0');
    }
    out->cap = cap;
    if (!copy_string(c, &out->route)) return false;
  }
  return true;
}

void gw_auth_destroy(gw_auth *a) {
  if (a == NULL) return;
  for (size_t i = 0; i < a->key_header_count; i++) free(a->key_headers[i].ptr);
  free(a->principal_header.ptr);
  free(a->route_header.ptr);
  free(a->metadata_ns.ptr);
  free(a->reply_header.ptr);
  for (size_t i = 0; i < a->endpoint_count; i++) free(a->endpoints[i].ptr);
  free(a->endpoints);
  for (size_t i = 0; i < a->consumer_count; i++) {
    free(a->consumers[i].name.ptr);
    free(a->consumers[i].file);
    free(a->consumers[i].key);
  }
  free(a->consumers);
  for (size_t i = 0; i < a->class_count; i++) free(a->classes[i].route.ptr);
  free(a->classes);
  gw_jwt_destroy(a->jwt);
  if (a->lock_ready) pthread_mutex_destroy(&a->lock);
  free(a);
}

gw_auth *gw_auth_new(const gj_node *config) {
  gw_auth *a = calloc(1, sizeof *a);
  if (a == NULL) return NULL;
  const gj_node *anonymous = gj_get(config, "anonymous_cap");
  const gj_node *headroom = gj_get(config, "buffer_headroom");
  a->buffer_headroom = -1;
  bool ok = (headroom == NULL || read_int(headroom, 0, &a->buffer_headroom)) && load_names(a, gj_get(config, "names")) &&
            load_endpoints(a, gj_get(config, "endpoints")) &&
            load_consumers(a, gj_get(config, "consumers"), gj_get(config, "consumer_caps")) &&
            load_classes(a, gj_get(config, "body_classes")) &&
            read_int(gj_get(config, "secret_ttl_s"), 0, &a->secret_ttl_s) &&
            read_int(gj_get(config, "first_cap"), 0, &a->first_cap) &&
            (anonymous == NULL || anonymous->type == GJ_NULL ||
             (a->has_anonymous_cap = read_int(anonymous, 0, &a->anonymous_cap))) &&
            gw_jwt_load(gj_get(config, "jwt"), gj_get(config, "jwt_consumers"),
                        gj_get(config, "jwt_caps"), &a->jwt) &&
            pthread_mutex_init(&a->lock, NULL) == 0;
  if (!ok) {
    gw_auth_destroy(a);
    return NULL;
  }
  a->lock_ready = true;
  return a;
}

/* ---- the consumers' key files -------------------------------------------------------------- */

static bool is_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* The file's content without surrounding whitespace (malloc'd, length in *length); NULL if it
 * cannot be read, is larger than MAX_KEY_FILE_BYTES or is empty once trimmed. */
static char *read_key_file(const char *path, size_t *length) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  char *data = malloc(MAX_KEY_FILE_BYTES + 1);
  size_t n = data == NULL ? 0 : fread(data, 1, MAX_KEY_FILE_BYTES + 1, f);
  bool failed = data == NULL || ferror(f) || n > MAX_KEY_FILE_BYTES;
  fclose(f);
  if (failed) {
    free(data);
    return NULL;
  }
  size_t start = 0, end = n;
  while (start < end && is_space((unsigned char)data[start])) start++;
  while (end > start && is_space((unsigned char)data[end - 1])) end--;
  if (end == start) {
    free(data);
    return NULL;
  }
  memmove(data, data + start, end - start);
  *length = end - start;
  return data;
}

static long long now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec;
}

/* Equal bytes, in time that depends on the length only. */
static bool same_key(const char *a, const char *b, size_t n) {
  unsigned char diff = 0;
  for (size_t i = 0; i < n; i++) diff |= (unsigned char)(a[i] ^ b[i]);
  return diff == 0;
}

/* The consumer the key names (the last in config order whose file holds it), or NULL. */
static const consumer *find_consumer(gw_auth *a, const char *key, size_t length) {
  const consumer *found = NULL;
  pthread_mutex_lock(&a->lock);
  long long now = now_s();
  if (!a->keys_loaded || now >= a->keys_expire) {
    for (size_t i = 0; i < a->consumer_count; i++) {
      consumer *c = &a->consumers[i];
      free(c->key);
      c->key_length = 0;
      c->key = read_key_file(c->file, &c->key_length);
    }
    a->keys_loaded = true;
    a->keys_expire = now + a->secret_ttl_s;
  }
  for (size_t i = a->consumer_count; i-- > 0;) {
    const consumer *c = &a->consumers[i];
    if (c->key != NULL && c->key_length == length && same_key(c->key, key, length)) {
      found = c;
      break;
    }
  }
  pthread_mutex_unlock(&a->lock);
  return found;
}

/* ---- the request ----------------------------------------------------------------------------- */

bool gw_request_header(gw_envoy_ptr filter, gw_buffer name, gw_header_value *out) {
  gw_buffer value = {NULL, 0};
  size_t count = 0;
  out->owned = NULL;
  if (!envoy_dynamic_module_callback_http_get_header(filter, GW_REQUEST_HEADERS, name, &value, 0,
                                                     &count) ||
      count == 0)
    return false;
  out->ptr = value.ptr != NULL ? value.ptr : "";
  out->length = value.ptr != NULL ? value.length : 0;
  if (count == 1) return true;
  size_t total = 0;
  for (size_t i = 0; i < count; i++) {
    gw_buffer v = {NULL, 0};
    size_t n = 0;
    if (envoy_dynamic_module_callback_http_get_header(filter, GW_REQUEST_HEADERS, name, &v, i,
                                                      &n) &&
        v.ptr != NULL)
      total += v.length;
    total += 1;
  }
  char *joined = malloc(total);
  if (joined == NULL) return true; /* the first value alone */
  size_t at = 0;
  for (size_t i = 0; i < count; i++) {
    gw_buffer v = {NULL, 0};
    size_t n = 0;
    if (i > 0) joined[at++] = ',';
    if (envoy_dynamic_module_callback_http_get_header(filter, GW_REQUEST_HEADERS, name, &v, i,
                                                      &n) &&
        v.ptr != NULL && v.length <= total - at) {
      memcpy(joined + at, v.ptr, v.length);
      at += v.length;
    }
  }
  out->ptr = out->owned = joined;
  out->length = at;
  return true;
}

static void trim(const char **p, size_t *n) {
  while (*n > 0 && is_space((unsigned char)**p)) {
    (*p)++;
    (*n)--;
  }
  while (*n > 0 && is_space((unsigned char)(*p)[*n - 1])) (*n)--;
}

/* Whether the `n` bytes at `p` are the lowercase `word` in any case (ASCII). */
static bool ascii_word_is(const char *p, const char *word, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    if (c != word[i]) return false;
  }
  return true;
}

static bool is_bearer(const char *p, size_t n) {
  return n >= 7 && is_space((unsigned char)p[6]) && ascii_word_is(p, "bearer", 6);
}

/* The presented key: `Authorization: Bearer <key>`, else the first other key header that is
 * not blank; trimmed. Its bytes live in `holder` (freed by the caller). */
static bool presented_key(gw_envoy_ptr filter, const gw_auth *a, gw_header_value *holder,
                          const char **key, size_t *length) {
  for (size_t i = 0; i < a->key_header_count; i++) {
    if (!gw_request_header(filter, buf(a->key_headers[i]), holder)) continue;
    const char *p = holder->ptr;
    size_t n = holder->length;
    if (i == 0) { /* authorization: only the Bearer scheme */
      if (is_bearer(p, n)) {
        p += 7;
        n -= 7;
      } else {
        n = 0;
      }
    }
    trim(&p, &n);
    if (n > 0) {
      *key = p;
      *length = n;
      return true;
    }
    free(holder->owned);
    holder->owned = NULL;
  }
  return false;
}

static bool is_endpoint(const gw_auth *a, const char *path, size_t n) {
  const char *query = memchr(path, '?', n);
  if (query != NULL) n = (size_t)(query - path);
  for (size_t i = 0; i < a->endpoint_count; i++)
    if (a->endpoints[i].length == n && memcmp(a->endpoints[i].ptr, path, n) == 0) return true;
  return false;
}

/* The request's Content-Length when it is all digits; -1 otherwise. Values past 10^18 are
 * read as 10^18 (over every bound). */
static long long content_length(gw_envoy_ptr filter) {
  gw_header_value v;
  if (!gw_request_header(filter, BUF("content-length"), &v)) return -1;
  long long value = v.length > 0 ? 0 : -1;
  for (size_t i = 0; i < v.length; i++) {
    if (v.ptr[i] < '0' || v.ptr[i] > '9') {
      value = -1;
      break;
    }
    if (value < 100000000000000000LL) value = value * 10 + (v.ptr[i] - '0');
    else value = 1000000000000000000LL;
  }
  free(v.owned);
  return value;
}

/* Whether the request says its body is coded (gzip, br, ...): a Content-Encoding that is not
 * blank and not `identity` (any case, trimmed; several values joined with `,`, as Lua's
 * headers:get joins them). */
#define UNSUPPORTED_CODING \
  "The request body must be sent without Content-Encoding: the gateway reads it as it is."

static bool coded_body(gw_envoy_ptr filter) {
  gw_header_value v;
  if (!gw_request_header(filter, BUF("content-encoding"), &v)) return false;
  const char *p = v.ptr;
  size_t n = v.length;
  trim(&p, &n);
  bool coded = n > 0 && !(n == 8 && ascii_word_is(p, "identity", 8));
  free(v.owned);
  return coded;
}

/* An OpenAI-style error as the local reply (the Lua's reply(): the same body and headers,
 * gw.local_reply set, the reply header on the request so the local_reply mappers leave it). */
static int reply(gw_envoy_ptr filter, const gw_auth *a, uint32_t status, const char *message,
                 const char *type, const char *code) {
  char body[512];
  int n = snprintf(body, sizeof body, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\",\"type\":\"%s\"}}",
                   code, message, type);
  if (n < 0 || (size_t)n >= sizeof body) n = 0;
  envoy_dynamic_module_callback_http_set_dynamic_metadata_bool(filter, buf(a->metadata_ns),
                                                               BUF("local_reply"), true);
  envoy_dynamic_module_callback_http_set_header(filter, GW_REQUEST_HEADERS, buf(a->reply_header),
                                                BUF("lua"));
  gw_header headers[] = {{BUF("content-type"), BUF("application/json")}};
  envoy_dynamic_module_callback_http_send_response(filter, status, headers, 1,
                                                   (gw_buffer){body, (size_t)n},
                                                   BUF("gatewayctl_auth"));
  return GW_HEADERS_STOP_ITERATION;
}

int gw_auth_request_headers(gw_envoy_ptr filter, gw_auth *a) {
  gw_header_value method, path;
  if (!gw_request_header(filter, BUF(":method"), &method)) return GW_HEADERS_CONTINUE;
  bool post = method.length == 4 && memcmp(method.ptr, "POST", 4) == 0;
  free(method.owned);
  if (!post || !gw_request_header(filter, BUF(":path"), &path)) return GW_HEADERS_CONTINUE;
  bool endpoint = is_endpoint(a, path.ptr, path.length);
  free(path.owned);
  if (!endpoint) return GW_HEADERS_CONTINUE;

  gw_header_value holder = {NULL, 0, NULL};
  const char *key = NULL;
  size_t key_length = 0;
  bool has_key = presented_key(filter, a, &holder, &key, &key_length);
  const consumer *c = has_key ? find_consumer(a, key, key_length) : NULL;
  free(holder.owned); /* the key is not used past here */

  /* `<provider>:<consumer>` at most: a provider's name is 63 bytes at most (gw_jwt.c) */
  char principal[GW_MAX_NAME_BYTES + 65];
  const char *principal_ptr;
  size_t principal_length;
  bool has_cap;
  long long cap;
  gw_jwt_result token = {.outcome = GW_JWT_NONE};
  if (c == NULL && a->jwt != NULL) gw_jwt_principal(filter, a->jwt, &token);
  if (c != NULL) {
    memcpy(principal, "c:", 2);
    memcpy(principal + 2, c->name.ptr, c->name.length);
    principal_ptr = principal;
    principal_length = 2 + c->name.length;
    has_cap = c->has_cap;
    cap = c->cap;
  } else if (token.outcome == GW_JWT_CONSUMER) {
    memcpy(principal, token.provider, token.provider_length);
    principal[token.provider_length] = ':';
    memcpy(principal + token.provider_length + 1, token.consumer, token.consumer_length);
    principal_ptr = principal;
    principal_length = token.provider_length + 1 + token.consumer_length;
    has_cap = token.has_cap;
    cap = token.cap;
  } else if (token.outcome != GW_JWT_NONE) {
    principal_ptr = token.outcome == GW_JWT_EXPIRED   ? "token:expired"
                    : token.outcome == GW_JWT_UNKNOWN ? "token:unknown"
                                                      : "token:invalid";
    principal_length = strlen(principal_ptr);
    has_cap = a->has_anonymous_cap;
    cap = a->anonymous_cap;
    if (!has_cap) {
      if (token.outcome == GW_JWT_UNKNOWN)
        return reply(filter, a, 403, "The bearer token names no consumer of this gateway.",
                     "permission_error", "consumer_not_allowed");
      if (token.outcome == GW_JWT_EXPIRED)
        return reply(filter, a, 401, "The bearer token has expired.", "authentication_error",
                     "token_expired");
      return reply(filter, a, 401,
                   "The bearer token is not valid for this gateway (signature, issuer or "
                   "audience).",
                   "authentication_error", "invalid_token");
    }
  } else {
    principal_ptr = has_key ? "invalid" : "none";
    principal_length = strlen(principal_ptr);
    has_cap = a->has_anonymous_cap;
    cap = a->anonymous_cap;
  }
  if (!has_cap) {
    if (c != NULL || token.outcome == GW_JWT_CONSUMER)
      return reply(filter, a, 403, "This consumer may not use any model of this gateway.",
                   "permission_error", "consumer_not_allowed");
    if (!has_key)
      return reply(filter, a, 401,
                   "Missing API key or bearer token: send `Authorization: Bearer <key>`.",
                   "authentication_error", "missing_api_key");
    return reply(filter, a, 401, "Invalid API key.", "authentication_error", "invalid_api_key");
  }
  long long length = content_length(filter);
  if (length > cap) {
    char message[96];
    snprintf(message, sizeof message, "The request body is larger than %lld bytes.", cap);
    return reply(filter, a, 413, message, "invalid_request_error", "request_too_large");
  }
  /* the guardrails read the body as sent: one the provider would decode first is refused */
  if (coded_body(filter))
    return reply(filter, a, 415, UNSUPPORTED_CODING, "invalid_request_error",
                 "unsupported_content_encoding");
  envoy_dynamic_module_callback_http_set_header(filter, GW_REQUEST_HEADERS,
                                                buf(a->principal_header),
                                                (gw_buffer){principal_ptr, principal_length});
  if (a->buffer_headroom >= 0) {
    /* what the buffer filter's per-route bound did: the stream buffers at most this, and a
     * body past it gets Envoy's 413 while the body filter buffers it (StopIterationAndBuffer);
     * the bound also holds the buffered reply the body filter reads usage from */
    envoy_dynamic_module_callback_http_set_buffer_limit(filter,
                                                        (uint64_t)(cap + a->buffer_headroom));
    return GW_HEADERS_CONTINUE;
  }
  if (cap != a->first_cap) {
    /* the route matched first (an endpoint POST) already has the default bound */
    for (size_t i = 0; i < a->class_count; i++) {
      if (a->classes[i].cap != cap) continue;
      envoy_dynamic_module_callback_http_set_header(filter, GW_REQUEST_HEADERS,
                                                    buf(a->route_header), buf(a->classes[i].route));
      envoy_dynamic_module_callback_http_clear_route_cache(filter);
      break;
    }
  }
  return GW_HEADERS_CONTINUE;
}
