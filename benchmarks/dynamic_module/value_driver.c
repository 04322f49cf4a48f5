/* The body filter's work on the benchmark's request, with the value library (the product's
 * gatewayctl/render/envoy/module/gw_value.h), as gateway.lua does it on route bench-full:
 * decode, guard text (carried), redaction of email and credit-card, `prompt_variables` dropped,
 * the upstream model set, re-encoded with `model` first. benchmarks/module_value.py runs it
 * under callgrind with two repeat counts; the difference is the work per request.
 *
 * usage: value_driver BODY_FILE REPEATS */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_value.h"

static size_t request(const char *body, size_t length) {
  gv_doc *doc = gv_doc_new(length);
  gv_span *spans;
  size_t count;
  bool unique;
  const char *error;
  size_t out_length = 0;
  gv_value *req = gv_decode_members(doc, body, length, &spans, &count, &unique, &error);
  if (req != NULL) {
    gw_out guard = {0}, carried = {0}, out = {0};
    gv_guard_text(req, &guard);
    gw_carried_text(guard.ptr, guard.length, &carried);
    gv_redact(doc, req, GW_REDACT_EMAIL | GW_REDACT_CARD);
    gv_remove(req, "prompt_variables", 16);
    gv_set(doc, req, "model", 5, gv_new_string(doc, "bench-upstream", 14));
    gv_encode(req, "model", &out);
    out_length = out.length + carried.length;
    gw_out_free(&guard);
    gw_out_free(&carried);
    gw_out_free(&out);
  }
  gv_doc_free(doc);
  return out_length;
}

int main(int argc, char **argv) {
  if (argc != 3) return 2;
  FILE *f = fopen(argv[1], "rb");
  if (f == NULL) return 2;
  char body[1 << 16];
  size_t length = fread(body, 1, sizeof body, f);
  fclose(f);
  long repeats = atol(argv[2]);
  size_t total = 0;
  for (long i = 0; i < repeats; i++) total += request(body, length);
  printf("%zu\n", total);
  return 0;
}
