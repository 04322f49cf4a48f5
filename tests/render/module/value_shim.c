/* What tests/render/test_module_value.py calls through ctypes, beside gw_value.h's own
 * functions: a decoded body written out in one canonical form (the test writes the Lua's
 * decode in the same form), and the other functions over whole byte strings. Every result is
 * a malloc'd buffer the caller frees with gvt_free. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_value.h"

static void put_text(gw_out *out, const char *bytes, size_t length) {
  char head[32];
  int n = snprintf(head, sizeof head, "s%zu:", length);
  gw_out_append(out, head, (size_t)n);
  gw_out_append(out, bytes, length);
}

static int member_order(const void *a, const void *b) {
  const gv_member *x = *(const gv_member *const *)a, *y = *(const gv_member *const *)b;
  size_t n = x->key_length < y->key_length ? x->key_length : y->key_length;
  int c = n ? memcmp(x->key, y->key, n) : 0;
  if (c) return c;
  return (x->key_length > y->key_length) - (x->key_length < y->key_length);
}

/* n null, t / f, d<%.17g>; for numbers, s<length>:<bytes>, [..], {key value ..} with the keys
 * sorted (sorted != 0) or in the object's own order */
static void dump(const gv_value *v, int sorted, gw_out *out) {
  char b[64];
  switch (v->type) {
    case GV_NULL: gw_out_append(out, "n", 1); break;
    case GV_TRUE: gw_out_append(out, "t", 1); break;
    case GV_FALSE: gw_out_append(out, "f", 1); break;
    case GV_NUMBER: {
      int n = snprintf(b, sizeof b, "d%.17g;", v->number);
      gw_out_append(out, b, (size_t)n);
      break;
    }
    case GV_STRING: put_text(out, v->string, v->length); break;
    case GV_ARRAY:
      gw_out_append(out, "[", 1);
      for (size_t i = 0; i < v->item_count; i++) dump(v->items[i], sorted, out);
      gw_out_append(out, "]", 1);
      break;
    case GV_OBJECT: {
      const gv_member **order = malloc((v->member_count + 1) * sizeof *order);
      for (size_t i = 0; i < v->member_count; i++) order[i] = &v->members[i];
      if (sorted) qsort(order, v->member_count, sizeof *order, member_order);
      gw_out_append(out, "{", 1);
      for (size_t i = 0; i < v->member_count; i++) {
        put_text(out, order[i]->key, order[i]->key_length);
        dump(order[i]->value, sorted, out);
      }
      gw_out_append(out, "}", 1);
      free(order);
      break;
    }
  }
}

static char *finish(gw_out *out, size_t *length) {
  gw_out_append(out, "", 0);
  *length = out->length;
  if (out->ptr == NULL) return calloc(1, 1);
  return out->ptr;
}

void gvt_free(char *p) { free(p); }

/* E<message>, or O<unique 0/1> then every span (<key> <first> <last>;) then `|` and the
 * dump. */
typedef struct {
  gv_doc *doc;
  gv_value *root;
  gv_span *spans;
  size_t count;
  bool unique;
  const char *error;
} decoded;

static decoded decode(const char *body, size_t length) {
  decoded d = {gv_doc_new(length), NULL, NULL, 0, false, NULL};
  d.root = gv_decode_members(d.doc, body, length, &d.spans, &d.count, &d.unique, &d.error);
  return d;
}

char *gvt_decode(const char *body, size_t length, int sorted, size_t *result_length) {
  gw_out out = {0};
  decoded d = decode(body, length);
  gv_value *root = d.root;
  gv_span *spans = d.spans;
  if (root == NULL) {
    gw_out_append(&out, "E", 1);
    gw_out_append(&out, d.error, strlen(d.error));
  } else {
    gw_out_append(&out, d.unique ? "O1" : "O0", 2);
    for (size_t i = 0; i < d.count; i++) {
      char b[64];
      put_text(&out, spans[i].key, spans[i].key_length);
      int n = snprintf(b, sizeof b, " %zu %zu;", spans[i].first, spans[i].last);
      gw_out_append(&out, b, (size_t)n);
    }
    gw_out_append(&out, "|", 1);
    dump(root, sorted, &out);
  }
  gv_doc_free(d.doc);
  return finish(&out, result_length);
}

/* mode 0: gv_encode(root, first); 1: gv_redact(root, kinds) then the sorted dump; 2:
 * gv_guard_text(root). *status: -1 not decoded, 0 / 1 the function's result. */
char *gvt_on_body(const char *body, size_t length, int mode, const char *first, unsigned kinds,
                  int *status, size_t *result_length) {
  gw_out out = {0};
  decoded d = decode(body, length);
  gv_doc *doc = d.doc;
  gv_value *root = d.root;
  if (root == NULL) {
    *status = -1;
  } else if (mode == 0) {
    *status = gv_encode(root, first, &out);
  } else if (mode == 1) {
    *status = gv_redact(doc, root, kinds);
    dump(root, 1, &out);
  } else {
    gv_guard_text(root, &out);
    *status = 1;
  }
  gv_doc_free(doc);
  return finish(&out, result_length);
}

/* mode 0: gw_redact_string(kinds); 1: gw_carried_text; 2: gw_shown; 3: gv_encode_string */
char *gvt_on_text(const char *text, size_t length, int mode, unsigned kinds, int *status,
                  size_t *result_length) {
  gw_out out = {0};
  *status = 0;
  if (mode == 0)
    *status = gw_redact_string(text, length, kinds, &out);
  else if (mode == 1)
    gw_carried_text(text, length, &out);
  else if (mode == 2)
    gw_shown(text, length, &out);
  else
    gv_encode_string(text, length, &out);
  return finish(&out, result_length);
}

/* gw_usage_of: 0 none, 1 found (*numbers: prompt, completion, cached, has_cached) */
int gvt_usage_of(const char *text, size_t length, double *numbers) {
  gw_usage u;
  if (!gw_usage_of(text, length, &u)) return 0;
  numbers[0] = u.prompt;
  numbers[1] = u.completion;
  numbers[2] = u.cached;
  numbers[3] = u.has_cached;
  return 1;
}

/* A stream fed in chunks (bytes cut at cuts[0..count)): like gvt_usage_of. */
int gvt_usage_stream(const char *bytes, size_t length, const size_t *cuts, size_t count,
                     double *numbers) {
  gw_usage_scan scan = {0};
  size_t from = 0;
  for (size_t i = 0; i <= count; i++) {
    size_t to = i < count ? cuts[i] : length;
    gw_usage_scan_feed(&scan, bytes + from, to - from);
    from = to;
  }
  int found = scan.found;
  numbers[0] = scan.last.prompt;
  numbers[1] = scan.last.completion;
  numbers[2] = scan.last.cached;
  numbers[3] = scan.last.has_cached;
  gw_usage_scan_free(&scan);
  return found;
}
