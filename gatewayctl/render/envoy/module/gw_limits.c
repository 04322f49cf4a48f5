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

/* The consumer's bucket (DynamicDescriptor::addOrGetDescriptor), under the limit's lock: found
 * and moved to the front, or made full at the front, the least recently used dropped past the
 * capacity. NULL: no memory (the request is then not limited by this limit). */
static _Atomic double *consumer_bucket(gl_limit *l, const char *key, size_t length) {
  uint64_t h = hash(key, length);
  if (l->table_size > 0) {
    for (gl_entry *e = l->table[h & (l->table_size - 1)]; e != NULL; e = e->chain) {
      if (e->hash == h && e->length == length && memcmp(e->key, key, length) == 0) {
        if (l->newest != e) {
          unlink_lru(l, e);
          push_newest(l, e);
        }
        return &e->empty_at;
      }
    }
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

/* ---- the `limits` filter -------------------------------------------------------------------- */

#include "gw_body_config.h"

enum { GL_REQUESTS, GL_TOKENS, GL_KINDS };
enum { GL_ENABLED, GL_OK, GL_RATE_LIMITED, GL_ENFORCED, GL_STATS };
static const char *const KINDS[GL_KINDS] = {"requests", "tokens"};
static const char *const STATS[GL_STATS] = {"enabled", "ok", "rate_limited", "enforced"};

enum { GL_HEADER, GL_INTERNAL_NS, GL_LIMITED_KEY, GL_NAMES };
static const char *const NAMES[GL_NAMES] = {"limit_response_header", "internal_ns",
                                            "limited_key"};

struct gw_limits_filter {
  /* x-gateway-limit; gw.internal and the key the access log's RL line looks for */
  gw_buffer names[GL_NAMES];
  size_t ids[GL_KINDS][GL_STATS];
  size_t buckets_id; /* the limits.buckets gauge */
};

gw_limits_filter *gw_limits_filter_new(gw_envoy_ptr config, const gj_node *root) {
  gw_limits_filter *f = calloc(1, sizeof *f);
  if (f == NULL) return NULL;
  for (int i = 0; i < GL_NAMES; i++) {
    const gj_node *name = gj_get(gj_get(root, "names"), NAMES[i]);
    char *copy = name != NULL && name->type == GJ_STRING ? malloc(name->length + 1) : NULL;
    if (copy == NULL) {
      gw_limits_filter_destroy(f);
      return NULL;
    }
    memcpy(copy, name->string, name->length + 1);
    f->names[i] = (gw_buffer){copy, name->length};
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
  free(f);
}

static void count(gw_envoy_ptr filter, const gw_limits_filter *f, int kind, int stat) {
  envoy_dynamic_module_callback_http_filter_increment_counter(filter, f->ids[kind][stat], NULL, 0,
                                                              1);
}

/* local_ratelimit's refusal: 429, its response_headers_to_add and the details; the listener's
 * local_reply mapper writes the body, as for Envoy's own 429. Envoy's RL response flag is not
 * the module's to set: the key in gw.internal has the access log write it (access_log.py), and
 * RL is the stream's custom flag too (%CUSTOM_FLAGS%). */
static int refuse(gw_envoy_ptr filter, const gw_limits_filter *f, int kind) {
  count(filter, f, kind, GL_RATE_LIMITED);
  count(filter, f, kind, GL_ENFORCED);
  gw_buffer kind_name = {KINDS[kind], strlen(KINDS[kind])};
  envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
      filter, f->names[GL_INTERNAL_NS], f->names[GL_LIMITED_KEY], kind_name);
  envoy_dynamic_module_callback_http_add_custom_flag(filter, (gw_buffer){"RL", 2});
  gw_header headers[] = {{f->names[GL_HEADER], kind_name}};
  envoy_dynamic_module_callback_http_send_response(filter, 429, headers, 1,
                                                   (gw_buffer){"local_rate_limited", 18},
                                                   (gw_buffer){"local_rate_limited", 18});
  return GW_HEADERS_STOP_ITERATION;
}

int gw_limits_request_headers(gw_envoy_ptr filter, const gw_limits_filter *f, void *body) {
  /* the gauge, when the buckets changed (a config made or destroyed, a consumer's bucket) */
  if (atomic_load_explicit(&buckets_changed, memory_order_relaxed) &&
      atomic_exchange_explicit(&buckets_changed, false, memory_order_relaxed))
    envoy_dynamic_module_callback_http_filter_set_gauge(filter, f->buckets_id, NULL, 0,
                                                        gl_live_buckets());
  const gw_body_stream *s = body;
  const gb_route *r = s != NULL ? s->route : NULL;
  if (r == NULL) return GW_HEADERS_CONTINUE;
  gb_route *route = (gb_route *)r; /* the buckets are the mutable part of the config */
  if (route->requests.count > 0) {
    count(filter, f, GL_REQUESTS, GL_ENABLED);
    if (!gl_admit(&route->requests, s->consumer, s->consumer_length, NULL))
      return refuse(filter, f, GL_REQUESTS);
    count(filter, f, GL_REQUESTS, GL_OK);
  }
  if (route->tokens.count > 0) {
    count(filter, f, GL_TOKENS, GL_ENABLED);
    if (!gl_admit(&route->tokens, s->consumer, s->consumer_length, s->charges))
      return refuse(filter, f, GL_TOKENS);
    count(filter, f, GL_TOKENS, GL_OK);
  }
  return GW_HEADERS_CONTINUE;
}
