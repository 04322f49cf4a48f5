/* The module's hooks: Envoy calls these by name (dlsym). The filter config is
 *   {"abi": <the ABI version the renderer targets>, ...the filter's data}
 * as a google.protobuf.StringValue; filter_name picks the filter. A config whose "abi" is not
 * this build's ABI version, or that does not parse, is refused (config_new returns NULL and
 * Envoy rejects the listener: "Failed to initialize dynamic module"), so a module built for
 * another Envoy never runs under a config rendered for this one. */
#include <stdlib.h>
#include <string.h>

#include "gw_module.h"

/* Kept in the library's read-only data for gatewayctl to read without loading it. */
__attribute__((used)) const char gw_module_marker[] = GW_MODULE_MARKER GW_ABI_VERSION;

const char *envoy_dynamic_module_on_program_init(void) { return GW_ABI_VERSION; }

static bool is(gw_buffer name, const char *want) {
  size_t n = strlen(want);
  return name.length == n && memcmp(name.ptr, want, n) == 0;
}

/* A filter config: its kind, then the filter's own config (and the body filter's counters). */
typedef struct {
  int kind;
  void *filter;
  gw_counters counters;
} config;

static int kind_of(gw_module_ptr self) { return *(const int *)self; }

static void destroy_filter(int kind, void *filter) {
  if (kind == GW_KIND_AUTH) gw_auth_destroy(filter);
  else if (kind == GW_KIND_BODY) gw_body_destroy(filter);
  else gw_limits_filter_destroy(filter);
}

gw_module_ptr envoy_dynamic_module_on_http_filter_config_new(gw_envoy_ptr envoy_config,
                                                             gw_buffer name, gw_buffer value) {
  int kind = is(name, "auth")     ? GW_KIND_AUTH
             : is(name, "body")   ? GW_KIND_BODY
             : is(name, "limits") ? GW_KIND_LIMITS
                                  : 0;
  if (kind == 0) return NULL;
  gj_node *root = gj_parse(value.ptr, value.length);
  const gj_node *abi = gj_get(root, "abi");
  void *filter = NULL;
  if (abi != NULL && abi->type == GJ_STRING && strcmp(abi->string, GW_ABI_VERSION) == 0)
    filter = kind == GW_KIND_AUTH   ? (void *)gw_auth_new(root)
             : kind == GW_KIND_BODY ? (void *)gw_body_new(root)
                                    : (void *)gw_limits_filter_new(envoy_config, root);
  gj_free(root);
  config *c = filter != NULL ? calloc(1, sizeof *c) : NULL;
  if (c != NULL && kind == GW_KIND_BODY && !gw_counters_define(envoy_config, &c->counters)) {
    free(c);
    c = NULL;
  }
  if (c == NULL) {
    destroy_filter(kind, filter);
    return NULL;
  }
  c->kind = kind;
  c->filter = filter;
  return c;
}

void envoy_dynamic_module_on_http_filter_config_destroy(gw_module_ptr self) {
  const config *c = self;
  destroy_filter(c->kind, c->filter);
  free((void *)c);
}

/* The `limits` filter's stream: the body filter's stream of the same request, whose route and
 * charges it reads. Envoy makes a request's filters one after the other, in the chain's order,
 * on the request's worker, before any of them runs: the body filter's stream made last on this
 * thread is this request's (the Lua and RBAC filters between them are not the module's), when
 * the chain has the body filter; in a chain without it (every route the Lua's) the `limits`
 * filter takes none (gw_limits_after_body). */
typedef struct {
  int kind; /* GW_KIND_LIMITS_STREAM */
  const gw_limits_filter *limits;
  gw_body_stream *body;
} limits_stream;

static __thread gw_body_stream *last_body;

/* The access logger's link to the body filter's stream (gw_log.c). Envoy 1.40's connection
 * manager ends a stream in one go on its worker (ConnectionManagerImpl::doDeferredStreamDestroy):
 * every filter's onStreamComplete, then the access loggers, then every filter's onDestroy, with
 * nothing else run on that thread in between. So the stream completed last on this thread and
 * not yet destroyed is the one whose line is being written. It is cleared when that stream is
 * destroyed, before it is freed: the logger never sees a freed stream, and a log call outside
 * that window (none in 1.40) finds NULL and reads everything through Envoy. Nothing is
 * allocated for it: a stream without a log call, or a gateway without the logger, leaves
 * nothing behind. */
static __thread const gw_body_stream *logging;

const gw_body_stream *gw_log_stream(void) { return logging; }

/* The auth filter has no per-stream state (the filter is its config); the body filter's
 * stream is allocated here and freed in _destroy. NULL (no memory) makes Envoy fail the
 * stream. */
gw_module_ptr envoy_dynamic_module_on_http_filter_new(gw_module_ptr self, gw_envoy_ptr filter) {
  (void)filter;
  const config *c = self;
  if (c->kind == GW_KIND_AUTH) return self;
  if (c->kind == GW_KIND_LIMITS) {
    limits_stream *l = calloc(1, sizeof *l);
    if (l == NULL) return NULL;
    l->kind = GW_KIND_LIMITS_STREAM;
    l->limits = c->filter;
    if (gw_limits_after_body(c->filter)) {
      l->body = last_body;
      last_body = NULL;
    }
    return l;
  }
  gw_body_stream *s = calloc(1, sizeof *s);
  if (s == NULL) return NULL;
  s->kind = GW_KIND_BODY_STREAM;
  s->body = c->filter;
  s->counters = &c->counters;
  s->endpoint = -1;
  last_body = s;
  return s;
}

void envoy_dynamic_module_on_http_filter_destroy(gw_module_ptr self) {
  int kind = kind_of(self);
  if (kind == GW_KIND_LIMITS_STREAM) {
    free((void *)self);
    return;
  }
  if (kind != GW_KIND_BODY_STREAM) return;
  if (last_body == self) last_body = NULL;
  if (logging == self) logging = NULL;
  gw_body_stream_free((gw_body_stream *)self);
  free((void *)self);
}

int envoy_dynamic_module_on_http_filter_request_headers(gw_envoy_ptr filter, gw_module_ptr self,
                                                        bool end_of_stream) {
  int kind = kind_of(self);
  if (kind == GW_KIND_BODY_STREAM)
    return gw_body_request_headers(filter, (gw_body_stream *)self, end_of_stream);
  if (kind == GW_KIND_LIMITS_STREAM) {
    const limits_stream *l = self;
    return gw_limits_request_headers(filter, l->limits, l->body);
  }
  return gw_auth_request_headers(filter, ((const config *)self)->filter);
}

int envoy_dynamic_module_on_http_filter_request_body(gw_envoy_ptr filter, gw_module_ptr self,
                                                     bool end_of_stream) {
  if (kind_of(self) == GW_KIND_BODY_STREAM)
    return gw_body_request_body(filter, (gw_body_stream *)self, end_of_stream);
  return GW_BODY_CONTINUE;
}

int envoy_dynamic_module_on_http_filter_request_trailers(gw_envoy_ptr filter, gw_module_ptr self) {
  (void)filter;
  (void)self;
  return GW_TRAILERS_CONTINUE;
}

int envoy_dynamic_module_on_http_filter_response_headers(gw_envoy_ptr filter, gw_module_ptr self,
                                                         bool end_of_stream) {
  if (kind_of(self) == GW_KIND_BODY_STREAM)
    return gw_body_response_headers(filter, (gw_body_stream *)self, end_of_stream);
  return GW_HEADERS_CONTINUE;
}

int envoy_dynamic_module_on_http_filter_response_body(gw_envoy_ptr filter, gw_module_ptr self,
                                                      bool end_of_stream) {
  if (kind_of(self) == GW_KIND_BODY_STREAM)
    return gw_body_response_body(filter, (gw_body_stream *)self, end_of_stream);
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
  if (kind_of(self) == GW_KIND_BODY_STREAM) logging = self;
}

/* Hooks Envoy 1.40 requires but never calls for this module: it starts no HTTP callout, no
 * stream and no scheduler, and ignores write-buffer watermarks. Their arguments go unread. */
#define UNUSED_HOOK(name)                                \
  void envoy_dynamic_module_on_http_filter_##name(void); \
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
