/* The tokens a response used (gw_value.h): usage.lua's usage.of, through json.lua's
 * top_level_member, and the usage part of scan_stream_usage, fed chunk by chunk. */
#include <string.h>

#include "gw_value.h"

static bool is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
/* Lua's %s */
static bool is_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

static const char QUOTED[] = "\"usage\"";
#define QUOTED_LENGTH (sizeof QUOTED - 1)

/* the `^[ \t\r\n]*:[ \t\r\n]*` match at pos: the byte after it, or 0 (a match never ends at
 * 0 here: it follows the key) */
static size_t colon_after(const unsigned char *s, size_t n, size_t pos) {
  while (pos < n && is_ws(s[pos])) pos++;
  if (pos >= n || s[pos] != ':') return 0;
  pos++;
  while (pos < n && is_ws(s[pos])) pos++;
  return pos;
}

/* The last occurrence of `"usage"` in s, or -1. */
static long last_key(const unsigned char *s, size_t n) {
  if (n < QUOTED_LENGTH) return -1;
  for (size_t i = n - QUOTED_LENGTH + 1; i-- > 0;) {
    if (s[i] == '"' && memcmp(s + i, QUOTED, QUOTED_LENGTH) == 0) return (long)i;
  }
  return -1;
}

/* jsonstring.lua's string_end: the `"` that ends the string whose text starts at i, or -1. */
static long string_end(const unsigned char *s, size_t n, size_t i) {
  while (i < n) {
    if (s[i] == '"') return (long)i;
    if (s[i] == '\\') {
      i += 2;
      continue;
    }
    i++;
  }
  return -1;
}

/* json.lua's scan_top_level: where the value of the top-level object's last `usage` member
 * starts, or 0 for none. */
static size_t scan_top_level(const unsigned char *s, size_t n) {
  long depth = 0;
  size_t i = 0, found = 0;
  for (;;) {
    if (i >= n) return found;
    unsigned char c = s[i];
    if (c == '"') {
      if (depth == 0) return 0;
      if (depth == 1 && n - i >= QUOTED_LENGTH && memcmp(s + i, QUOTED, QUOTED_LENGTH) == 0) {
        size_t e = colon_after(s, n, i + QUOTED_LENGTH);
        if (e != 0) found = e;
      }
      long end = string_end(s, n, i + 1);
      if (end < 0) return found;
      i = (size_t)end;
    } else if (c == '{' || c == '[') {
      if (depth == 0 && c == '[') return 0;
      depth++;
    } else if (c == '}' || c == ']') {
      depth--;
      if (depth <= 0) return found;
    }
    i++;
  }
}

static bool truthy(const gv_value *v) { return v != NULL && v->type != GV_FALSE; }

/* usage.lua's usage_numbers */
static bool usage_numbers(const gv_value *usage, gw_usage *out) {
  if (usage == NULL || (usage->type != GV_OBJECT && usage->type != GV_ARRAY &&
                        usage->type != GV_NULL))
    return false;
  const gv_value *p = gv_get(usage, "prompt_tokens", 13);
  if (!truthy(p)) p = gv_get(usage, "input_tokens", 12);
  const gv_value *c = gv_get(usage, "completion_tokens", 17);
  if (!truthy(c)) c = gv_get(usage, "output_tokens", 13);
  if (p == NULL || p->type != GV_NUMBER) return false;
  double completion = 0;
  if (truthy(c)) {
    if (c->type != GV_NUMBER) return false;
    completion = c->number;
  }
  const gv_value *details = gv_get(usage, "prompt_tokens_details", 21);
  const gv_value *cached = gv_get(details, "cached_tokens", 13);
  out->prompt = p->number;
  out->completion = completion;
  out->has_cached = cached != NULL && cached->type == GV_NUMBER;
  out->cached = out->has_cached ? cached->number : 0;
  return true;
}

/* usage_numbers of the value at pos (NULL if it is not valid JSON there), and with
 * `last_member`, only if nothing but the object's closing `}` follows it. */
static bool numbers_at(const char *text, size_t length, size_t pos, bool last_member,
                       bool *decoded, gw_usage *out) {
  *decoded = false;
  gv_doc *doc = gv_doc_new(length - pos);
  if (doc == NULL) return false;
  size_t end = 0;
  gv_value *v = gv_decode_value_at(doc, text, length, pos, &end);
  bool ok = false;
  if (v != NULL) {
    const unsigned char *s = (const unsigned char *)text;
    bool closes = true;
    if (last_member) {
      size_t i = end;
      while (i < length && is_ws(s[i])) i++;
      closes = i < length && s[i] == '}';
      for (i++; closes && i < length; i++) closes = is_ws(s[i]);
    }
    if (closes) {
      *decoded = true;
      ok = usage_numbers(v, out);
    }
  }
  gv_doc_free(doc);
  return ok;
}

bool gw_usage_of(const char *text, size_t length, gw_usage *out) {
  const unsigned char *s = (const unsigned char *)text;
  long last = last_key(s, length);
  if (last < 0) return false;
  /* fast path: a key token (after `{` or `,`) whose value ends the object */
  long b = last - 1;
  while (b >= 0 && is_ws(s[b])) b--;
  if (b >= 0 && (s[b] == '{' || s[b] == ',')) {
    size_t e = colon_after(s, length, (size_t)last + QUOTED_LENGTH);
    if (e != 0) {
      bool decoded;
      bool ok = numbers_at(text, length, e, true, &decoded, out);
      if (decoded) return ok;
    }
  }
  size_t at = scan_top_level(s, length);
  if (at == 0) return false;
  bool decoded;
  return numbers_at(text, length, at, false, &decoded, out);
}

#define PENDING_MAX ((size_t)1 << 20)

/* One complete line (without its LF): usage.lua reads it when it holds `"usage"` and is a
 * `data:` line. */
static void scan_line(gw_usage_scan *scan, const char *line, size_t length) {
  if (length < QUOTED_LENGTH + 5 || memcmp(line, "data:", 5) != 0) return;
  bool key = false;
  for (const char *q = line; !key && (q = memchr(q, '"', length - (size_t)(q - line)));) {
    key = (size_t)(line + length - q) >= QUOTED_LENGTH && memcmp(q, QUOTED, QUOTED_LENGTH) == 0;
    q++;
  }
  if (!key) return;
  /* ^data:%s*(.-)%s*$ */
  const unsigned char *s = (const unsigned char *)line;
  size_t first = 5, last = length;
  while (first < last && is_space(s[first])) first++;
  while (last > first && is_space(s[last - 1])) last--;
  gw_usage u;
  if (gw_usage_of(line + first, last - first, &u)) {
    scan->last = u;
    scan->found = true;
  }
}

void gw_usage_scan_feed(gw_usage_scan *scan, const char *bytes, size_t length) {
  size_t start = 0;
  if (scan->pending.length > 0) {
    const char *nl = memchr(bytes, '\n', length);
    if (nl == NULL) {
      gw_out_append(&scan->pending, bytes, length);
      start = length;
    } else {
      size_t n = (size_t)(nl - bytes);
      gw_out_append(&scan->pending, bytes, n);
      if (!scan->pending.failed) scan_line(scan, scan->pending.ptr, scan->pending.length);
      scan->pending.length = 0;
      scan->pending.failed = false;
      start = n + 1;
    }
  }
  for (;;) {
    const char *nl = start < length ? memchr(bytes + start, '\n', length - start) : NULL;
    if (nl == NULL) break;
    size_t n = (size_t)(nl - bytes);
    scan_line(scan, bytes + start, n - start);
    start = n + 1;
  }
  if (start < length) gw_out_append(&scan->pending, bytes + start, length - start);
  if (scan->pending.length > PENDING_MAX || scan->pending.failed) {
    /* not SSE as expected; stop holding it */
    scan->pending.length = 0;
    scan->pending.failed = false;
  }
}

void gw_usage_scan_free(gw_usage_scan *scan) { gw_out_free(&scan->pending); }
