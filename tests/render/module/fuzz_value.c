/* A seeded random harness for the value library (gw_value.h), built with the sanitizers by
 * tests/render/test_module_value_fuzz.py: random and mutated bodies through decode, encode,
 * mutation, guard text, carried and shown text, redaction and usage (whole and streamed in
 * random chunks), some with a small arena bound. Every input is handed over in a buffer of
 * exactly its size, so a read one byte past it is caught. Prints counters, one per line.
 *
 * usage: fuzz_value SEED ITERATIONS */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_value.h"

static uint64_t state;
static uint64_t next(void) {
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return state;
}
static size_t below(size_t n) { return n ? (size_t)(next() % n) : 0; }

static const char *const SEEDS[] = {
    "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello to "
    "jane.doe@example.com, card 4111 1111 1111 1111, ssn 123-45-6789, +1 (555) 123-4567\"}],"
    "\"max_tokens\":16,\"temperature\":0.5}",
    "{\"a\":[1,-0,1e400,0.1,1E+2,\"\\ud83d\\ude00\\ud83d\\u0041\\ude00\",{\"b\":null,\"b\":true}]}",
    "{\"x\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000\\u001f\",\"y\":[[[[{}]]]],\"z\":false}",
    "{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":"
    "{\"type\":\"object\",\"properties\":{\"q\":{\"type\":\"string\"}}}}}],\"prompt\":\"p\"}",
    "{\"id\":\"r\",\"choices\":[{\"message\":{\"content\":\"\\\"usage\\\": 1\"}}],"
    "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"prompt_tokens_details\":"
    "{\"cached_tokens\":2}}}",
    "{\"usage\" : {\"input_tokens\":3,\"output_tokens\":false} , \"a\":[\"usage\"]}",
};
static const char *const PIECES[] = {
    "\"", "\\", "{", "}", "[", "]", ",", ":", "\x00", "\x1f", "\x7f", "\xff", "\xc3\xa9",
    "\xed\xa0\x80", "\\u", "\\ud800", "\\udc00", "e", "E+", "-", "0", ".", " ", "\n", "\t",
    "true", "null", "1e1048576", "\"usage\":", "a@b.co", "4111111111111111", "123-45-6789",
    "+1 555 123 4567", "@", "(", ")", "99999999999999999999", "\xef\xbb\xbf",
};
#define COUNT(a) (sizeof(a) / sizeof *(a))

static char *mutate(size_t *length) {
  const char *seed = SEEDS[below(COUNT(SEEDS))];
  size_t n = strlen(seed), cap = n + 4096;
  char *b = malloc(cap);
  memcpy(b, seed, n);
  size_t edits = below(6);
  for (size_t e = 0; e < edits; e++) {
    size_t at = below(n + 1);
    switch (below(5)) {
      case 0: { /* insert a piece */
        const char *p = PIECES[below(COUNT(PIECES))];
        size_t pn = strlen(p) + (p[0] == 0);
        if (n + pn >= cap) break;
        memmove(b + at + pn, b + at, n - at);
        memcpy(b + at, p, pn);
        n += pn;
        break;
      }
      case 1: /* delete a run */
        if (at < n) {
          size_t k = 1 + below(n - at < 8 ? n - at : 8);
          memmove(b + at, b + at + k, n - at - k);
          n -= k;
        }
        break;
      case 2: /* a random byte */
        if (at < n) b[at] = (char)below(256);
        break;
      case 3: /* cut */
        n = at;
        break;
      default: { /* repeat a run (deep nesting, long strings) */
        size_t k = below(n - at < 16 ? n - at + 1 : 16);
        size_t times = below(80);
        for (size_t t = 0; t < times && n + k < cap; t++) {
          memmove(b + at + k, b + at, n - at);
          n += k;
        }
      }
    }
  }
  /* exactly sized */
  char *exact = malloc(n ? n : 1);
  memcpy(exact, b, n);
  free(b);
  *length = n;
  return exact;
}

static char *random_bytes(size_t *length) {
  size_t n = below(600);
  char *b = malloc(n ? n : 1);
  for (size_t i = 0; i < n; i++) {
    size_t pick = below(10);
    b[i] = pick < 5 ? "0123456789 -.()+@abc"[below(20)] : (char)below(256);
  }
  *length = n;
  return b;
}

int main(int argc, char **argv) {
  if (argc != 3) return 2;
  state = strtoull(argv[1], NULL, 10) * 0x9E3779B97F4A7C15ULL + 1;
  long iterations = atol(argv[2]);
  long decoded = 0, refused = 0, encoded = 0, redacted = 0, usage_found = 0, streamed = 0,
       arena_failed = 0, guarded = 0;
  for (long it = 0; it < iterations; it++) {
    size_t length;
    char *body;
    size_t bound;
    if (it % 50 == 49) {
      /* a long array against the smallest bound: the arena runs out on the way */
      size_t items = 1000 + below(100000);
      length = 6 + 2 * items + 2;
      body = malloc(length);
      memcpy(body, "{\"a\":[", 6);
      for (size_t i = 0; i < items; i++) memcpy(body + 6 + 2 * i, "1,", 2);
      memcpy(body + 6 + 2 * items - 1, "]}", 2);
      length--;
      bound = 0;
    } else {
      body = mutate(&length);
      bound = below(8) == 0 ? below(length + 1) / 64 : length;
    }
    gv_doc *doc = gv_doc_new(bound);
    gv_span *spans;
    size_t count;
    bool unique;
    const char *error;
    gv_value *root = gv_decode_members(doc, body, length, &spans, &count, &unique, &error);
    if (root == NULL) {
      refused++;
      if (error == NULL || strlen(error) == 0) return 3;
    } else {
      decoded++;
      for (size_t i = 0; i < count; i++) {
        if (spans[i].first >= spans[i].last || spans[i].last > length) return 4;
      }
      gw_out out = {0};
      gw_out_append(&out, "", 0);
      if (gv_encode(root, below(2) ? "model" : NULL, &out)) encoded++;
      gw_out_free(&out);
      gw_out guard = {0}, carried = {0};
      gv_guard_text(root, &guard);
      if (guard.length > 0) guarded++;
      gw_carried_text(guard.ptr ? guard.ptr : "", guard.length, &carried);
      gw_out_free(&guard);
      gw_out_free(&carried);
      if (gv_redact(doc, root, (unsigned)below(16))) redacted++;
      /* mutations */
      gv_value *messages = gv_get(root, "messages", 8);
      if (messages == NULL || messages->type != GV_ARRAY) {
        messages = gv_new_array(doc);
        if (messages != NULL) gv_set(doc, root, "messages", 8, messages);
      }
      gv_value *s = gv_new_string(doc, body, length < 40 ? length : 40);
      gv_value *o = gv_new_object(doc);
      if (o != NULL && s != NULL) gv_set(doc, o, "content", 7, s);
      if (messages != NULL && o != NULL)
        gv_array_insert(doc, messages, below(messages->item_count + 2), o);
      gv_remove(root, "prompt_variables", 16);
      gw_out again = {0, 0, 0, below(4) == 0 ? below(200) : 0, false};
      gv_encode(root, "model", &again);
      gw_out_free(&again);
    }
    if (gv_doc_failed(doc)) arena_failed++;
    gv_doc_free(doc);

    gw_usage u;
    if (gw_usage_of(body, length, &u)) usage_found++;
    /* the body as an event stream's data line, twice, in random chunks */
    size_t sn = 2 * (length + 7);
    char *sse = malloc(sn);
    for (size_t k = 0; k < 2; k++) {
      memcpy(sse + k * (length + 7), "data: ", 6);
      memcpy(sse + k * (length + 7) + 6, body, length);
      sse[k * (length + 7) + 6 + length] = '\n';
    }
    gw_usage_scan scan = {0};
    size_t from = 0;
    while (from < sn) {
      size_t k = 1 + below(sn - from);
      char *chunk = malloc(k);
      memcpy(chunk, sse + from, k);
      gw_usage_scan_feed(&scan, chunk, k);
      free(chunk);
      from += k;
    }
    free(sse);
    if (scan.found) streamed++;
    gw_usage_scan_free(&scan);
    free(body);

    size_t tn;
    char *text = random_bytes(&tn);
    gw_out r = {0}, shown = {0}, enc = {0};
    gw_redact_string(text, tn, (unsigned)below(16), &r);
    gw_shown(text, tn, &shown);
    gv_encode_string(text, tn, &enc);
    gw_out_free(&r);
    gw_out_free(&shown);
    gw_out_free(&enc);
    free(text);
  }
  printf("decoded %ld\nrefused %ld\nencoded %ld\nredacted %ld\nguarded %ld\nusage_found %ld\n"
         "streamed %ld\narena_failed %ld\n",
         decoded, refused, encoded, redacted, guarded, usage_found, streamed, arena_failed);
  return 0;
}
