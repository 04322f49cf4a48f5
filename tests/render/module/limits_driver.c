/* The module's local limits (gw_limits.h) alone, under the sanitizers
 * (tests/render/test_module_limits.py): the LRU of consumers, the order several limits are
 * consumed in, charges, threads admitting through shared buckets while consumers churn
 * through the LRU, and the registry: a new config adopting unchanged limits, a changed one
 * starting full, the buckets freed with the last config. Prints "name value" lines the test
 * checks. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_json.h"
#include "gw_limits.h"

/* gw_limits.c's filter part calls Envoy; not driven here. */
int envoy_dynamic_module_callback_http_filter_config_define_counter(gw_envoy_ptr c, gw_buffer n,
                                                                    gw_buffer *l, size_t k,
                                                                    size_t *id);
int envoy_dynamic_module_callback_http_filter_config_define_counter(gw_envoy_ptr c, gw_buffer n,
                                                                    gw_buffer *l, size_t k,
                                                                    size_t *id) {
  (void)c, (void)n, (void)l, (void)k;
  *id = 0;
  return 0;
}
int envoy_dynamic_module_callback_http_filter_increment_counter(gw_envoy_ptr f, size_t id,
                                                                gw_buffer *l, size_t k,
                                                                uint64_t v);
int envoy_dynamic_module_callback_http_filter_increment_counter(gw_envoy_ptr f, size_t id,
                                                                gw_buffer *l, size_t k,
                                                                uint64_t v) {
  (void)f, (void)id, (void)l, (void)k, (void)v;
  return 0;
}
int envoy_dynamic_module_callback_http_filter_config_define_gauge(gw_envoy_ptr c, gw_buffer n,
                                                                  gw_buffer *l, size_t k,
                                                                  size_t *id);
int envoy_dynamic_module_callback_http_filter_config_define_gauge(gw_envoy_ptr c, gw_buffer n,
                                                                  gw_buffer *l, size_t k,
                                                                  size_t *id) {
  (void)c, (void)n, (void)l, (void)k;
  *id = 0;
  return 0;
}
int envoy_dynamic_module_callback_http_filter_set_gauge(gw_envoy_ptr f, size_t id, gw_buffer *l,
                                                        size_t k, uint64_t v);
int envoy_dynamic_module_callback_http_filter_set_gauge(gw_envoy_ptr f, size_t id, gw_buffer *l,
                                                        size_t k, uint64_t v) {
  (void)f, (void)id, (void)l, (void)k, (void)v;
  return 0;
}
void envoy_dynamic_module_callback_http_add_custom_flag(gw_envoy_ptr f, gw_buffer flag);
void envoy_dynamic_module_callback_http_add_custom_flag(gw_envoy_ptr f, gw_buffer flag) {
  (void)f, (void)flag;
}
void envoy_dynamic_module_callback_http_set_dynamic_metadata_string(gw_envoy_ptr f, gw_buffer ns,
                                                                    gw_buffer k, gw_buffer v) {
  (void)f, (void)ns, (void)k, (void)v;
}
bool gb_first_header(gw_envoy_ptr f, int t, gw_buffer k, gw_buffer *v);
bool gb_first_header(gw_envoy_ptr f, int t, gw_buffer k, gw_buffer *v) {
  (void)f, (void)t, (void)k;
  *v = (gw_buffer){NULL, 0};
  return false;
}
void envoy_dynamic_module_callback_http_send_response(gw_envoy_ptr f, uint32_t s, gw_header *h,
                                                      size_t n, gw_buffer b, gw_buffer d) {
  (void)f, (void)s, (void)h, (void)n, (void)b, (void)d;
}

static gl_set load_route(const char *route, const char *json, long long capacity) {
  gj_node *root = gj_parse(json, strlen(json));
  gl_set set;
  if (root == NULL || !gl_set_load(&set, root, capacity, route, strlen(route), "requests")) {
    printf("load_failed 1\n");
    exit(1);
  }
  gj_free(root);
  return set;
}

static gl_set load(const char *json, long long capacity) {
  return load_route("r", json, capacity);
}

static bool admit(gl_set *set, const char *consumer) {
  return gl_admit(set, consumer, strlen(consumer), NULL);
}

/* the threads' shared limits: by route 1000 per 100 hours (no refill meanwhile), and by
 * consumer (never refusing) with a capacity of 8 for 64 consumers, so that buckets are dropped
 * and made all the time */
static gl_set shared;
static int admitted_by_thread[4];

static void *churn(void *arg) {
  int t = (int)(intptr_t)arg;
  char consumer[16];
  for (int i = 0; i < 20000; i++) {
    snprintf(consumer, sizeof consumer, "c%d", (i * 7 + t * 13) % 64);
    if (admit(&shared, consumer)) admitted_by_thread[t]++;
  }
  return NULL;
}

int main(void) {
  /* LRU, capacity 2, one request an hour per consumer */
  gl_set lru = load("[{\"max\":1,\"fill_ms\":3600000,\"by_consumer\":true}]", 2);
  int lru_ok = admit(&lru, "a") && !admit(&lru, "a") && admit(&lru, "b") &&
               admit(&lru, "c") /* drops a */ && admit(&lru, "a") /* new, drops b */ &&
               !admit(&lru, "c") && admit(&lru, "b");
  printf("lru %d\n", lru_ok);
  gl_set_free(&lru);

  /* two limits: 4 an hour by route, 2 an hour by consumer: the consumer's goes first and a
   * refusal by it leaves the route's untouched */
  gl_set two = load("[{\"max\":4,\"fill_ms\":3600000,\"by_consumer\":false},"
                    "{\"max\":2,\"fill_ms\":3600000,\"by_consumer\":true}]", 10);
  int order_ok = admit(&two, "s") && admit(&two, "s") && !admit(&two, "s") &&
                 admit(&two, "h") && admit(&two, "h") && !admit(&two, "h") &&
                 !admit(&two, "x") /* the route's 4 are gone */;
  printf("order %d\n", order_ok);
  gl_set_free(&two);

  /* a charge: refused whole when larger than what is left, nothing taken */
  gl_set tokens = load("[{\"max\":100,\"fill_ms\":3600000,\"by_consumer\":true}]", 10);
  uint64_t one = 1, big = 73, huge = 101;
  int charge_ok = gl_admit(&tokens, "s", 1, &big) && !gl_admit(&tokens, "s", 1, &big) &&
                  gl_admit(&tokens, "s", 1, &one) && !gl_admit(&tokens, "t", 1, &huge) &&
                  gl_admit(&tokens, "t", 1, &big);
  printf("charge %d\n", charge_ok);
  /* gl_wait: "s" has 26 left (100 an hour: one each 36 s), 73 are 47 missing: 1,692 s; "t"
   * has 27, so 74 is 1,692 s too; a consumer without a bucket has a full one: 0 */
  uint64_t more = 74;
  double s_wait = gl_wait(&tokens, "s", 1, &big), t_wait = gl_wait(&tokens, "t", 1, &more);
  int wait_ok = s_wait > 1691.9 && s_wait <= 1692.0 && t_wait > 1691.9 && t_wait <= 1692.0 &&
                gl_wait(&tokens, "u", 1, &big) == 0.0;
  printf("wait %d\n", wait_ok);
  gl_set_free(&tokens);

  /* invalid configs are refused */
  const char *bad[] = {"{}", "[{\"max\":0,\"fill_ms\":1000,\"by_consumer\":true}]",
                       "[{\"max\":1,\"fill_ms\":10,\"by_consumer\":true}]",
                       "[{\"max\":1,\"fill_ms\":1000}]",
                       "[1,2,3,4,5,6,7,8,9]"};
  int refused = 0;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    gj_node *root = gj_parse(bad[i], strlen(bad[i]));
    gl_set set;
    if (!gl_set_load(&set, root, 10, "r", 1, "requests")) refused++;
    gl_set_free(&set);
    gj_free(root);
  }
  printf("refused %d\n", refused);

  shared = load("[{\"max\":1000,\"fill_ms\":360000000,\"by_consumer\":false},"
                "{\"max\":1000000000,\"fill_ms\":3600000,\"by_consumer\":true}]", 8);
  pthread_t threads[4];
  for (int t = 0; t < 4; t++) pthread_create(&threads[t], NULL, churn, (void *)(intptr_t)t);
  int total = 0;
  for (int t = 0; t < 4; t++) {
    pthread_join(threads[t], NULL);
    total += admitted_by_thread[t];
  }
  printf("threads_admitted %d\n", total);
  gl_set_free(&shared);

  /* the registry: config b made while a lives (as Envoy does) adopts a's exhausted limits, by
   * route and by consumer, and keeps them once a is gone; a changed limit (another max), the
   * same limit on another route and one removed then added back start full */
  const char *pair = "[{\"max\":2,\"fill_ms\":3600000,\"by_consumer\":false},"
                    "{\"max\":1,\"fill_ms\":3600000,\"by_consumer\":true}]";
  gl_set a = load(pair, 10);
  int reload_ok = gl_live_buckets() == 1 && admit(&a, "x") && !admit(&a, "x") &&
                  gl_live_buckets() == 2;
  gl_set b = load(pair, 10);
  reload_ok = reload_ok && !admit(&b, "x") && admit(&b, "y") && gl_live_buckets() == 3;
  gl_set_free(&a);
  reload_ok = reload_ok && !admit(&b, "x") && !admit(&b, "z") /* the route's 2 are gone (z's bucket made) */ &&
              gl_live_buckets() == 4;
  gl_set changed = load("[{\"max\":3,\"fill_ms\":3600000,\"by_consumer\":false},"
                        "{\"max\":1,\"fill_ms\":3600000,\"by_consumer\":true}]", 10);
  gl_set other = load_route("s", pair, 10);
  reload_ok = reload_ok && !admit(&changed, "x") /* the consumer's limit is unchanged */ &&
              admit(&other, "x") && gl_live_buckets() == 7;
  gl_set_free(&changed);
  gl_set_free(&other);
  gl_set_free(&b);
  reload_ok = reload_ok && gl_live_buckets() == 0;
  gl_set again = load(pair, 10);
  reload_ok = reload_ok && admit(&again, "x");
  printf("reload %d\n", reload_ok);

  /* the consumers kept follow the newest config: a smaller capacity drops the least recently
   * used at adoption, the others keep their counts; a larger one keeps them all */
  const char *hourly = "[{\"max\":1,\"fill_ms\":3600000,\"by_consumer\":true}]";
  gl_set wide = load_route("cap", hourly, 3);
  int capacity_ok = admit(&wide, "x") && admit(&wide, "y") && admit(&wide, "z") &&
                    gl_live_buckets() == 5 /* with again's two */;
  gl_set narrow = load_route("cap", hourly, 2);
  capacity_ok = capacity_ok && gl_live_buckets() == 4 && !admit(&narrow, "z") &&
                !admit(&narrow, "y") && admit(&narrow, "x") /* dropped: starts full */;
  gl_set_free(&wide);
  gl_set wider = load_route("cap", hourly, 50);
  capacity_ok = capacity_ok && !admit(&wider, "y") && !admit(&wider, "x") &&
                gl_live_buckets() == 4;
  gl_set_free(&narrow);
  gl_set_free(&wider);
  printf("capacity %d\n", capacity_ok);

  /* 50 reloads, each config made before the last is freed: the buckets stay bounded */
  size_t most = 0;
  for (int i = 0; i < 50; i++) {
    gl_set next = load(pair, 10);
    char consumer[16];
    snprintf(consumer, sizeof consumer, "c%d", i % 5);
    admit(&next, consumer);
    gl_set_free(&again);
    again = next;
    if (gl_live_buckets() > most) most = gl_live_buckets();
  }
  gl_set_free(&again);
  printf("reloads_most %zu\n", most);
  printf("live_after %zu\n", gl_live_buckets());
  return 0;
}
