/* The body filter's config as C structs (read once, at config time, by gw_body_config.c from
 * the renderer's JSON; render/envoy/body_module.py writes it): what gw_body.c reads per
 * request. Immutable after gw_body_new, except the credential cache (under `lock`). */
#ifndef GW_BODY_CONFIG_H
#define GW_BODY_CONFIG_H

#include <pthread.h>

#include "gw_body.h"
#include "gw_limits.h"

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

#define GB_MAX_TOKEN_LIMITS 8

/* A local token limit (tokens.lua): its debt key prefix, by consumer or by route, the
 * bucket's size and the charge header the limiter reads. */
typedef struct {
  gb_text key, header;
  bool by_consumer;
  double max;
} gb_token_limit;

typedef struct {
  gb_text name, public_name;
  bool needs_auth, keys_ok;
  bool consumer_header; /* x-gw-consumer is set: a local limit of the route is by consumer */
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
  bool guard_logs;           /* action log: the RBAC shadow result is read on the response */
  gb_token_limit limits[GB_MAX_TOKEN_LIMITS];
  size_t limit_count;
  /* the local limits the module's `limits` filter enforces (gw_limits.h) instead of Envoy's
   * local_ratelimit filters: set when the config gives the route `limits`; then no charge
   * header is written (nothing else reads it) */
  bool module_limits;
  gl_set requests, tokens;
  unsigned metadata_keys; /* GB_LOG_* bits written to Envoy's metadata on this route although
                           * the config's log_only has them (the per-backend counters read them) */
} gb_route;

/* A model's prices per million tokens (DATA.prices), by the upstream model name. */
typedef struct {
  gb_text model;
  double input, output;
} gb_price;

/* Token debt of one worker (tokens.lua's token_debt): "<limit key>|<route>|<consumer>" ->
 * tokens owed; open addressing, at most GB_MAX_DEBT_KEYS keys (a new key past that is not
 * kept: its debt is not carried, the limiter still charges 1 per request). */
#define GB_MAX_WORKERS 256
#define GB_MAX_DEBT_KEYS 65536
typedef struct {
  char *key;
  size_t length;
  double debt;
} gb_debt;
typedef struct {
  pthread_mutex_t lock; /* uncontended: one worker per slot, unless there are more workers */
  gb_debt *slots;
  size_t capacity, count;
} gb_debts;

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

/* The `gw` keys the body filter writes, by number (their names: gb_log_key). */
enum { GB_LOG_REQUESTED_MODEL, GB_LOG_ROUTE, GB_LOG_CONSUMER, GB_LOG_PROMPT,
       GB_LOG_PROMPT_VERSION, GB_LOG_UPSTREAM_STATUS, GB_LOG_GUARDRAIL, GB_LOG_PROMPT_TOKENS,
       GB_LOG_COMPLETION_TOKENS, GB_LOG_CACHED_TOKENS, GB_LOG_COST, GB_LOG_KEYS };

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
  gb_price *prices;
  size_t price_count;
  gb_text model_response_header, prompt_version_header, limit_response_header,
      guardrail_response_header, rbac_filter, prompt_tokens_key, completion_tokens_key,
      cost_key;
  gb_debts workers[GB_MAX_WORKERS];
  long long secret_ttl_s;
  /* GB_LOG_* bits: keys only the compiled access logger reads on the filter's routes, which it
   * takes from the stream (gw_body.h): not written to Envoy's metadata on a served request
   * (the config's `log_only`; none under GATEWAYCTL_ACCESS_LOG_CHECK=1) */
  unsigned log_only;
  pthread_mutex_t lock;
  bool lock_ready;
};

/* The name of a GB_LOG_* key (the config's names for the route, consumer and token keys). */
gw_buffer gb_log_key(const gw_body *body, int id);

/* The price of an upstream model, or NULL. */
const gb_price *gb_find_price(const gw_body *body, const char *model, size_t length);

/* tokens.lua: take (carry) and add to the debt of a key, in the calling worker's table. */
double gb_debt_take(gw_body *body, uint32_t worker, const char *key, size_t length);
void gb_debt_add(gw_body *body, uint32_t worker, const char *key, size_t length, double tokens);

/* Numbers as the Lua writes them, without printf on the common path (gw_body_config.c):
 * decimal digits of an integer; Lua's tostring of a number ("%.14g"); and
 * tonumber(string.format("%.8f", x)). `out` holds at least 32 bytes. */
size_t gb_format_int(long long value, char *out);
size_t gb_format_number(double value, char *out);
double gb_round8(double value);

/* A header's first value (gw_body.c; an empty one as ""), or false when there is none. */
bool gb_first_header(gw_envoy_ptr filter, int type, gw_buffer name, gw_buffer *value);

/* The whole body (gw_body.c): the chunks of `first` (-1: none) then of `second`, contiguous. */
bool gb_body_bytes(gw_envoy_ptr filter, int first, int second, gw_out *copy, gw_buffer *out);

/* The route serving `model` (NULL in *route when the Lua serves it); false if no route does. */
bool gb_find_model(const gw_body *body, const char *model, size_t length,
                   const gb_route **route);

#endif
