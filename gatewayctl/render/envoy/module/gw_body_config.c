/* The body filter's config reader: the renderer's JSON (body_module.py) into gw_body_config.h's
 * structs. Every field is checked for its type; a config missing one, or holding something the
 * module cannot serve (a served route with token limits, a native API, a response cache),
 * is refused whole, and Envoy then rejects the listener. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_body_config.h"
#include "gw_value.h"

static bool take(const gj_node *node, gb_text *out) {
  if (node == NULL || node->type != GJ_STRING) return false;
  out->ptr = malloc(node->length + 1);
  if (out->ptr == NULL) return false;
  memcpy(out->ptr, node->string, node->length + 1);
  out->length = node->length;
  return true;
}

static bool take_key(const gj_node *node, gb_text *out) {
  out->ptr = malloc(node->key_length + 1);
  if (out->ptr == NULL) return false;
  memcpy(out->ptr, node->key, node->key_length + 1);
  out->length = node->key_length;
  return true;
}

static bool flag(const gj_node *node, bool *out) {
  if (node == NULL || node->type != GJ_BOOL) return false;
  *out = node->boolean;
  return true;
}

static bool integer(const gj_node *node, long long min, long long *out) {
  if (node == NULL || node->type != GJ_NUMBER || node->number < min) return false;
  *out = node->number;
  return true;
}

static bool is_object(const gj_node *node) { return node != NULL && node->type == GJ_OBJECT; }

static uint64_t hash(const char *p, size_t n) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
  return h;
}

bool gb_find_model(const gw_body *b, const char *model, size_t length, const gb_route **route) {
  size_t mask = b->model_capacity - 1;
  for (size_t i = hash(model, length) & mask;; i = (i + 1) & mask) {
    const gb_model *m = &b->models[i];
    if (m->model.ptr == NULL) return false;
    if (m->model.length == length && memcmp(m->model.ptr, model, length) == 0) {
      *route = m->route;
      return true;
    }
  }
}

/* An object of `true` members ({"name": true, ...}) as a list of its names. */
static bool name_set(const gj_node *node, gb_text **out, size_t *count) {
  if (!is_object(node)) return false;
  *out = calloc(node->count + 1, sizeof(gb_text));
  if (*out == NULL) return false;
  for (const gj_node *n = node->first; n != NULL; n = n->next) {
    if (n->type != GJ_BOOL || !n->boolean) return false;
    if (!take_key(n, &(*out)[(*count)++])) return false;
  }
  return true;
}

static bool load_names(gw_body *b, const gj_node *names) {
  const gj_node *headers = gj_get(names, "client_key_headers");
  if (headers == NULL || headers->type != GJ_ARRAY || headers->count > GB_MAX_KEY_HEADERS)
    return false;
  for (const gj_node *h = headers->first; h != NULL; h = h->next)
    if (!take(h, &b->key_headers[b->key_header_count++])) return false;
  return take(gj_get(names, "metadata_ns"), &b->metadata_ns) &&
         take(gj_get(names, "internal_ns"), &b->internal_ns) &&
         take(gj_get(names, "route_header"), &b->route_header) &&
         take(gj_get(names, "consumer_header"), &b->consumer_header) &&
         take(gj_get(names, "body_model_header"), &b->body_model_header) &&
         take(gj_get(names, "principal_header"), &b->principal_header) &&
         take(gj_get(names, "reply_header"), &b->reply_header) &&
         take(gj_get(names, "route_key"), &b->route_key) &&
         take(gj_get(names, "consumer_key"), &b->consumer_key) &&
         take(gj_get(names, "guard_set_key"), &b->guard_set_key) &&
         take(gj_get(names, "guard_text_key"), &b->guard_text_key) &&
         take(gj_get(names, "model_response_header"), &b->model_response_header) &&
         take(gj_get(names, "prompt_version_header"), &b->prompt_version_header) &&
         take(gj_get(names, "limit_response_header"), &b->limit_response_header) &&
         take(gj_get(names, "guardrail_response_header"), &b->guardrail_response_header) &&
         take(gj_get(names, "rbac_filter"), &b->rbac_filter) &&
         take(gj_get(names, "prompt_tokens_key"), &b->prompt_tokens_key) &&
         take(gj_get(names, "completion_tokens_key"), &b->completion_tokens_key) &&
         take(gj_get(names, "cost_key"), &b->cost_key);
}

/* A price: a decimal string (the renderer writes Python's repr of the float, which strtod
 * reads back to the same double; the config reader takes no fractions). */
static bool price(const gj_node *node, double *out) {
  char *end = NULL;
  if (node == NULL || node->type != GJ_STRING || node->length == 0) return false;
  *out = strtod(node->string, &end);
  return end == node->string + node->length && *out >= 0;
}

static bool load_prices(gw_body *b, const gj_node *prices) {
  if (!is_object(prices)) return false;
  b->prices = calloc(prices->count + 1, sizeof(gb_price));
  if (b->prices == NULL) return false;
  for (const gj_node *p = prices->first; p != NULL; p = p->next) {
    gb_price *out = &b->prices[b->price_count++];
    if (p->type != GJ_ARRAY || p->count != 2 || !take_key(p, &out->model) ||
        !price(p->first, &out->input) || !price(p->first->next, &out->output))
      return false;
  }
  return true;
}

const gb_price *gb_find_price(const gw_body *b, const char *model, size_t length) {
  for (size_t i = 0; i < b->price_count; i++)
    if (b->prices[i].model.length == length && memcmp(b->prices[i].model.ptr, model, length) == 0)
      return &b->prices[i];
  return NULL;
}

static bool load_limits(gb_route *r, const gj_node *limits) {
  if (limits == NULL) return true;
  if (limits->type != GJ_ARRAY || limits->count > GB_MAX_TOKEN_LIMITS) return false;
  for (const gj_node *l = limits->first; l != NULL; l = l->next) {
    gb_token_limit *out = &r->limits[r->limit_count++];
    const gj_node *by = gj_get(l, "by");
    long long max = 0;
    if (!take(gj_get(l, "key"), &out->key) || !take(gj_get(l, "header"), &out->header) ||
        !integer(gj_get(l, "max"), 1, &max) || by == NULL || by->type != GJ_STRING)
      return false;
    out->by_consumer = strcmp(by->string, "consumer") == 0;
    out->max = (double)max;
  }
  return true;
}

/* ---- numbers ------------------------------------------------------------------------------ */

size_t gb_format_int(long long value, char *out) {
  char digits[24];
  size_t n = 0, at = 0;
  unsigned long long v = value < 0 ? 0ULL - (unsigned long long)value : (unsigned long long)value;
  do {
    digits[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v > 0);
  if (value < 0) out[at++] = '-';
  while (n > 0) out[at++] = digits[--n];
  return at;
}

size_t gb_format_number(double value, char *out) {
  /* an integer below 10^14 prints the same through %.14g */
  if (value > -1e14 && value < 1e14 && value == (double)(long long)value &&
      !(value == 0 && signbit(value)))
    return gb_format_int((long long)value, out);
  int n = snprintf(out, 32, "%.14g", value);
  return n > 0 ? (size_t)n : 0;
}

double gb_round8(double value) {
  /* value * 1e8 is off the exact product by at most half an ulp; below 10^9 (where that is
   * under 10^-7) and away from a halfway point, rounding it gives the digits %.8f prints, and
   * k / 1e8 is the double strtod reads them back as (both correctly rounded). Otherwise:
   * printf and strtod. */
  double t = value * 1e8;
  if (t > -1e9 && t < 1e9) {
    double whole = floor(t), frac = t - whole;
    if (fabs(frac - 0.5) > 1e-6) {
      double k = frac < 0.5 ? whole : whole + 1;
      if (k == 0) return value < 0 ? -0.0 : 0.0;
      return k / 1e8;
    }
  }
  char rounded[400];
  snprintf(rounded, sizeof rounded, "%.8f", value);
  return strtod(rounded, NULL);
}

/* ---- token debt --------------------------------------------------------------------------- */

static gb_debt *debt_slot(gb_debts *t, const char *key, size_t length, bool create) {
  if (t->capacity == 0) {
    if (!create) return NULL;
    t->slots = calloc(64, sizeof(gb_debt));
    if (t->slots == NULL) return NULL;
    t->capacity = 64;
  }
  size_t mask = t->capacity - 1;
  for (size_t i = hash(key, length) & mask;; i = (i + 1) & mask) {
    gb_debt *d = &t->slots[i];
    if (d->key != NULL && d->length == length && memcmp(d->key, key, length) == 0) return d;
    if (d->key != NULL) continue;
    if (!create || t->count >= GB_MAX_DEBT_KEYS) return NULL;
    if (2 * (t->count + 1) > t->capacity) { /* grow, then look again */
      gb_debt *old = t->slots;
      size_t old_capacity = t->capacity, capacity = 2 * t->capacity;
      gb_debt *slots = calloc(capacity, sizeof(gb_debt));
      if (slots == NULL) return NULL;
      for (size_t j = 0; j < old_capacity; j++) {
        if (old[j].key == NULL) continue;
        size_t k = hash(old[j].key, old[j].length) & (capacity - 1);
        while (slots[k].key != NULL) k = (k + 1) & (capacity - 1);
        slots[k] = old[j];
      }
      free(old);
      t->slots = slots;
      t->capacity = capacity;
      return debt_slot(t, key, length, create);
    }
    d->key = malloc(length ? length : 1);
    if (d->key == NULL) return NULL;
    memcpy(d->key, key, length);
    d->length = length;
    d->debt = 0;
    t->count++;
    return d;
  }
}

double gb_debt_take(gw_body *b, uint32_t worker, const char *key, size_t length) {
  gb_debts *t = &b->workers[worker % GB_MAX_WORKERS];
  pthread_mutex_lock(&t->lock);
  gb_debt *d = debt_slot(t, key, length, false);
  double debt = 0;
  if (d != NULL) {
    debt = d->debt;
    d->debt = 0;
  }
  pthread_mutex_unlock(&t->lock);
  return debt;
}

void gb_debt_add(gw_body *b, uint32_t worker, const char *key, size_t length, double tokens) {
  gb_debts *t = &b->workers[worker % GB_MAX_WORKERS];
  pthread_mutex_lock(&t->lock);
  gb_debt *d = debt_slot(t, key, length, true);
  if (d != NULL) d->debt += tokens;
  pthread_mutex_unlock(&t->lock);
}

static bool load_endpoints(gw_body *b, const gj_node *endpoints) {
  if (!is_object(endpoints) || endpoints->count == 0) return false;
  b->endpoints = calloc(endpoints->count, sizeof(gb_endpoint));
  if (b->endpoints == NULL) return false;
  for (const gj_node *e = endpoints->first; e != NULL; e = e->next) {
    gb_endpoint *out = &b->endpoints[b->endpoint_count++];
    if (e->type != GJ_STRING || !take_key(e, &out->path)) return false;
    out->kind = strcmp(e->string, "chat") == 0          ? GB_CHAT
                : strcmp(e->string, "completions") == 0 ? GB_COMPLETIONS
                : strcmp(e->string, "embeddings") == 0  ? GB_EMBEDDINGS
                                                        : GB_OTHER;
  }
  return true;
}

static bool load_credentials(gw_body *b, const gj_node *providers) {
  if (!is_object(providers)) return false;
  b->credentials = calloc(providers->count + 1, sizeof(gb_credential));
  if (b->credentials == NULL) return false;
  for (const gj_node *p = providers->first; p != NULL; p = p->next) {
    const gj_node *cred = gj_get(p, "credential");
    if (!is_object(p)) return false;
    if (cred == NULL) continue;
    gb_credential *c = &b->credentials[b->credential_count++];
    if (!take_key(p, &c->provider) || !take(gj_get(cred, "file"), &c->file) ||
        !take(gj_get(cred, "header"), &c->header) || !take(gj_get(cred, "prefix"), &c->prefix) ||
        c->header.length == 0)
      return false;
  }
  return true;
}

static bool load_prompt(const gj_node *node, gb_prompt **out) {
  const gj_node *versions = gj_get(node, "versions");
  if (!is_object(node) || versions == NULL || versions->type != GJ_ARRAY || versions->count == 0)
    return false;
  gb_prompt *p = *out = calloc(1, sizeof *p);
  if (p == NULL || !take(gj_get(node, "name"), &p->name)) return false;
  p->versions = calloc(versions->count, sizeof(gb_version));
  if (p->versions == NULL) return false;
  for (const gj_node *v = versions->first; v != NULL; v = v->next) {
    gb_version *version = &p->versions[p->version_count++];
    const gj_node *required = gj_get(v, "required"), *parts = gj_get(v, "parts");
    if (!integer(gj_get(v, "version"), 0, &version->version) ||
        !integer(gj_get(v, "weight"), 0, &version->weight) || required == NULL ||
        required->type != GJ_ARRAY || parts == NULL || parts->type != GJ_ARRAY)
      return false;
    version->required = calloc(required->count + 1, sizeof(gb_text));
    version->parts = calloc(parts->count + 1, sizeof(gb_part));
    if (version->required == NULL || version->parts == NULL) return false;
    for (const gj_node *r = required->first; r != NULL; r = r->next)
      if (!take(r, &version->required[version->required_count++])) return false;
    for (const gj_node *part = parts->first; part != NULL; part = part->next) {
      gb_part *out_part = &version->parts[version->part_count++];
      const gj_node *var = gj_get(part, "var"), *fallback = gj_get(part, "default");
      out_part->is_var = var != NULL;
      if (!take(var != NULL ? var : gj_get(part, "text"), &out_part->text)) return false;
      if (fallback != NULL && !(out_part->has_default = take(fallback, &out_part->fallback)))
        return false;
    }
  }
  return true;
}

static unsigned redact_kinds(const gj_node *node, bool *ok) {
  unsigned kinds = 0;
  if (node == NULL) return 0;
  *ok = is_object(node);
  for (const gj_node *k = is_object(node) ? node->first : NULL; k != NULL; k = k->next) {
    if (strcmp(k->key, "email") == 0) kinds |= GW_REDACT_EMAIL;
    else if (strcmp(k->key, "ssn") == 0) kinds |= GW_REDACT_SSN;
    else if (strcmp(k->key, "credit-card") == 0) kinds |= GW_REDACT_CARD;
    else if (strcmp(k->key, "phone") == 0) kinds |= GW_REDACT_PHONE;
    else *ok = false;
  }
  return kinds;
}

static bool load_policy(gb_route *r, const gj_node *policy) {
  const gj_node *jwt = gj_get(policy, "jwt"), *allow = gj_get(policy, "allow"),
                *guard = gj_get(policy, "guard"), *limits = gj_get(policy, "token_limits");
  bool ok = true;
  r->redact = redact_kinds(gj_get(policy, "redact"), &ok);
  /* what the module does not do yet: such routes are the Lua's (body_module.py) */
  const gj_node *logs = gj_get(policy, "guard_logs");
  if (!ok || gj_get(policy, "cache") != NULL || gj_get(policy, "outguard") != NULL ||
      gj_get(policy, "global") != NULL || gj_get(policy, "global_tokens") != NULL ||
      !load_limits(r, limits) || (logs != NULL && !flag(logs, &r->guard_logs)))
    return false;
  if (jwt != NULL && !name_set(jwt, &r->jwt, &r->jwt_count)) return false;
  if (allow != NULL && !(r->has_allow = name_set(allow, &r->allow, &r->allow_count)))
    return false;
  if (guard != NULL && !(r->has_guard = take(guard, &r->guard))) return false;
  return flag(gj_get(policy, "needs_auth"), &r->needs_auth) &&
         flag(gj_get(policy, "keys_ok"), &r->keys_ok) &&
         integer(gj_get(policy, "max_bytes"), 0, &r->max_bytes);
}

static bool load_direct(gw_body *b, gb_route *r, const gj_node *direct) {
  if (direct == NULL) return true;
  const gj_node *pinned = gj_get(direct, "pinned");
  r->has_direct = true;
  if (!take(gj_get(direct, "model"), &r->direct_model) ||
      !take(gj_get(direct, "upstream"), &r->direct_upstream))
    return false;
  if (pinned == NULL) return true;
  const gj_node *provider = gj_get(pinned, "provider");
  r->pinned = true;
  if (!take(gj_get(pinned, "authority"), &r->authority) || provider == NULL ||
      provider->type != GJ_STRING)
    return false;
  for (size_t i = 0; i < b->credential_count; i++)
    if (strcmp(b->credentials[i].provider.ptr, provider->string) == 0)
      r->credential = &b->credentials[i];
  return true;
}

/* The route's `limits` ({"requests": [...], "tokens": [...]}, gw_limits.h), which the module
 * enforces itself; `capacity`: {"requests": n, "tokens": n}, the consumers kept per limit by
 * consumer (Envoy's max_dynamic_descriptors of each limiter). The token limits must be the
 * route's token_limits, in their order. */
static bool load_local_limits(gb_route *r, const gj_node *route, const gj_node *capacity) {
  const gj_node *limits = gj_get(route, "limits");
  if (limits == NULL) return true;
  long long requests = 0, tokens = 0;
  const gj_node *t = gj_get(limits, "tokens");
  r->module_limits = true;
  return is_object(limits) && integer(gj_get(capacity, "requests"), 1, &requests) &&
         integer(gj_get(capacity, "tokens"), 1, &tokens) &&
         gl_set_load(&r->requests, gj_get(limits, "requests"), requests, r->name.ptr,
                     r->name.length, "requests") &&
         gl_set_load(&r->tokens, t, tokens, r->name.ptr, r->name.length, "tokens") &&
         r->tokens.count == r->limit_count;
}

gw_buffer gb_log_key(const gw_body *b, int id) {
  static const char *const LITERAL[GB_LOG_KEYS] = {
      [GB_LOG_REQUESTED_MODEL] = "requested_model", [GB_LOG_PROMPT] = "prompt",
      [GB_LOG_PROMPT_VERSION] = "prompt_version", [GB_LOG_UPSTREAM_STATUS] = "upstream_status",
      [GB_LOG_GUARDRAIL] = "guardrail", [GB_LOG_CACHED_TOKENS] = "cached_tokens",
      [GB_LOG_COST] = "cost_usd"};
  const gb_text *named = id == GB_LOG_ROUTE               ? &b->route_key
                         : id == GB_LOG_CONSUMER          ? &b->consumer_key
                         : id == GB_LOG_PROMPT_TOKENS     ? &b->prompt_tokens_key
                         : id == GB_LOG_COMPLETION_TOKENS ? &b->completion_tokens_key
                                                          : NULL;
  if (named != NULL) return (gw_buffer){named->ptr, named->length};
  return (gw_buffer){LITERAL[id], strlen(LITERAL[id])};
}

/* An object of `true` members naming `gw` keys, as GB_LOG_* bits (other names: none). */
static bool key_mask(const gw_body *b, const gj_node *node, unsigned *mask) {
  if (!is_object(node)) return false;
  for (const gj_node *n = node->first; n != NULL; n = n->next) {
    if (n->type != GJ_BOOL || !n->boolean) return false;
    for (int id = 0; id < GB_LOG_KEYS; id++) {
      gw_buffer name = gb_log_key(b, id);
      if (name.length == n->key_length && memcmp(name.ptr, n->key, name.length) == 0)
        *mask |= 1u << id;
    }
  }
  return true;
}

static bool load_routes(gw_body *b, const gj_node *routes, const gj_node *policies,
                        const gj_node *capacity) {
  if (!is_object(routes) || !is_object(policies)) return false;
  b->routes = calloc(routes->count + 1, sizeof(gb_route));
  if (b->routes == NULL) return false;
  for (const gj_node *n = routes->first; n != NULL; n = n->next) {
    gb_route *r = &b->routes[b->route_count++];
    const gj_node *policy = gj_get(n, "policy"), *prompt = gj_get(n, "prompt"),
                  *consumer_header = gj_get(n, "consumer_header"),
                  *metadata_keys = gj_get(n, "metadata_keys");
    r->consumer_header = true; /* unless the renderer says nothing reads it */
    if (!is_object(n) || gj_get(n, "native") != NULL || !take_key(n, &r->name) ||
        (consumer_header != NULL && !flag(consumer_header, &r->consumer_header)) ||
        (metadata_keys != NULL && !key_mask(b, metadata_keys, &r->metadata_keys)) ||
        !take(gj_get(n, "public"), &r->public_name) || policy == NULL ||
        policy->type != GJ_STRING || !load_policy(r, gj_get(policies, policy->string)) ||
        (prompt != NULL && !load_prompt(prompt, &r->prompt)) ||
        !load_direct(b, r, gj_get(n, "direct")) || !load_local_limits(r, n, capacity))
      return false;
  }
  return true;
}

static bool load_models(gw_body *b, const gj_node *models) {
  if (!is_object(models)) return false;
  size_t capacity = 8;
  while (capacity < 2 * models->count) capacity *= 2;
  b->models = calloc(capacity, sizeof(gb_model));
  if (b->models == NULL) return false;
  b->model_capacity = capacity;
  for (const gj_node *m = models->first; m != NULL; m = m->next) {
    if (m->type != GJ_STRING) return false;
    const gb_route *route = NULL;
    if (gb_find_model(b, m->key, m->key_length, &route)) return false; /* repeated */
    for (size_t i = 0; i < b->route_count; i++)
      if (strcmp(b->routes[i].name.ptr, m->string) == 0) route = &b->routes[i];
    size_t mask = capacity - 1, i = hash(m->key, m->key_length) & mask;
    while (b->models[i].model.ptr != NULL) i = (i + 1) & mask;
    if (!take_key(m, &b->models[i].model)) return false;
    b->models[i].route = route;
  }
  return true;
}

static void drop(gb_text *t) { free(t->ptr); }

static void drop_list(gb_text *list, size_t count) {
  for (size_t i = 0; i < count; i++) drop(&list[i]);
  free(list);
}

static void drop_prompt(gb_prompt *p) {
  if (p == NULL) return;
  drop(&p->name);
  for (size_t i = 0; i < p->version_count; i++) {
    gb_version *v = &p->versions[i];
    drop_list(v->required, v->required_count);
    for (size_t j = 0; j < v->part_count; j++) {
      drop(&v->parts[j].text);
      drop(&v->parts[j].fallback);
    }
    free(v->parts);
  }
  free(p->versions);
  free(p);
}

void gw_body_destroy(gw_body *b) {
  if (b == NULL) return;
  gb_text *names[] = {&b->metadata_ns, &b->internal_ns, &b->route_header, &b->consumer_header,
                      &b->body_model_header, &b->principal_header, &b->reply_header,
                      &b->route_key, &b->consumer_key, &b->guard_set_key, &b->guard_text_key,
                      &b->model_response_header, &b->prompt_version_header,
                      &b->limit_response_header, &b->guardrail_response_header, &b->rbac_filter,
                      &b->prompt_tokens_key, &b->completion_tokens_key, &b->cost_key};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) drop(names[i]);
  for (size_t i = 0; i < b->key_header_count; i++) drop(&b->key_headers[i]);
  for (size_t i = 0; i < b->endpoint_count; i++) drop(&b->endpoints[i].path);
  free(b->endpoints);
  for (size_t i = 0; b->models != NULL && i < b->model_capacity; i++) drop(&b->models[i].model);
  free(b->models);
  for (size_t i = 0; i < b->route_count; i++) {
    gb_route *r = &b->routes[i];
    gb_text *texts[] = {&r->name, &r->public_name, &r->guard, &r->direct_model,
                        &r->direct_upstream, &r->authority};
    for (size_t j = 0; j < sizeof texts / sizeof texts[0]; j++) drop(texts[j]);
    for (size_t j = 0; j < r->limit_count; j++) {
      drop(&r->limits[j].key);
      drop(&r->limits[j].header);
    }
    drop_list(r->jwt, r->jwt_count);
    drop_list(r->allow, r->allow_count);
    drop_prompt(r->prompt);
    gl_set_free(&r->requests);
    gl_set_free(&r->tokens);
  }
  free(b->routes);
  for (size_t i = 0; i < b->credential_count; i++) {
    gb_credential *c = &b->credentials[i];
    gb_text *texts[] = {&c->provider, &c->file, &c->header, &c->prefix};
    for (size_t j = 0; j < sizeof texts / sizeof texts[0]; j++) drop(texts[j]);
    free(c->value);
  }
  free(b->credentials);
  for (size_t i = 0; i < b->price_count; i++) drop(&b->prices[i].model);
  free(b->prices);
  for (size_t i = 0; i < GB_MAX_WORKERS; i++) {
    gb_debts *t = &b->workers[i];
    for (size_t j = 0; j < t->capacity; j++) free(t->slots[j].key);
    free(t->slots);
    if (b->lock_ready) pthread_mutex_destroy(&t->lock);
  }
  if (b->lock_ready) pthread_mutex_destroy(&b->lock);
  free(b);
}

gw_body *gw_body_new(const gj_node *config) {
  gw_body *b = calloc(1, sizeof *b);
  if (b == NULL) return NULL;
  bool ok = load_names(b, gj_get(config, "names")) &&
            load_endpoints(b, gj_get(config, "endpoints")) &&
            load_credentials(b, gj_get(config, "providers")) &&
            load_routes(b, gj_get(config, "routes"), gj_get(config, "policies"),
                        gj_get(config, "limit_capacity")) &&
            load_models(b, gj_get(config, "models")) &&
            load_prices(b, gj_get(config, "prices")) &&
            integer(gj_get(config, "secret_ttl_s"), 0, &b->secret_ttl_s) &&
            (gj_get(config, "log_only") == NULL ||
             key_mask(b, gj_get(config, "log_only"), &b->log_only)) &&
            pthread_mutex_init(&b->lock, NULL) == 0;
  if (!ok) {
    gw_body_destroy(b);
    return NULL;
  }
  for (size_t i = 0; i < GB_MAX_WORKERS; i++) {
    if (pthread_mutex_init(&b->workers[i].lock, NULL) != 0) { /* not expected on Linux */
      while (i-- > 0) pthread_mutex_destroy(&b->workers[i].lock);
      pthread_mutex_destroy(&b->lock);
      gw_body_destroy(b);
      return NULL;
    }
  }
  b->lock_ready = true;
  /* the logger's check compares the stream's values with Envoy's: every one written there */
  const char *check = getenv("GATEWAYCTL_ACCESS_LOG_CHECK");
  if (check != NULL && strcmp(check, "1") == 0) b->log_only = 0;
  return b;
}
