/* Local request and token limits, compiled (gw_limits.c): what Envoy 1.40's local_ratelimit
 * filter does with the descriptors render/envoy/ratelimit.py gives it, for every route of a
 * module gateway. The module's `limits` filter, placed where the two local_ratelimit filters
 * are on a Lua gateway (after RBAC), admits or refuses each request: one the module's body
 * filter served by that filter's route and per-request state (consumer, charges); one the Lua
 * body filter served by the headers the Lua sets for Envoy's filters (x-gw-route names the
 * route, x-gw-consumer the consumer, x-gw-token-charge-<i> the charge of token limit i), the
 * route's limits in the `limits` filter's own config.
 *
 * The buckets outlive the config that made them (SPEC section 7: a limit's count survives the
 * applies that do not change that limit). Each limit is module-global state keyed by its
 * identity: the route, its kind and position, max, fill interval, by route or by consumer (the
 * consumers kept per limit follow the newest config, the least recently used dropped past a
 * smaller one). The body filter's config references its limits (a refcount): a new config
 * (Envoy makes it before it destroys the old one on a listener update) adopts the limits whose
 * identity it finds, with every consumer's bucket; a changed limit is a new identity and
 * starts full; a limit is freed with its buckets when the last config referencing it is
 * destroyed, so a limit removed and then added back (once the old listener has drained)
 * starts full too. The registry is under one lock, taken at config time only.
 *
 * Each bucket is Envoy's AtomicTokenBucketImpl: one atomic double, the time at which the bucket
 * was empty, so that tokens = min(max, (now - time) * rate); a consume of n moves the time
 * forward by n / rate (a CAS loop), refused whole when fewer than n are there. A limit by
 * consumer keeps one such bucket per consumer, made full on first use, at most `capacity`
 * (max_dynamic_descriptors) of them, the least recently used dropped past that (Envoy's
 * DynamicDescriptor). A request's buckets are all found first (made, or moved to the front of
 * their LRU), then consumed in the order of their fill rate, slowest first (a stable sort: ties
 * keep the limits' order), stopping at the first refusal: the buckets consumed before it stay
 * consumed, as in Envoy. */
#ifndef GW_LIMITS_H
#define GW_LIMITS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gw_abi.h"
#include "gw_json.h"

#define GL_MAX_LIMITS 8 /* per route and kind (body_module.py MAX_LIMITS) */

typedef struct gl_entry gl_entry;
typedef struct gl_limit gl_limit;

/* One limit of a route: its bucket (by route), or its buckets per consumer. */
struct gl_limit {
  char *key; /* the identity (see above), and the registry's chain and refcount */
  size_t key_length;
  uint64_t key_hash;
  gl_limit *next;
  size_t refs;
  double max, rate; /* max_tokens; tokens_per_fill / fill_interval, per second */
  bool by_consumer;
  _Atomic double empty_at; /* by route: the bucket */
  /* by consumer: a chained hash of the consumers' buckets, and their LRU list */
  pthread_mutex_t lock;
  bool lock_ready;
  gl_entry **table;
  size_t table_size, count, capacity;
  gl_entry *newest, *oldest;
};

/* The limits of one kind (requests or tokens) of one route: references to registry entries. */
typedef struct {
  gl_limit *limits[GL_MAX_LIMITS];
  size_t count;
  size_t order[GL_MAX_LIMITS]; /* indexes by fill rate, slowest first */
} gl_set;

/* Reads the limits of kind `kind` ("requests", "tokens") of route `route`: [{"max": n,
 * "fill_ms": n, "by_consumer": bool}, ...]; `capacity`: consumers kept per limit by consumer.
 * NULL node: no limit. Each limit is adopted from the registry, or made full there. On false
 * the set holds the limits referenced so far: gl_set_free it. */
bool gl_set_load(gl_set *set, const gj_node *node, long long capacity, const char *route,
                 size_t route_length, const char *kind);
/* Drops the set's references; a limit no config references any more is freed. */
void gl_set_free(gl_set *set);

/* Buckets alive in the module: one per limit by route, one per consumer of a limit by
 * consumer (the `limits.buckets` gauge, set by the `limits` filter when it changed). */
size_t gl_live_buckets(void);

/* Admits a request to `set`: `charges[i]` tokens from limit i (NULL: 1 each), the consumer's
 * buckets for the limits by consumer. False: refused (see above for what stays consumed). */
bool gl_admit(gl_set *set, const char *consumer, size_t consumer_length,
              const uint64_t *charges);
/* After a refusal: seconds until every bucket of `set` holds its charge (`charges` as for
 * gl_admit) for this consumer, if nothing else came; 0 when they all do. A consumer without a
 * bucket yet has a full one (none is made). */
double gl_wait(gl_set *set, const char *consumer, size_t consumer_length,
               const uint64_t *charges);

/* The `limits` filter: its config ({"names": {"limit_response_header": ..., "route_header":
 * ..., "consumer_header": ...}, and for the Lua's routes "routes": {"<route>": {"requests":
 * [...], "tokens": [...]}} (as gl_set_load reads them, the same identities as the body filter's
 * config gives them: a route moving between the two keeps its counts), "limit_capacity" and
 * "token_charge_headers": [x-gw-token-charge-0, ...]) and the counters it defines on Envoy's
 * filter config `config` (per kind: enabled, ok, rate_limited, enforced, as local_ratelimit's
 * `<stat_prefix>.http_local_rate_limit.*`) and the `limits.buckets` gauge; NULL if not
 * valid. */
typedef struct gw_limits_filter gw_limits_filter;
gw_limits_filter *gw_limits_filter_new(gw_envoy_ptr config, const gj_node *root);
void gw_limits_filter_destroy(gw_limits_filter *filter);
/* Whether the module's body filter precedes this `limits` filter in its chain (config
 * "body_filter", true when absent): only then is the body stream made last on the thread this
 * request's (gw_module.c); without it, a body stream of another listener's request still in
 * flight on the thread (a listener change) must not be taken for this one's. */
bool gw_limits_after_body(const gw_limits_filter *filter);

/* The request's turn, after RBAC: the limits of the route the body filter's stream `body`
 * (a gw_body_stream, or NULL) served, or else of the Lua's route x-gw-route names, if any; a
 * 429 (and StopIteration) when one refuses, with Retry-After: gl_wait over both kinds, rounded
 * up, at least 1. A Lua route's limit whose descriptor Envoy would not build (no x-gw-consumer
 * for a limit by consumer, a charge header missing or not a whole number up to 10^9) does not
 * apply to the request, as with Envoy's filter; the Lua always sets them. */
int gw_limits_request_headers(gw_envoy_ptr filter, const gw_limits_filter *limits, void *body);

#endif
