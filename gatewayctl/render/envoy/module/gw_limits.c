/* Local request and token limits (gw_limits.h): Envoy's token buckets and per-consumer LRU. */
#define _GNU_SOURCE

#include "gw_limits.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A consumer's bucket of a limit by consumer: in the limit's hash chain and LRU list. */
struct gl_entry {
  char *key;
  size_t length;
  uint64_t hash;
  gl_entry *chain, *newer, *older;
  _Atomic double empty_at;
};

/* The registry (gw_limits.h) and the count of live buckets. */
#define GL_REGISTRY 1024 /* chains, a power of two */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static gl_limit *registry[GL_REGISTRY];
static _Atomic size_t live_buckets;
static _Atomic bool buckets_changed;

static void buckets_add(size_t added, size_t removed) {
  if (added > 0) atomic_fetch_add_explicit(&live_buckets, added, memory_order_relaxed);
  if (removed > 0) atomic_fetch_sub_explicit(&live_buckets, removed, memory_order_relaxed);
  atomic_store_explicit(&buckets_changed, true, memory_order_relaxed);
}

size_t gl_live_buckets(void) { return atomic_load_explicit(&live_buckets, memory_order_relaxed); }

/* Envoy's time source: the monotonic clock, in seconds. */
static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* A full bucket: empty max / rate seconds ago. */
static double full_at(const gl_limit *l) { return now_s() - l->max / l->rate; }

/* AtomicTokenBucketImpl::consume with a callback that takes `tokens` or nothing. */
static bool consume(const gl_limit *l, _Atomic double *empty_at, double tokens) {
  const double now = now_s();
  double old = atomic_load_explicit(empty_at, memory_order_relaxed), next;
  do {
    if (now <= old) return false;
    double total = (now - old) * l->rate;
    if (total > l->max) total = l->max;
    if (total < tokens) return false;
    next = now - (total - tokens) / l->rate;
  } while (!atomic_compare_exchange_weak_explicit(empty_at, &old, next, memory_order_relaxed,
                                                  memory_order_relaxed));
  return true;
}

static uint64_t hash(const char *p, size_t n) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
  return h;
}

static void unlink_lru(gl_limit *l, gl_entry *e) {
  if (e->newer != NULL) e->newer->older = e->older;
  else l->newest = e->older;
  if (e->older != NULL) e->older->newer = e->newer;
  else l->oldest = e->newer;
  e->newer = e->older = NULL;
}

static void push_newest(gl_limit *l, gl_entry *e) {
  e->older = l->newest;
  e->newer = NULL;
  if (l->newest != NULL) l->newest->newer = e;
  l->newest = e;
  if (l->oldest == NULL) l->oldest = e;
}

static void unlink_chain(gl_limit *l, gl_entry *e) {
  gl_entry **at = &l->table[e->hash & (l->table_size - 1)];
  while (*at != e) at = &(*at)->chain;
  *at = e->chain;
}

static bool grow(gl_limit *l) {
  size_t size = l->table_size == 0 ? 64 : l->table_size * 2;
  gl_entry **table = calloc(size, sizeof *table);
  if (table == NULL) return false;
  for (size_t i = 0; i < l->table_size; i++) {
    for (gl_entry *e = l->table[i], *next; e != NULL; e = next) {
      next = e->chain;
      e->chain = table[e->hash & (size - 1)];
      table[e->hash & (size - 1)] = e;
    }
  }
  free(l->table);
  l->table = table;
  l->table_size = size;
  return true;
}

/* Drops the least recently used consumer's bucket (under the limit's lock). */
static void drop_oldest(gl_limit *l) {
  gl_entry *old = l->oldest;
  unlink_lru(l, old);
  unlink_chain(l, old);
  l->count--;
  free(old->key);
  free(old);
}

/* The consumer's bucket of a limit by consumer, under the limit's lock; NULL: none yet. */
static gl_entry *consumer_find(const gl_limit *l, const char *key, size_t length, uint64_t h) {
  if (l->table_size == 0) return NULL;
  for (gl_entry *e = l->table[h & (l->table_size - 1)]; e != NULL; e = e->chain)
    if (e->hash == h && e->length == length && memcmp(e->key, key, length) == 0) return e;
  return NULL;
}

/* The consumer's bucket (DynamicDescriptor::addOrGetDescriptor), under the limit's lock: found
 * and moved to the front, or made full at the front, the least recently used dropped past the
 * capacity. NULL: no memory (the request is then not limited by this limit). */
static _Atomic double *consumer_bucket(gl_limit *l, const char *key, size_t length) {
  uint64_t h = hash(key, length);
  gl_entry *found = consumer_find(l, key, length, h);
  if (found != NULL) {
    if (l->newest != found) {
      unlink_lru(l, found);
      push_newest(l, found);
    }
    return &found->empty_at;
  }
  if (l->count + 1 > l->table_size * 3 / 4 && !grow(l)) return NULL;
  gl_entry *e = calloc(1, sizeof *e);
  char *copy = malloc(length + 1);
  if (e == NULL || copy == NULL) {
    free(e);
    free(copy);
    return NULL;
  }
  memcpy(copy, key, length);
  e->key = copy;
  e->length = length;
  e->hash = h;
  atomic_init(&e->empty_at, full_at(l));
  e->chain = l->table[h & (l->table_size - 1)];
  l->table[h & (l->table_size - 1)] = e;
  push_newest(l, e);
  l->count++;
  if (l->count > l->capacity) drop_oldest(l);
  else buckets_add(1, 0);
  return &e->empty_at;
}

/* ---- the registry of limits (gw_limits.h) ---------------------------------------------------- */

static void limit_free(gl_limit *l) {
  size_t buckets = l->by_consumer ? l->count : 1;
  for (gl_entry *e = l->newest, *next; e != NULL; e = next) {
    next = e->older;
    free(e->key);
    free(e);
  }
  free(l->table);
  if (l->lock_ready) pthread_mutex_destroy(&l->lock);
  free(l->key);
  free(l);
  buckets_add(0, buckets);
}

/* The limit of identity `key`, its refcount taken: the registry's, or made full there. */
static gl_limit *limit_acquire(const char *key, size_t length, double max, double rate,
                               bool by_consumer, size_t capacity) {
  uint64_t h = hash(key, length);
  pthread_mutex_lock(&registry_lock);
  gl_limit **chain = &registry[h & (GL_REGISTRY - 1)], *l;
  for (l = *chain; l != NULL; l = l->next)
    if (l->key_hash == h && l->key_length == length && memcmp(l->key, key, length) == 0) break;
  if (l != NULL) {
    l->refs++;
    if (l->by_consumer && l->capacity != capacity) {
      /* the consumers kept per limit follow the newest config (the renderer's count of limits
       * by consumer over every route changed): the least recently used dropped past it */
      size_t dropped = 0;
      pthread_mutex_lock(&l->lock);
      l->capacity = capacity;
      for (; l->count > capacity; dropped++) drop_oldest(l);
      pthread_mutex_unlock(&l->lock);
      if (dropped > 0) buckets_add(0, dropped);
    }
    pthread_mutex_unlock(&registry_lock);
    return l;
  }
  l = calloc(1, sizeof *l);
  char *copy = malloc(length + 1);
  if (l == NULL || copy == NULL || (by_consumer && pthread_mutex_init(&l->lock, NULL) != 0)) {
    free(l);
    free(copy);
    pthread_mutex_unlock(&registry_lock);
    return NULL;
  }
  memcpy(copy, key, length);
  copy[length] = 0;
  l->key = copy;
  l->key_length = length;
  l->key_hash = h;
  l->refs = 1;
  l->max = max;
  l->rate = rate;
  l->by_consumer = by_consumer;
  l->lock_ready = by_consumer;
  l->capacity = capacity;
  atomic_init(&l->empty_at, full_at(l));
  l->next = *chain;
  *chain = l;
  if (!by_consumer) buckets_add(1, 0);
  pthread_mutex_unlock(&registry_lock);
  return l;
}

static void limit_release(gl_limit *l) {
  pthread_mutex_lock(&registry_lock);
  if (--l->refs > 0) {
    pthread_mutex_unlock(&registry_lock);
    return;
  }
  gl_limit **at = &registry[l->key_hash & (GL_REGISTRY - 1)];
  while (*at != l) at = &(*at)->next;
  *at = l->next;
  pthread_mutex_unlock(&registry_lock);
  limit_free(l);
}

bool gl_set_load(gl_set *set, const gj_node *node, long long capacity, const char *route,
                 size_t route_length, const char *kind) {
  memset(set, 0, sizeof *set);
  if (node == NULL) return true;
  if (node->type != GJ_ARRAY || node->count > GL_MAX_LIMITS || capacity < 1 ||
      route_length > 4096)
    return false;
  for (const gj_node *n = node->first; n != NULL; n = n->next) {
    const gj_node *max = gj_get(n, "max"), *fill = gj_get(n, "fill_ms"),
                  *by = gj_get(n, "by_consumer");
    if (max == NULL || max->type != GJ_NUMBER || max->number < 1 || fill == NULL ||
        fill->type != GJ_NUMBER || fill->number < 50 || by == NULL || by->type != GJ_BOOL)
      return false;
    /* tokens_per_fill = max_tokens (ratelimit.py), over fill_interval */
    double rate = (double)max->number / ((double)fill->number / 1000.0);
    /* the identity: route (length first, so that no name runs into the rest), kind,
     * position, max, fill interval, by consumer; not the LRU's capacity, which follows the
     * newest config (a limit by consumer added on another route changes it) */
    char key[4200];
    int length = snprintf(key, sizeof key, "%zu:%.*s|%s|%zu|%.17g|%.17g|%d", route_length,
                          (int)route_length, route, kind, set->count, (double)max->number,
                          (double)fill->number, by->boolean);
    if (length < 0 || (size_t)length >= sizeof key) return false;
    gl_limit *l = limit_acquire(key, (size_t)length, (double)max->number, rate, by->boolean,
                                (size_t)capacity);
    if (l == NULL) return false;
    set->limits[set->count] = l;
    /* insertion sort by rate, stable (std::sort of so few elements is an insertion sort) */
    size_t at = set->count;
    while (at > 0 && set->limits[set->order[at - 1]]->rate > l->rate) {
      set->order[at] = set->order[at - 1];
      at--;
    }
    set->order[at] = set->count++;
  }
  return true;
}

void gl_set_free(gl_set *set) {
  for (size_t i = 0; i < set->count; i++) limit_release(set->limits[i]);
  memset(set, 0, sizeof *set);
}

bool gl_admit(gl_set *set, const char *consumer, size_t consumer_length,
              const uint64_t *charges) {
  _Atomic double *buckets[GL_MAX_LIMITS];
  /* every bucket first (the consumers' made or moved to the front), then the consumes; the
   * locks of the limits by consumer are taken in the limits' order and held until the end */
  for (size_t i = 0; i < set->count; i++) {
    gl_limit *l = set->limits[i];
    if (!l->by_consumer) {
      buckets[i] = &l->empty_at;
      continue;
    }
    pthread_mutex_lock(&l->lock);
    buckets[i] = consumer_bucket(l, consumer, consumer_length);
  }
  bool admitted = true;
  for (size_t k = 0; k < set->count && admitted; k++) {
    size_t i = set->order[k];
    if (buckets[i] != NULL)
      admitted = consume(set->limits[i], buckets[i],
                         charges != NULL ? (double)charges[i] : 1.0);
  }
  for (size_t i = set->count; i-- > 0;)
    if (set->limits[i]->by_consumer) pthread_mutex_unlock(&set->limits[i]->lock);
  return admitted;
}

/* Seconds until `tokens` are in a bucket of `l` that was empty at `empty_at`, at `now` (0: they
 * are there). */
static double refill_wait(const gl_limit *l, double empty_at, double tokens, double now) {
  double have = (now - empty_at) * l->rate;
  if (have > l->max) have = l->max;
  if (have < 0) have = 0;
  return have >= tokens ? 0 : (tokens - have) / l->rate;
}

double gl_wait(gl_set *set, const char *consumer, size_t consumer_length,
               const uint64_t *charges) {
  const double now = now_s();
  double wait = 0;
  for (size_t i = 0; i < set->count; i++) {
    gl_limit *l = set->limits[i];
    double tokens = charges != NULL ? (double)charges[i] : 1.0, empty_at, w;
    if (!l->by_consumer) {
      empty_at = atomic_load_explicit(&l->empty_at, memory_order_relaxed);
    } else {
      /* looked up, not made: a consumer without a bucket has a full one */
      pthread_mutex_lock(&l->lock);
      gl_entry *e = consumer_find(l, consumer, consumer_length, hash(consumer, consumer_length));
      empty_at = e != NULL ? atomic_load_explicit(&e->empty_at, memory_order_relaxed)
                           : now - l->max / l->rate;
      pthread_mutex_unlock(&l->lock);
    }
    w = refill_wait(l, empty_at, tokens, now);
    if (w > wait) wait = w;
  }
  return wait;
}

/* ---- the `limits` filter -------------------------------------------------------------------- */

#include "gw_body_config.h"

enum { GL_REQUESTS, GL_TOKENS, GL_KINDS };
enum { GL_ENABLED, GL_OK, GL_RATE_LIMITED, GL_ENFORCED, GL_STATS };
static const char *const KINDS[GL_KINDS] = {"requests", "tokens"};
static const char *const STATS[GL_STATS] = {"enabled", "ok", "rate_limited", "enforced"};

enum { GL_HEADER, GL_INTERNAL_NS, GL_LIMITED_KEY, GL_ROUTE_HEADER, GL_CONSUMER_HEADER,
       GL_NAMES };
static const char *const NAMES[GL_NAMES] = {"limit_response_header", "internal_ns",
                                            "limited_key", "route_header", "consumer_header"};

/* A route the Lua body filter serves: its limits, found by the x-gw-route the Lua sets. */
typedef struct {
  char *name;
  size_t length;
  uint64_t hash;
  gl_set requests, tokens;
  bool by_consumer; /* a limit of either kind is by consumer: x-gw-consumer is read */
} gl_route;

struct gw_limits_filter {
  /* x-gateway-limit; gw.internal and the key the access log's RL line looks for; x-gw-route
   * and x-gw-consumer (the Lua's routes) */
  gw_buffer names[GL_NAMES];
  gw_buffer charge_headers[GL_MAX_LIMITS]; /* x-gw-token-charge-<i>, the Lua's charges */
  size_t charge_count;
  gl_route *routes; /* the Lua's routes with limits, and their open-addressing index */
  size_t route_count;
  size_t *index; /* route + 1, or 0: empty */
  size_t index_size;
  size_t ids[GL_KINDS][GL_STATS];
  size_t buckets_id; /* the limits.buckets gauge */
  bool after_body;   /* the module's body filter is before this one in the chain */
};

bool gw_limits_after_body(const gw_limits_filter *f) { return f->after_body; }

static bool copy_string(const gj_node *node, gw_buffer *out) {
  char *copy = node != NULL && node->type == GJ_STRING ? malloc(node->length + 1) : NULL;
  if (copy == NULL) return false;
  memcpy(copy, node->string, node->length + 1);
  *out = (gw_buffer){copy, node->length};
  return true;
}

/* The Lua routes' limits ({"<route>": {"requests": [...], "tokens": [...]}}), each adopted
 * from the registry as the body filter's config adopts its own (the same identities: a route
 * that moves between the Lua and the module keeps its counts), and `capacity`. */
static bool load_routes(gw_limits_filter *f, const gj_node *routes, const gj_node *capacity) {
  if (routes == NULL) return true;
  const gj_node *requests = gj_get(capacity, "requests"), *tokens = gj_get(capacity, "tokens");
  if (routes->type != GJ_OBJECT || requests == NULL || requests->type != GJ_NUMBER ||
      tokens == NULL || tokens->type != GJ_NUMBER)
    return false;
  f->routes = calloc(routes->count > 0 ? routes->count : 1, sizeof *f->routes);
  f->index_size = 8;
  while (f->index_size < 2 * routes->count) f->index_size *= 2;
  f->index = calloc(f->index_size, sizeof *f->index);
  if (f->routes == NULL || f->index == NULL) return false;
  for (const gj_node *n = routes->first; n != NULL; n = n->next) {
    gl_route *r = &f->routes[f->route_count];
    const gj_node *t = gj_get(n, "tokens");
    if (n->type != GJ_OBJECT || n->key_length > 4096) return false;
    r->name = malloc(n->key_length + 1);
    if (r->name == NULL) return false;
    memcpy(r->name, n->key, n->key_length + 1);
    r->length = n->key_length;
    r->hash = hash(r->name, r->length);
    f->route_count++;
    if (!gl_set_load(&r->requests, gj_get(n, "requests"), requests->number, r->name, r->length,
                     "requests") ||
        !gl_set_load(&r->tokens, t, tokens->number, r->name, r->length, "tokens") ||
        r->tokens.count > f->charge_count)
      return false;
    for (size_t i = 0; i < r->requests.count; i++)
      r->by_consumer = r->by_consumer || r->requests.limits[i]->by_consumer;
    for (size_t i = 0; i < r->tokens.count; i++)
      r->by_consumer = r->by_consumer || r->tokens.limits[i]->by_consumer;
    size_t at = r->hash & (f->index_size - 1);
    while (f->index[at] != 0) at = (at + 1) & (f->index_size - 1);
    f->index[at] = f->route_count;
  }
  return true;
}

gw_limits_filter *gw_limits_filter_new(gw_envoy_ptr config, const gj_node *root) {
  gw_limits_filter *f = calloc(1, sizeof *f);
  if (f == NULL) return NULL;
  for (int i = 0; i < GL_NAMES; i++) {
    if (!copy_string(gj_get(gj_get(root, "names"), NAMES[i]), &f->names[i])) {
      gw_limits_filter_destroy(f);
      return NULL;
    }
  }
  const gj_node *after_body = gj_get(root, "body_filter");
  if (after_body != NULL && after_body->type != GJ_BOOL) {
    gw_limits_filter_destroy(f);
    return NULL;
  }
  f->after_body = after_body == NULL || after_body->boolean;
  const gj_node *charges = gj_get(root, "token_charge_headers");
  if (charges != NULL) {
    if (charges->type != GJ_ARRAY || charges->count > GL_MAX_LIMITS) {
      gw_limits_filter_destroy(f);
      return NULL;
    }
    for (const gj_node *n = charges->first; n != NULL; n = n->next) {
      if (!copy_string(n, &f->charge_headers[f->charge_count])) {
        gw_limits_filter_destroy(f);
        return NULL;
      }
      f->charge_count++;
    }
  }
  if (!load_routes(f, gj_get(root, "routes"), gj_get(root, "limit_capacity"))) {
    gw_limits_filter_destroy(f);
    return NULL;
  }
  for (int k = 0; k < GL_KINDS; k++) {
    for (int s = 0; s < GL_STATS; s++) {
      char name[64];
      size_t n = (size_t)snprintf(name, sizeof name, "%s.http_local_rate_limit.%s", KINDS[k],
                                  STATS[s]);
      if (envoy_dynamic_module_callback_http_filter_config_define_counter(
              config, (gw_buffer){name, n}, NULL, 0, &f->ids[k][s]) != 0) {
        gw_limits_filter_destroy(f);
        return NULL;
      }
    }
  }
  if (envoy_dynamic_module_callback_http_filter_config_define_gauge(
          config, (gw_buffer){"limits.buckets", 14}, NULL, 0, &f->buckets_id) != 0) {
    gw_limits_filter_destroy(f);
    return NULL;
  }
  atomic_store_explicit(&buckets_changed, true, memory_order_relaxed);
  return f;
}

void gw_limits_filter_destroy(gw_limits_filter *f) {
  if (f == NULL) return;
  for (int i = 0; i < GL_NAMES; i++) free((void *)f->names[i].ptr);
  for (size_t i = 0; i < f->charge_count; i++) free((void *)f->charge_headers[i].ptr);
  for (size_t i = 0; i < f->route_count; i++) {
    gl_set_free(&f->routes[i].requests);
    gl_set_free(&f->routes[i].tokens);
    free(f->routes[i].name);
  }
  free(f->routes);
  free(f->index);
  free(f);
}

static void count(gw_envoy_ptr filter, const gw_limits_filter *f, int kind, int stat) {
  envoy_dynamic_module_callback_http_filter_increment_counter(filter, f->ids[kind][stat], NULL, 0,
                                                              1);
}

/* local_ratelimit's refusal: 429, its response_headers_to_add and the details; the listener's
 * local_reply mapper writes the body, as for Envoy's own 429. Envoy's RL response flag is not
 * the module's to set: the key in gw.internal has the access log write it (access_log.py), and
 * RL is the stream's custom flag too (%CUSTOM_FLAGS%). Retry-After: `wait` seconds, rounded up,
 * at least 1 (RFC 9110 delay-seconds). */
static int refuse(gw_envoy_ptr filter, const gw_limits_filter *f, int kind, double wait) {
  count(filter, f, kind, GL_RATE_LIMITED);
  count(filter, f, kind, GL_ENFORCED);
  gw_buffer kind_name = {KINDS[kind], strlen(KINDS[kind])};
  envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
      filter, f->names[GL_INTERNAL_NS], f->names[GL_LIMITED_KEY], kind_name);
  envoy_dynamic_module_callback_http_add_custom_flag(filter, (gw_buffer){"RL", 2});
  if (!(wait < 1e12)) wait = 1e12; /* NaN too; a charge no bucket can hold never fits */
  uint64_t seconds = (uint64_t)wait;
  if ((double)seconds < wait) seconds++;
  if (seconds < 1) seconds = 1;
  char value[24];
  size_t length = (size_t)snprintf(value, sizeof value, "%llu", (unsigned long long)seconds);
  gw_header headers[] = {{f->names[GL_HEADER], kind_name},
                         {{"retry-after", 11}, {value, length}}};
  envoy_dynamic_module_callback_http_send_response(filter, 429, headers, 2,
                                                   (gw_buffer){"local_rate_limited", 18},
                                                   (gw_buffer){"local_rate_limited", 18});
  return GW_HEADERS_STOP_ITERATION;
}

/* After a refusal: how long until the request would be admitted if nothing else came, i.e. until
 * every bucket it is charged from (both kinds: those consumed before the refusal stay
 * consumed) holds its charge again. */
static double refused_wait(gl_set *requests, gl_set *tokens, const char *consumer,
                           size_t consumer_length, const uint64_t *charges) {
  double a = gl_wait(requests, consumer, consumer_length, NULL);
  double b = gl_wait(tokens, consumer, consumer_length, charges);
  return a > b ? a : b;
}

/* The limits of one route: requests first; a refused request never reaches the token limits. */
static int admit(gw_envoy_ptr filter, const gw_limits_filter *f, gl_set *requests, gl_set *tokens,
                 const char *consumer, size_t consumer_length, const uint64_t *charges) {
  if (requests->count > 0) {
    count(filter, f, GL_REQUESTS, GL_ENABLED);
    if (!gl_admit(requests, consumer, consumer_length, NULL))
      return refuse(filter, f, GL_REQUESTS,
                    refused_wait(requests, tokens, consumer, consumer_length, charges));
    count(filter, f, GL_REQUESTS, GL_OK);
  }
  if (tokens->count > 0) {
    count(filter, f, GL_TOKENS, GL_ENABLED);
    if (!gl_admit(tokens, consumer, consumer_length, charges))
      return refuse(filter, f, GL_TOKENS,
                    refused_wait(requests, tokens, consumer, consumer_length, charges));
    count(filter, f, GL_TOKENS, GL_OK);
  }
  return GW_HEADERS_CONTINUE;
}

/* hits_addend's `%REQ(x-gw-token-charge-<i>)%`: a whole number up to 10^9, else none. */
static bool charge_of(gw_buffer v, uint64_t *out) {
  if (v.length == 0 || v.length > 10) return false;
  uint64_t n = 0;
  for (size_t i = 0; i < v.length; i++) {
    if (v.ptr[i] < '0' || v.ptr[i] > '9') return false;
    n = n * 10 + (uint64_t)(v.ptr[i] - '0');
  }
  if (n > 1000000000) return false;
  *out = n;
  return true;
}

/* `all` without the limits `keep` leaves out (their order kept), into `out`. */
static void subset(const gl_set *all, const bool *keep, const uint64_t *charges, gl_set *out,
                   uint64_t *out_charges) {
  size_t at[GL_MAX_LIMITS];
  memset(out, 0, sizeof *out);
  for (size_t i = 0; i < all->count; i++) {
    if (!keep[i]) continue;
    at[i] = out->count;
    if (charges != NULL) out_charges[out->count] = charges[i];
    out->limits[out->count++] = all->limits[i];
  }
  size_t k = 0;
  for (size_t j = 0; j < all->count; j++)
    if (keep[all->order[j]]) out->order[k++] = at[all->order[j]];
}

/* A request the Lua body filter served: the limits of the route its x-gw-route names, with
 * the consumer its x-gw-consumer names and the charges its x-gw-token-charge-<i> carry, as
 * Envoy's filters read them (a descriptor whose header is missing, or whose charge is not a
 * number, is left out: that limit does not apply to the request). */
static int lua_route(gw_envoy_ptr filter, const gw_limits_filter *f) {
  gw_buffer name;
  if (!gb_first_header(filter, GW_REQUEST_HEADERS, f->names[GL_ROUTE_HEADER], &name))
    return GW_HEADERS_CONTINUE;
  uint64_t h = hash(name.ptr, name.length);
  gl_route *r = NULL;
  size_t mask = f->index_size - 1;
  for (size_t at = h & mask; f->index[at] != 0; at = (at + 1) & mask) {
    gl_route *c = &f->routes[f->index[at] - 1];
    if (c->hash == h && c->length == name.length && memcmp(c->name, name.ptr, name.length) == 0) {
      r = c;
      break;
    }
  }
  if (r == NULL) return GW_HEADERS_CONTINUE;
  gw_buffer consumer = {"", 0};
  bool has_consumer =
      r->by_consumer &&
      gb_first_header(filter, GW_REQUEST_HEADERS, f->names[GL_CONSUMER_HEADER], &consumer);
  uint64_t charges[GL_MAX_LIMITS];
  bool valid[GL_MAX_LIMITS] = {false}, charged = true;
  for (size_t i = 0; i < r->tokens.count; i++) {
    gw_buffer v;
    valid[i] = gb_first_header(filter, GW_REQUEST_HEADERS, f->charge_headers[i], &v) &&
               charge_of(v, &charges[i]);
    if (!valid[i]) charges[i] = 0;
    charged = charged && valid[i];
  }
  if ((has_consumer || !r->by_consumer) && charged)
    return admit(filter, f, &r->requests, &r->tokens, consumer.ptr, consumer.length, charges);
  /* some limit left out: the others only */
  bool keep[GL_MAX_LIMITS] = {false};
  gl_set requests, tokens;
  uint64_t kept[GL_MAX_LIMITS];
  for (size_t i = 0; i < r->requests.count; i++)
    keep[i] = has_consumer || !r->requests.limits[i]->by_consumer;
  subset(&r->requests, keep, NULL, &requests, NULL);
  for (size_t i = 0; i < r->tokens.count; i++)
    keep[i] = (has_consumer || !r->tokens.limits[i]->by_consumer) && valid[i];
  subset(&r->tokens, keep, charges, &tokens, kept);
  return admit(filter, f, &requests, &tokens, consumer.ptr, consumer.length, kept);
}

int gw_limits_request_headers(gw_envoy_ptr filter, const gw_limits_filter *f, void *body) {
  /* the gauge, when the buckets changed (a config made or destroyed, a consumer's bucket) */
  if (atomic_load_explicit(&buckets_changed, memory_order_relaxed) &&
      atomic_exchange_explicit(&buckets_changed, false, memory_order_relaxed))
    envoy_dynamic_module_callback_http_filter_set_gauge(filter, f->buckets_id, NULL, 0,
                                                        gl_live_buckets());
  const gw_body_stream *s = body;
  const gb_route *r = s != NULL ? s->route : NULL;
  if (r == NULL) return f->route_count > 0 ? lua_route(filter, f) : GW_HEADERS_CONTINUE;
  gb_route *route = (gb_route *)r; /* the buckets are the mutable part of the config */
  return admit(filter, f, &route->requests, &route->tokens, s->consumer, s->consumer_length,
               s->charges);
}
