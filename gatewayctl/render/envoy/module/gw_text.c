/* The text of a request as the guardrails see it, client text made safe to carry, and the
 * redaction of personal data (gw_value.h): text.lua's guard_text, carried_text and shown, and
 * redact.lua's redactors, byte for byte.
 *
 * Lua's character classes here are the C locale's, as LuaJIT's are: %w ASCII letters and
 * digits, %d ASCII digits, %s space, \t, \n, \v, \f and \r; every byte >= 0x80 is in none. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "gw_value.h"

static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static bool is_alnum(unsigned char c) {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static bool is_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* whether a member's key is the string literal `name` */
#define KEY_IS(m, name) \
  ((m)->key_length == sizeof(name) - 1 && memcmp((m)->key, name, sizeof(name) - 1) == 0)

/* ---- guard text ---- */

typedef struct {
  gw_out *out;
  bool any;
} pieces;

static void piece(pieces *p, const char *bytes, size_t length) {
  if (p->any) gw_out_append(p->out, "\n", 1);
  p->any = true;
  gw_out_append(p->out, bytes, length);
}

/* text.lua's ENUM_WORDS: the API's enumeration words, which a `role` or `type` holds as no
 * text (the provider checks them); any other value there is text. */
static const char *const ENUM_WORDS[] = {
    "system",      "user",        "assistant",   "tool",          "developer", "function",
    "text",        "image_url",   "input_audio", "file",          "refusal",   "custom",
    "input_text",  "output_text", "input_image", "input_file",    "audio_url", "video_url",
    "json_object", "json_schema", "content",     "allowed_tools", "string",    "number",
    "integer",     "boolean",     "object",      "array",         "null"};

static bool enum_word(const char *s, size_t n) {
  for (size_t i = 0; i < sizeof ENUM_WORDS / sizeof ENUM_WORDS[0]; i++)
    if (strlen(ENUM_WORDS[i]) == n && memcmp(ENUM_WORDS[i], s, n) == 0) return true;
  return false;
}

/* text.lua's add_strings: every string of an array; of an object every key, and the strings of
 * every member but an enumeration word under `role` or `type`. */
static void add_strings(const gv_value *v, pieces *p) {
  if (v->type == GV_ARRAY) {
    for (size_t i = 0; i < v->item_count; i++) {
      const gv_value *item = v->items[i];
      if (item->type == GV_STRING)
        piece(p, item->string, item->length);
      else if (item->type == GV_ARRAY || item->type == GV_OBJECT)
        add_strings(item, p);
    }
    return;
  }
  if (v->type != GV_OBJECT) return;
  for (size_t i = 0; i < v->member_count; i++) {
    const gv_member *m = &v->members[i];
    piece(p, m->key, m->key_length);
    const gv_value *item = m->value;
    if (item->type == GV_STRING) {
      if (!((KEY_IS(m, "role") || KEY_IS(m, "type")) && enum_word(item->string, item->length)))
        piece(p, item->string, item->length);
    }
    else if (item->type == GV_ARRAY || item->type == GV_OBJECT)
      add_strings(item, p);
  }
}

void gv_guard_text(const gv_value *request, gw_out *out) {
  if (request == NULL || request->type != GV_OBJECT) return;
  pieces p = {out, false};
  for (size_t i = 0; i < request->member_count; i++) {
    const gv_member *m = &request->members[i];
    if (KEY_IS(m, "model")) continue;
    const gv_value *v = m->value;
    if (v->type == GV_STRING)
      piece(&p, v->string, v->length);
    else if (v->type == GV_ARRAY || v->type == GV_OBJECT)
      add_strings(v, &p);
  }
}

/* ---- carried text and shown ---- */

static const char REPLACEMENT[] = "\xEF\xBF\xBD";

/* The length of the valid UTF-8 sequence at s[i] (a byte >= 0xC2), or 0. */
static size_t utf8_size(const unsigned char *s, size_t i, size_t length) {
  unsigned char c = s[i];
  size_t size = 0;
  if (c >= 0xC2 && c <= 0xDF)
    size = 2;
  else if (c >= 0xE0 && c <= 0xEF)
    size = 3;
  else if (c >= 0xF0 && c <= 0xF4)
    size = 4;
  if (size == 0 || size > length - i) return 0;
  for (size_t j = i + 1; j < i + size; j++) {
    if (s[j] < 0x80 || s[j] > 0xBF) return 0;
  }
  unsigned char c2 = s[i + 1];
  if ((c == 0xE0 && c2 < 0xA0) || (c == 0xED && c2 > 0x9F) || (c == 0xF0 && c2 < 0x90) ||
      (c == 0xF4 && c2 > 0x8F))
    return 0;
  return size;
}

void gw_carried_text(const char *bytes, size_t length, gw_out *out) {
  const unsigned char *s = (const unsigned char *)bytes;
  size_t from = 0, i = 0;
  while (i < length) {
    /* eight ASCII bytes without NUL at a time */
    while (length - i >= 8) {
      uint64_t w;
      memcpy(&w, s + i, sizeof w);
      if (((w - 0x0101010101010101ULL) | w) & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i >= length) break;
    unsigned char c = s[i];
    if (c != 0 && c < 0x80) {
      i++;
      continue;
    }
    size_t size = c == 0 ? 0 : utf8_size(s, i, length);
    if (size > 0) {
      i += size;
      continue;
    }
    gw_out_append(out, bytes + from, i - from);
    if (c == 0)
      gw_out_append(out, " ", 1);
    else
      gw_out_append(out, REPLACEMENT, 3);
    i++;
    from = i;
  }
  gw_out_append(out, bytes + from, length - from);
}

#define SHOWN_MAX 256

void gw_shown(const char *bytes, size_t length, gw_out *out) {
  if (length <= SHOWN_MAX) {
    gw_carried_text(bytes, length, out);
    return;
  }
  gw_carried_text(bytes, SHOWN_MAX, out);
  char tail[64];
  int n = snprintf(tail, sizeof tail, "...(truncated, %zu bytes)", length);
  gw_out_append(out, tail, (size_t)n);
}

/* ---- redaction ---- */

static const char MARK_EMAIL[] = "[REDACTED_EMAIL]";
static const char MARK_SSN[] = "[REDACTED_SSN]";
static const char MARK_CARD[] = "[REDACTED_CREDIT_CARD]";
static const char MARK_PHONE[] = "[REDACTED_PHONE]";

/* an address's local part: [%w%.%%%+%-_] */
static bool local_part(unsigned char c) {
  return is_alnum(c) || c == '.' || c == '%' || c == '+' || c == '-' || c == '_';
}

/* gsub(s, "[%w%.%%%+%-_]+@[%w%-]+%.[%w%.%-]*%w", "[REDACTED_EMAIL]") as redact.lua finds it:
 * from each `@`, the local-part run before it (not into the previous match) and the domain
 * after it. */
static bool redact_email(const unsigned char *s, size_t length, gw_out *out) {
  const unsigned char *found = memchr(s, '@', length);
  if (found == NULL) return false;
  size_t from = 0;
  bool changed = false;
  while (found != NULL) {
    size_t a = (size_t)(found - s);
    size_t ls = a;
    while (ls > from && local_part(s[ls - 1])) ls--;
    if (ls < a) {
      /* [%w%-]+ then `.` (a shorter first run is followed by [%w%-], never `.`) */
      size_t p = a + 1;
      while (p < length && (is_alnum(s[p]) || s[p] == '-')) p++;
      if (p > a + 1 && p < length && s[p] == '.') {
        /* [%w%.%-]*%w: the run's last letter or digit ends the match */
        size_t q = p + 1, last = 0;
        bool any = false;
        while (q < length && (is_alnum(s[q]) || s[q] == '.' || s[q] == '-')) {
          if (is_alnum(s[q])) last = q, any = true;
          q++;
        }
        if (any) {
          gw_out_append(out, (const char *)s + from, ls - from);
          gw_out_append(out, MARK_EMAIL, sizeof MARK_EMAIL - 1);
          from = last + 1;
          changed = true;
        }
      }
    }
    found = a + 1 < length ? memchr(s + a + 1, '@', length - a - 1) : NULL;
  }
  if (changed) gw_out_append(out, (const char *)s + from, length - from);
  return changed;
}

/* s[i], or NUL at the end (Lua's patterns read the string's terminating NUL there) */
static unsigned char byte_at(const unsigned char *s, size_t length, size_t i) {
  return i < length ? s[i] : 0;
}

/* gsub(s, "%f[%d]%d%d%d%-%d%d%-%d%d%d%d%f[%D]", "[REDACTED_SSN]") */
static bool redact_ssn(const unsigned char *s, size_t length, gw_out *out) {
  static const char shape[] = "ddd-dd-dddd";
  size_t from = 0;
  bool changed = false;
  for (size_t i = 0; i + 11 <= length; i++) {
    if (!is_digit(s[i]) || (i > 0 && is_digit(s[i - 1]))) continue;
    bool ok = !is_digit(byte_at(s, length, i + 11));
    for (size_t k = 0; k < 11 && ok; k++)
      ok = shape[k] == 'd' ? is_digit(s[i + k]) : s[i + k] == '-';
    if (!ok) continue;
    gw_out_append(out, (const char *)s + from, i - from);
    gw_out_append(out, MARK_SSN, sizeof MARK_SSN - 1);
    from = i + 11;
    i += 10;
    changed = true;
  }
  if (changed) gw_out_append(out, (const char *)s + from, length - from);
  return changed;
}

static bool luhn_ok(const unsigned char *run, size_t length) {
  unsigned sum = 0;
  bool alt = false;
  for (size_t i = length; i-- > 0;) {
    if (!is_digit(run[i])) continue;
    unsigned d = run[i] - '0';
    if (alt) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    alt = !alt;
  }
  return sum % 10 == 0;
}

static bool in_run(unsigned char c) {
  return is_digit(c) || c == '-' || c == '.' || is_space(c) || c == '(' || c == ')';
}
static bool run_start(unsigned char c) { return is_alnum(c) || c == '+'; }

/* redact.lua's redact_digit_runs: gsub(s, "%f[%w%+]%+?%d[%d%-%.%s%(%)]*%d%f[%W]", f), where
 * f keeps a run whose digits are fewer than min or more than max (or fail the Luhn check for
 * cards) and marks the others. */
static bool redact_digit_runs(const unsigned char *s, size_t length, size_t min, size_t max,
                              bool luhn, const char *mark, size_t mark_length, gw_out *out) {
  if (memchr(s, '0', length) == NULL) {
    bool digit = false;
    for (size_t i = 0; i < length && !digit; i++) digit = is_digit(s[i]);
    if (!digit) return false;
  }
  size_t from = 0;
  bool changed = false;
  size_t i = 0;
  while (i < length) {
    /* %f[%w%+] */
    if (!run_start(s[i]) || (i > 0 && run_start(s[i - 1]))) {
      i++;
      continue;
    }
    size_t j = s[i] == '+' ? i + 1 : i;
    if (j >= length || !is_digit(s[j])) {
      i++;
      continue;
    }
    size_t r = j + 1;
    while (r < length && in_run(s[r])) r++;
    /* backtrack: the last digit of the run followed by a byte outside %w */
    size_t end = 0;
    for (size_t q = r; q-- > j + 1;) {
      if (is_digit(s[q]) && !is_alnum(byte_at(s, length, q + 1))) {
        end = q + 1;
        break;
      }
    }
    if (end == 0) {
      i++;
      continue;
    }
    size_t digits = 0;
    for (size_t k = i; k < end; k++) digits += is_digit(s[k]);
    if (digits >= min && digits <= max && (!luhn || luhn_ok(s + i, end - i))) {
      gw_out_append(out, (const char *)s + from, i - from);
      gw_out_append(out, mark, mark_length);
      from = end;
      changed = true;
    }
    i = end;
  }
  if (changed) gw_out_append(out, (const char *)s + from, length - from);
  return changed;
}

/* One redactor over (*s, *length): on a change its result goes to the other buffer, which
 * then holds the text the next redactor reads. */
typedef struct {
  gw_out buffers[2];
  int current; /* -1: the input itself */
  const unsigned char *s;
  size_t length;
} passes;

static bool pass_begin(passes *p, gw_out **out) {
  int next = p->current == 0 ? 1 : 0;
  *out = &p->buffers[next];
  (*out)->length = 0;
  return true;
}

static void pass_end(passes *p, bool changed) {
  if (!changed) return;
  int next = p->current == 0 ? 1 : 0;
  p->current = next;
  p->s = (const unsigned char *)p->buffers[next].ptr;
  p->length = p->buffers[next].length;
}

/* Redacts into p (whose buffers the caller frees); true if anything changed. */
static bool redact_into(passes *p, const char *bytes, size_t length, unsigned kinds) {
  p->current = -1;
  p->s = (const unsigned char *)bytes;
  p->length = length;
  bool changed = false;
  gw_out *out;
  if (kinds & GW_REDACT_EMAIL) {
    pass_begin(p, &out);
    bool c = redact_email(p->s, p->length, out);
    pass_end(p, c);
    changed |= c;
  }
  if (kinds & GW_REDACT_SSN) {
    pass_begin(p, &out);
    bool c = redact_ssn(p->s, p->length, out);
    pass_end(p, c);
    changed |= c;
  }
  if (kinds & GW_REDACT_CARD) {
    pass_begin(p, &out);
    bool c = redact_digit_runs(p->s, p->length, 13, 19, true, MARK_CARD, sizeof MARK_CARD - 1,
                               out);
    pass_end(p, c);
    changed |= c;
  }
  if (kinds & GW_REDACT_PHONE) {
    pass_begin(p, &out);
    bool c = redact_digit_runs(p->s, p->length, 10, 15, false, MARK_PHONE,
                               sizeof MARK_PHONE - 1, out);
    pass_end(p, c);
    changed |= c;
  }
  return changed;
}

static bool passes_failed(const passes *p) { return p->buffers[0].failed || p->buffers[1].failed; }

bool gw_redact_string(const char *bytes, size_t length, unsigned kinds, gw_out *out) {
  passes p = {{{0}, {0}}, -1, NULL, 0};
  bool changed = redact_into(&p, bytes, length, kinds);
  if (passes_failed(&p)) out->failed = true;
  gw_out_append(out, (const char *)p.s, p.length);
  gw_out_free(&p.buffers[0]);
  gw_out_free(&p.buffers[1]);
  return changed;
}

/* redact.lua's NOT_REDACTED: model, role, type, name, id, tool_call_id, call_id (their string
 * values only) */
static bool not_redacted(const gv_member *m) {
  switch (m->key_length) {
    case 2: return KEY_IS(m, "id");
    case 4: return KEY_IS(m, "role") || KEY_IS(m, "type") || KEY_IS(m, "name");
    case 5: return KEY_IS(m, "model");
    case 7: return KEY_IS(m, "call_id");
    case 12: return KEY_IS(m, "tool_call_id");
    default: return false;
  }
}

typedef struct {
  gv_doc *doc;
  unsigned kinds;
  passes p;
} redaction;

/* A string that needs redacting but whose redacted form cannot be held (the arena's bound, or
 * no memory) becomes empty: nothing unredacted is left in the value, and the doc says it
 * failed (gv_doc_failed), for the filter to refuse the request. */
static bool redact_string_value(redaction *r, gv_value *v) {
  if (!redact_into(&r->p, v->string, v->length, r->kinds)) return false;
  gv_value *copy = passes_failed(&r->p)
                       ? NULL
                       : gv_new_string(r->doc, (const char *)r->p.s, r->p.length);
  if (copy == NULL) {
    gv_doc_set_failed(r->doc);
    v->string = "";
    v->length = 0;
    return true;
  }
  v->string = copy->string;
  v->length = copy->length;
  return true;
}

static bool redact_value(redaction *r, gv_value *v) {
  bool changed = false;
  if (v->type == GV_ARRAY) {
    for (size_t i = 0; i < v->item_count; i++) {
      gv_value *item = v->items[i];
      if (item->type == GV_STRING)
        changed |= redact_string_value(r, item);
      else if (item->type == GV_ARRAY || item->type == GV_OBJECT)
        changed |= redact_value(r, item);
    }
  } else if (v->type == GV_OBJECT) {
    for (size_t i = 0; i < v->member_count; i++) {
      gv_member *m = &v->members[i];
      gv_value *item = m->value;
      if (item->type == GV_STRING) {
        if (!not_redacted(m)) changed |= redact_string_value(r, item);
      }
      else if (item->type == GV_ARRAY || item->type == GV_OBJECT)
        changed |= redact_value(r, item);
    }
  }
  return changed;
}

bool gv_redact(gv_doc *doc, gv_value *value, unsigned kinds) {
  if (value == NULL || kinds == 0) return false;
  redaction r = {doc, kinds, {{{0}, {0}}, -1, NULL, 0}};
  bool changed = redact_value(&r, value);
  gw_out_free(&r.p.buffers[0]);
  gw_out_free(&r.p.buffers[1]);
  return changed;
}
