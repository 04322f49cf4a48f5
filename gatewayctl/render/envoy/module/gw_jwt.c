/* JWT principals for the compiled auth filter: what lua/jwt.lua finds in jwt_authn's dynamic
 * metadata, read from the two request headers the renderer has Envoy hand it over instead
 * (docs/data-plane.md, "Compiled filters"): this ABI's metadata getters return top-level
 * strings, numbers and booleans only, and jwt_authn writes structs.
 *
 * For each provider, in the config's order:
 *   - its payload header (jwt_authn's forward_payload_header: the verified token's payload,
 *     base64url): the provider verified the token; its consumer claim, read from the payload
 *     JSON, names the consumer when it is a string naming one, else the outcome is "unknown";
 *   - its failure header (a header_mutation filter right after jwt_authn copies the message of
 *     jwt_authn's failed_status_in_metadata into it): why the provider refused the token,
 *     classified by the message exactly as jwt.lua does (expired; not a token at all, left to
 *     the API-key path; another issuer's; anything else invalid).
 * Client copies of both headers are removed before any filter runs (the connection manager's
 * early header mutation) and before a request goes upstream (the route table). */
#include <stdlib.h>
#include <string.h>

#include "gw_module.h"

#define MAX_PROVIDER_NAME 63
#define MAX_CLAIM_BYTES 256
#define MAX_PAYLOAD_BYTES 65536 /* base64url characters; Envoy's headers are smaller */

typedef struct {
  char *ptr;
  size_t length;
} jtext;

typedef struct {
  jtext name, claim, payload_header, failed_header;
  bool *has_cap; /* per consumer (gw_jwt.consumers order) */
  long long *cap;
} provider;

struct gw_jwt {
  provider *providers;
  size_t provider_count;
  jtext *consumers; /* every consumer a token may name */
  size_t consumer_count;
};

/* ---- config ------------------------------------------------------------------------------ */

static bool copy_text(const gj_node *node, size_t max, jtext *out) {
  if (node == NULL || node->type != GJ_STRING || node->length == 0 || node->length > max)
    return false;
  out->ptr = malloc(node->length + 1);
  if (out->ptr == NULL) return false;
  memcpy(out->ptr, node->string, node->length + 1);
  out->length = node->length;
  return true;
}

void gw_jwt_destroy(gw_jwt *j) {
  if (j == NULL) return;
  for (size_t i = 0; i < j->provider_count; i++) {
    provider *p = &j->providers[i];
    free(p->name.ptr);
    free(p->claim.ptr);
    free(p->payload_header.ptr);
    free(p->failed_header.ptr);
    free(p->has_cap);
    free(p->cap);
  }
  free(j->providers);
  for (size_t i = 0; i < j->consumer_count; i++) free(j->consumers[i].ptr);
  free(j->consumers);
  free(j);
}

static bool load_consumers(gw_jwt *j, const gj_node *consumers) {
  if (consumers == NULL || consumers->type != GJ_OBJECT) return false;
  if (consumers->count == 0) return true;
  j->consumers = calloc(consumers->count, sizeof(jtext));
  if (j->consumers == NULL) return false;
  for (const gj_node *c = consumers->first; c != NULL; c = c->next) {
    if (c->type != GJ_BOOL || !c->boolean || c->key_length == 0 ||
        c->key_length > GW_MAX_NAME_BYTES)
      return false;
    jtext *t = &j->consumers[j->consumer_count++];
    t->ptr = malloc(c->key_length + 1);
    if (t->ptr == NULL) return false;
    memcpy(t->ptr, c->key, c->key_length + 1);
    t->length = c->key_length;
  }
  return true;
}

static bool load_provider(gw_jwt *j, provider *p, const gj_node *node, const gj_node *caps) {
  if (!copy_text(gj_get(node, "name"), MAX_PROVIDER_NAME, &p->name) ||
      !copy_text(gj_get(node, "claim"), MAX_CLAIM_BYTES, &p->claim) ||
      !copy_text(gj_get(node, "payload_header"), MAX_CLAIM_BYTES, &p->payload_header) ||
      !copy_text(gj_get(node, "failed_header"), MAX_CLAIM_BYTES, &p->failed_header))
    return false;
  const gj_node *by_consumer = gj_get(caps, p->name.ptr);
  if (by_consumer == NULL || by_consumer->type != GJ_OBJECT) return false;
  p->has_cap = calloc(j->consumer_count + 1, sizeof(bool));
  p->cap = calloc(j->consumer_count + 1, sizeof(long long));
  if (p->has_cap == NULL || p->cap == NULL) return false;
  for (const gj_node *c = by_consumer->first; c != NULL; c = c->next)
    if (c->type != GJ_NUMBER || c->number < 0) return false;
  for (size_t i = 0; i < j->consumer_count; i++) {
    const gj_node *cap = gj_get(by_consumer, j->consumers[i].ptr);
    if (cap != NULL) {
      p->has_cap[i] = true;
      p->cap[i] = cap->number;
    }
  }
  return true;
}

bool gw_jwt_load(const gj_node *jwt, const gj_node *consumers, const gj_node *caps,
                 gw_jwt **out) {
  *out = NULL;
  if (jwt == NULL || jwt->type == GJ_NULL) return true; /* no JWT policy */
  const gj_node *providers = gj_get(jwt, "providers");
  if (providers == NULL || providers->type != GJ_ARRAY || providers->count == 0 ||
      caps == NULL || caps->type != GJ_OBJECT)
    return false;
  gw_jwt *j = calloc(1, sizeof *j);
  if (j == NULL) return false;
  j->providers = calloc(providers->count, sizeof(provider));
  bool ok = j->providers != NULL && load_consumers(j, consumers);
  for (const gj_node *p = ok ? providers->first : NULL; p != NULL && ok; p = p->next)
    ok = load_provider(j, &j->providers[j->provider_count++], p, caps);
  if (!ok) {
    gw_jwt_destroy(j);
    return false;
  }
  *out = j;
  return true;
}

/* ---- the payload: base64url, then the claim's member of the JSON object -------------------- */

static int b64url_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

/* The decoded bytes (malloc'd, length in *n), or NULL if `s` is not base64url (padding
 * allowed) or too long. */
static unsigned char *b64url_decode(const char *s, size_t length, size_t *n) {
  while (length > 0 && s[length - 1] == '=') length--;
  if (length == 0 || length > MAX_PAYLOAD_BYTES || length % 4 == 1) return NULL;
  unsigned char *out = malloc(length * 3 / 4 + 3);
  if (out == NULL) return NULL;
  unsigned long acc = 0;
  int bits = 0;
  size_t at = 0;
  for (size_t i = 0; i < length; i++) {
    int v = b64url_value((unsigned char)s[i]);
    if (v < 0) {
      free(out);
      return NULL;
    }
    acc = (acc << 6) | (unsigned long)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[at++] = (unsigned char)((acc >> bits) & 0xFF);
    }
  }
  *n = at;
  return out;
}

typedef struct {
  const unsigned char *p, *end;
} scan;

static void skip_ws(scan *s) {
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
    s->p++;
}

static int hex4(const unsigned char *p, const unsigned char *end) {
  if (end - p < 4) return -1;
  int v = 0;
  for (int i = 0; i < 4; i++) {
    unsigned char c = p[i];
    int d = c >= '0' && c <= '9' ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

/* Appends a code point as UTF-8 to out (cap bytes); false when it does not fit. */
static bool put(unsigned char *out, size_t cap, size_t *n, unsigned long cp) {
  unsigned char b[4];
  size_t k;
  if (cp < 0x80) {
    b[0] = (unsigned char)cp;
    k = 1;
  } else if (cp < 0x800) {
    b[0] = (unsigned char)(0xC0 | (cp >> 6));
    b[1] = (unsigned char)(0x80 | (cp & 0x3F));
    k = 2;
  } else if (cp < 0x10000) {
    b[0] = (unsigned char)(0xE0 | (cp >> 12));
    b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    b[2] = (unsigned char)(0x80 | (cp & 0x3F));
    k = 3;
  } else {
    b[0] = (unsigned char)(0xF0 | (cp >> 18));
    b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    b[3] = (unsigned char)(0x80 | (cp & 0x3F));
    k = 4;
  }
  if (*n + k > cap) return false;
  memcpy(out + *n, b, k);
  *n += k;
  return true;
}

/* s->p at an opening quote: the string decoded into out (at most cap bytes) and s->p past the
 * closing quote. Returns false on a malformed string; *fits is false when the decoded text is
 * longer than cap or holds what no name can (a control character, a lone surrogate): such a
 * string equals no claim and no consumer. */
static bool read_string(scan *s, unsigned char *out, size_t cap, size_t *n, bool *fits) {
  *n = 0;
  *fits = true;
  if (s->p >= s->end || *s->p != '"') return false;
  s->p++;
  while (s->p < s->end) {
    unsigned char c = *s->p++;
    if (c == '"') return true;
    if (c != '\\') {
      if (c < 0x20 || *n >= cap) *fits = false;
      else out[(*n)++] = c;
      continue;
    }
    if (s->p >= s->end) return false;
    unsigned char e = *s->p++;
    unsigned long cp;
    switch (e) {
      case '"': cp = '"'; break;
      case '\\': cp = '\\'; break;
      case '/': cp = '/'; break;
      case 'b': cp = '\b'; break;
      case 'f': cp = '\f'; break;
      case 'n': cp = '\n'; break;
      case 'r': cp = '\r'; break;
      case 't': cp = '\t'; break;
      case 'u': {
        int v = hex4(s->p, s->end);
        if (v < 0) return false;
        s->p += 4;
        cp = (unsigned long)v;
        if (v >= 0xD800 && v <= 0xDBFF && s->end - s->p >= 6 && s->p[0] == '\\' &&
            s->p[1] == 'u') {
          int low = hex4(s->p + 2, s->end);
          if (low >= 0xDC00 && low <= 0xDFFF) {
            s->p += 6;
            cp = 0x10000 + (((unsigned long)v - 0xD800) << 10) + ((unsigned long)low - 0xDC00);
          }
        }
        if (cp >= 0xD800 && cp <= 0xDFFF) *fits = false; /* a lone surrogate */
        break;
      }
      default: return false;
    }
    if (cp < 0x20 || (*fits && !put(out, cap, n, cp))) *fits = false;
  }
  return false;
}

/* s->p at an opening quote: past the closing one, nothing decoded. */
static bool skip_string(scan *s) {
  for (s->p++; s->p < s->end; s->p++) {
    if (*s->p == '"') {
      s->p++;
      return true;
    }
    if (*s->p == '\\' && ++s->p >= s->end) return false;
  }
  return false;
}

/* s->p at a value: past it (strings, numbers, literals, nested objects and arrays). */
static bool skip_value(scan *s) {
  size_t depth = 0;
  do {
    if (s->p >= s->end) return false;
    unsigned char c = *s->p;
    if (c == '"') {
      if (!skip_string(s)) return false;
    } else if (c == '{' || c == '[') {
      depth++;
      s->p++;
    } else if (c == '}' || c == ']') {
      if (depth == 0) return false;
      depth--;
      s->p++;
    } else if (depth > 0) {
      s->p++; /* separators, whitespace, numbers and literals inside a container */
    } else {
      while (s->p < s->end && *s->p != ',' && *s->p != '}' && *s->p != ']' && *s->p != ' ' &&
             *s->p != '\t' && *s->p != '\n' && *s->p != '\r')
        s->p++;
    }
  } while (depth > 0);
  return true;
}

/* The consumer the payload's `claim` member names (its index), or -1: the member is missing,
 * not a string, or names no consumer (the last of repeated members counts). */
static long claimed_consumer(const gw_jwt *j, const provider *p, const unsigned char *json,
                             size_t length) {
  scan s = {json, json + length};
  unsigned char key[MAX_CLAIM_BYTES], value[GW_MAX_NAME_BYTES];
  size_t value_length = 0;
  bool found = false;
  skip_ws(&s);
  if (s.p >= s.end || *s.p++ != '{') return -1;
  skip_ws(&s);
  if (s.p < s.end && *s.p == '}') return -1;
  for (;;) {
    size_t n;
    bool fits;
    if (!read_string(&s, key, sizeof key, &n, &fits)) return -1;
    bool is_claim = fits && n == p->claim.length && memcmp(key, p->claim.ptr, n) == 0;
    skip_ws(&s);
    if (s.p >= s.end || *s.p++ != ':') return -1;
    skip_ws(&s);
    if (is_claim && s.p < s.end && *s.p == '"') {
      if (!read_string(&s, value, sizeof value, &value_length, &fits)) return -1;
      found = fits;
    } else {
      if (is_claim) found = false;
      if (!skip_value(&s)) return -1;
    }
    skip_ws(&s);
    if (s.p >= s.end) return -1;
    if (*s.p == '}') break;
    if (*s.p++ != ',') return -1;
    skip_ws(&s);
  }
  if (!found) return -1;
  for (size_t i = 0; i < j->consumer_count; i++)
    if (j->consumers[i].length == value_length &&
        memcmp(j->consumers[i].ptr, value, value_length) == 0)
      return (long)i;
  return -1;
}

/* ---- the request ----------------------------------------------------------------------------- */

static bool contains(const char *hay, size_t n, const char *needle) {
  size_t k = strlen(needle);
  for (size_t i = 0; k <= n && i <= n - k; i++)
    if (memcmp(hay + i, needle, k) == 0) return true;
  return false;
}

/* jwt_authn's messages for a bearer value that is not a token (left to the API-key path). */
static bool not_a_token(const char *m, size_t n) {
  return contains(m, n, "not in the form") || contains(m, n, "Jwt is missing") ||
         contains(m, n, "Jwt header is an invalid");
}

static gw_buffer text_buffer(jtext t) { return (gw_buffer){t.ptr, t.length}; }

void gw_jwt_principal(gw_envoy_ptr filter, const gw_jwt *j, gw_jwt_result *out) {
  enum { NONE, INVALID, OTHER_ISSUER, EXPIRED } failure = NONE;
  memset(out, 0, sizeof *out);
  for (size_t i = 0; i < j->provider_count; i++) {
    const provider *p = &j->providers[i];
    gw_header_value v;
    if (gw_request_header(filter, text_buffer(p->payload_header), &v)) {
      size_t n = 0;
      unsigned char *json = b64url_decode(v.ptr, v.length, &n);
      free(v.owned);
      long c = json != NULL ? claimed_consumer(j, p, json, n) : -1;
      free(json);
      if (c < 0) {
        out->outcome = GW_JWT_UNKNOWN;
        return;
      }
      out->outcome = GW_JWT_CONSUMER;
      out->provider = p->name.ptr;
      out->provider_length = p->name.length;
      out->consumer = j->consumers[c].ptr;
      out->consumer_length = j->consumers[c].length;
      out->has_cap = p->has_cap[c];
      out->cap = p->cap[c];
      return;
    }
    if (!gw_request_header(filter, text_buffer(p->failed_header), &v)) continue;
    /* The provider whose issuer the token names says why; the others only that it is not
     * theirs. */
    bool other_issuer = contains(v.ptr, v.length, "issuer is not configured");
    if (contains(v.ptr, v.length, "expired"))
      failure = EXPIRED;
    else if (!not_a_token(v.ptr, v.length) && !other_issuer)
      failure = failure == NONE ? INVALID : failure;
    else if (failure == NONE && other_issuer)
      failure = OTHER_ISSUER;
    free(v.owned);
  }
  out->outcome = failure == EXPIRED                               ? GW_JWT_EXPIRED
                 : failure == INVALID || failure == OTHER_ISSUER ? GW_JWT_INVALID
                                                                  : GW_JWT_NONE;
}
