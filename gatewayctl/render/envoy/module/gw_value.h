/* The request/response value library of the compiled body filter: the C form of the Lua
 * body filter's pure parts, which stay the reference the tests hold it to byte for byte:
 * json.lua + jsonstring.lua (gv_decode_members, gv_encode, gv_encode_string), text.lua
 * (gv_guard_text, gw_carried_text, gw_shown), redact.lua (gw_redact_string, gv_redact) and
 * usage.lua with the usage part of scanning SSE streams (gw_usage_of, gw_usage_scan_*).
 *
 * No Envoy calls and no global state: every function works on what it is given, so the
 * filter may call it from any worker thread. */
#ifndef GW_VALUE_H
#define GW_VALUE_H

#include <stdbool.h>
#include <stddef.h>

/* All values of one body live in one arena, freed at once; the arena has a byte bound
 * (requests are bounded by the route's maxRequestBytes, up to 64 MiB: the bound is a fixed
 * multiple of the input's length plus a constant, and allocation past it fails cleanly). */
typedef struct gv_doc gv_doc;
gv_doc *gv_doc_new(size_t input_length);
void gv_doc_free(gv_doc *doc);

typedef enum { GV_NULL, GV_FALSE, GV_TRUE, GV_NUMBER, GV_STRING, GV_ARRAY, GV_OBJECT } gv_type;
typedef struct gv_value gv_value;
typedef struct {
  const char *key;
  size_t key_length;
  gv_value *value;
} gv_member;
struct gv_value {
  gv_type type;
  double number;                           /* GV_NUMBER, as Lua's tonumber reads it */
  const char *string; size_t length;       /* GV_STRING: decoded bytes (UTF-8; may hold NUL) */
  gv_value **items; size_t item_count;     /* GV_ARRAY */
  gv_member *members; size_t member_count; /* GV_OBJECT: each key once, with its LAST value
                                              (json.lua keeps the last), in first-seen order */
};

/* json.decode_members: body must be one JSON object (whitespace around it allowed), decoded
 * with exactly json.lua's strictness (what it refuses, this refuses; depth limit 64). On
 * success: the root object; *spans / *span_count: every top-level member in source order
 * (repeats included) with its decoded key and the byte range [first, last) of its text, key
 * through value; *unique false if any object at any depth repeats a key. On failure NULL and
 * *error a static message. */
typedef struct {
  const char *key;
  size_t key_length;
  size_t first, last;
} gv_span;
gv_value *gv_decode_members(gv_doc *doc, const char *body, size_t length, gv_span **spans,
                            size_t *span_count, bool *unique, const char **error);

/* json.lua's decode_value(str, pos, 1): the one value at text[pos..] (nothing after it is
 * read), into doc; NULL if it is not valid there; *end: the byte after it. A number LuaJIT
 * reads as nil (an exponent of 2^20 or more) comes back as GV_NULL. (Added to the first
 * header: usage.of reads a member's value this way, and the filter may too.)
 *
 * The one difference from json.lua, on both decoders: such a number (the Lua's nil) drops an
 * object's member as the Lua does, but in an array, where the Lua leaves a hole whose length
 * is then undefined, the body is refused. */
gv_value *gv_decode_value_at(gv_doc *doc, const char *text, size_t length, size_t pos,
                             size_t *end);
/* True once an allocation for doc has failed (past its arena's bound, or no memory): then a
 * mutation may have been left undone, and a string gv_redact could not hold redacted was
 * emptied (never left unredacted): the filter refuses the request. gv_doc_set_failed marks
 * it. (Both added to the first header.) */
bool gv_doc_failed(const gv_doc *doc);
void gv_doc_set_failed(gv_doc *doc);

gv_value *gv_get(const gv_value *object, const char *key, size_t key_length); /* NULL if none */
/* Mutation (for prompt injection and redaction); NULL / false on arena exhaustion. */
gv_value *gv_new_string(gv_doc *doc, const char *bytes, size_t length); /* copies */
gv_value *gv_new_object(gv_doc *doc);
gv_value *gv_new_array(gv_doc *doc);
bool gv_set(gv_doc *doc, gv_value *object, const char *key, size_t key_length, gv_value *v);
bool gv_remove(gv_value *object, const char *key, size_t key_length);
bool gv_array_insert(gv_doc *doc, gv_value *array, size_t index, gv_value *v);

/* A growable output buffer (malloc); failed is set (and sticks) on allocation failure or when
 * length would pass limit (0: no limit). Zero-initialise it ({0}) before the first append. */
typedef struct {
  char *ptr;
  size_t length, capacity, limit;
  bool failed;
} gw_out;
void gw_out_append(gw_out *out, const char *bytes, size_t length);
void gw_out_free(gw_out *out);
/* Room for `more` bytes past length, grown if need be; false (and failed set) when failed is
 * set already, past the limit, or no memory. For a writer that checks the capacity inline. */
bool gw_out_reserve(gw_out *out, size_t more);

/* json.encode(v, first) byte for byte: keys sorted by bytes, `first` (may be NULL) first;
 * numbers as json.lua's encode_number; strings as jsonstring.lua's encoder. False (and
 * nothing promised in out) where json.encode raises: a number it refuses (NaN, infinity). */
bool gv_encode(const gv_value *v, const char *first, gw_out *out);
void gv_encode_string(const char *bytes, size_t length, gw_out *out);

/* text.lua: guard_text(req) for a request without native arguments (every string the
 * provider reads, joined with "\n"; Lua's pairs() order is unspecified, so this uses source
 * order; the set of joined pieces equals the Lua's), carried_text and shown. */
void gv_guard_text(const gv_value *request, gw_out *out);
void gw_carried_text(const char *bytes, size_t length, gw_out *out);
void gw_shown(const char *bytes, size_t length, gw_out *out);

/* redact.lua: the kinds as bits; redact.string and redact.table (in place; NOT_REDACTED keys
 * left alone); both return true if anything changed. After gv_redact, check gv_doc_failed:
 * a string whose redacted form did not fit was emptied (see there). */
enum { GW_REDACT_EMAIL = 1, GW_REDACT_SSN = 2, GW_REDACT_CARD = 4, GW_REDACT_PHONE = 8 };
/* gw_redact_string appends the (redacted or unchanged) string to out. */
bool gw_redact_string(const char *bytes, size_t length, unsigned kinds, gw_out *out);
bool gv_redact(gv_doc *doc, gv_value *value, unsigned kinds);

/* usage.lua: usage.of (json.top_level_member "usage" then usage_numbers) on a whole reply,
 * and the incremental SSE scan of scan_stream_usage (fed the response's chunks as they pass;
 * same line handling and 1 MiB pending bound). Numbers as Lua numbers (double). */
typedef struct {
  double prompt, completion, cached;
  bool has_cached;
} gw_usage;
bool gw_usage_of(const char *text, size_t length, gw_usage *out);
typedef struct {
  gw_out pending;
  gw_usage last;
  bool found;
} gw_usage_scan;
void gw_usage_scan_feed(gw_usage_scan *scan, const char *bytes, size_t length);
void gw_usage_scan_free(gw_usage_scan *scan);

#endif
