/* The body filter's config as C structs (read once, at config time, by gw_body_config.c from
 * the renderer's JSON; render/envoy/body_module.py writes it): what gw_body.c reads per
 * request. Immutable after gw_body_new, except the credential cache (under `lock`). */
#ifndef GW_BODY_CONFIG_H
#define GW_BODY_CONFIG_H

#include <pthread.h>

#include "gw_body.h"

typedef struct {
  char *ptr; /* NUL-terminated copy */
  size_t length;
} gb_text;

typedef struct {
  bool is_var;
  gb_text text; /* the literal text, or the variable's name */
  bool has_default;
  gb_text fallback; /* the variable's default */
} gb_part;

typedef struct {
  long long version, weight;
  gb_text *required;
  size_t required_count;
  gb_part *parts;
  size_t part_count;
} gb_version;

typedef struct {
  gb_text name;
  gb_version *versions;
  size_t version_count;
} gb_prompt;

/* A provider's credential (secrets.lua's set_credential): the file's trimmed content, read
 * again once secret_ttl_s has passed; under gw_body.lock. */
typedef struct {
  gb_text provider, file, header, prefix;
  char *value; /* prefix + the file's content, or NULL (unreadable or empty) */
  size_t value_length;
  bool loaded;
  long long expires;
} gb_credential;

typedef struct {
  gb_text name, public_name;
  bool needs_auth, keys_ok;
  gb_text *jwt; /* the JWT providers whose tokens the route takes */
  size_t jwt_count;
  bool has_allow;
  gb_text *allow;
  size_t allow_count;
  bool has_guard;
  gb_text guard;
  unsigned redact; /* GW_REDACT_* bits */
  long long max_bytes;
  gb_prompt *prompt; /* NULL: none */
  bool has_direct, pinned;
  gb_text direct_model, direct_upstream, authority;
  gb_credential *credential; /* a pinned route's provider credential, or NULL */
} gb_route;

typedef struct {
  gb_text model;
  const gb_route *route; /* NULL: a route the module does not serve (the Lua does) */
} gb_model;

enum { GB_CHAT, GB_COMPLETIONS, GB_EMBEDDINGS, GB_OTHER };

typedef struct {
  gb_text path;
  int kind;
} gb_endpoint;

#define GB_MAX_KEY_HEADERS 8

struct gw_body {
  gb_text metadata_ns, internal_ns, route_header, consumer_header, body_model_header,
      principal_header, reply_header, route_key, consumer_key, guard_set_key, guard_text_key;
  gb_text key_headers[GB_MAX_KEY_HEADERS];
  size_t key_header_count;
  gb_endpoint *endpoints;
  size_t endpoint_count;
  gb_model *models; /* open addressing, model_capacity slots (a power of two) */
  size_t model_capacity;
  gb_route *routes;
  size_t route_count;
  gb_credential *credentials;
  size_t credential_count;
  long long secret_ttl_s;
  pthread_mutex_t lock;
  bool lock_ready;
};

/* The route serving `model` (NULL in *route when the Lua serves it); false if no route does. */
bool gb_find_model(const gw_body *body, const char *model, size_t length,
                   const gb_route **route);

#endif
