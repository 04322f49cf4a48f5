/* JSON values of one body (gw_value.h): the arena, the decoder with json.lua's strictness, the
 * mutations and the encoder with json.lua's and jsonstring.lua's output, byte for byte.
 *
 * The decoder follows json.lua step by step, so that what it refuses, and the first reason it
 * gives, are the Lua's: strings take their plain bytes in one run and stop at a quote, a
 * backslash or a control byte; \u escapes become UTF-8, a pair of surrogates one code point and
 * a lone surrogate U+FFFD; numbers are checked part by part (RFC 8259) and read as Lua's
 * tonumber reads them (the nearest double: strtod, or exactly for short integers); nesting
 * deeper than 64 levels is refused. An object keeps each key once, with its last value, in the
 * order the keys first appear. */
#include "gw_value.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GV_MAX_DEPTH 64
/* The arena's bound: a value (72 bytes) plus its slot in an array for every two bytes of input
 * ("1,") is the densest the decoder builds, 40 bytes of arena a byte; redaction and the
 * injected prompt take more, from the multiple's slack and the constant. */
#define GV_ARENA_PER_BYTE 48
#define GV_ARENA_CONSTANT ((size_t)1 << 20)
#define GV_BLOCK ((size_t)64 << 10)

typedef struct gv_block {
  struct gv_block *next;
  size_t used, size;
  char *data;
} gv_block;

/* The arena holds values, members, pointers and bytes: 8-byte alignment serves them all. */
#define ARENA_ALIGN ((size_t)8)
#define ALIGN_UP(n) (((n) + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1))

#define INLINE_ITEMS 32
#define INLINE_MEMBERS 32
#define INLINE_SPANS 16

struct gv_doc {
  gv_block *blocks;
  size_t allocated, bound, block_size;
  bool failed;
  /* the decoder's scratch: values and members of the containers being read, and the bytes of
   * a string with escapes */
  gv_value **items;
  size_t item_count, item_capacity;
  gv_member *members;
  size_t member_count, member_capacity;
  gw_out text;
  gv_span *spans;
  size_t span_count, span_capacity;
  /* the scratch of a small body, and the first block of its arena, in the doc's own
   * allocation */
  gv_value *inline_items[INLINE_ITEMS];
  gv_member inline_members[INLINE_MEMBERS];
  gv_span inline_spans[INLINE_SPANS];
  gv_block first;
};

/* Grows a scratch array that starts in the doc (inline_buffer) to at least one more element;
 * false without memory. */
static bool grow(void **array, const void *inline_buffer, size_t *capacity, size_t size) {
  if (*capacity > SIZE_MAX / 2 / size) return false;
  size_t cap = *capacity * 2;
  void *p;
  if (*array == inline_buffer) {
    p = malloc(cap * size);
    if (p != NULL) memcpy(p, *array, *capacity * size);
  } else {
    p = realloc(*array, cap * size);
  }
  if (p == NULL) return false;
  *array = p;
  *capacity = cap;
  return true;
}

gv_doc *gv_doc_new(size_t input_length) {
  if (input_length > (SIZE_MAX - GV_ARENA_CONSTANT) / GV_ARENA_PER_BYTE) return NULL;
  /* the first block fits a small body's values; later ones double up to GV_BLOCK */
  size_t first = input_length < GV_BLOCK / 16 ? input_length * 8 + 1024 : GV_BLOCK;
  first = ALIGN_UP(first);
  gv_doc *doc = malloc(ALIGN_UP(sizeof *doc) + first);
  if (doc == NULL) return NULL;
  memset(doc, 0, sizeof *doc);
  doc->first.data = (char *)doc + ALIGN_UP(sizeof *doc);
  doc->bound = input_length * GV_ARENA_PER_BYTE + GV_ARENA_CONSTANT;
  doc->block_size = first * 2 < GV_BLOCK ? first * 2 : GV_BLOCK;
  doc->allocated = first;
  doc->first.size = first;
  doc->blocks = &doc->first;
  doc->items = doc->inline_items;
  doc->item_capacity = INLINE_ITEMS;
  doc->members = doc->inline_members;
  doc->member_capacity = INLINE_MEMBERS;
  doc->spans = doc->inline_spans;
  doc->span_capacity = INLINE_SPANS;
  return doc;
}

void gv_doc_free(gv_doc *doc) {
  if (doc == NULL) return;
  gv_block *b = doc->blocks;
  while (b != NULL) {
    gv_block *next = b->next;
    if (b != &doc->first) free(b);
    b = next;
  }
  if (doc->items != doc->inline_items) free(doc->items);
  if (doc->members != doc->inline_members) free(doc->members);
  if (doc->spans != doc->inline_spans) free(doc->spans);
  gw_out_free(&doc->text);
  free(doc);
}

/* A new block for n (aligned) bytes: arena_alloc's slow path. */
static void *arena_block(gv_doc *doc, size_t n) {
  if (n > SIZE_MAX - ARENA_ALIGN) {
    doc->failed = true;
    return NULL;
  }
  n = n == 0 ? ARENA_ALIGN : ALIGN_UP(n);
  gv_block *b = doc->blocks;
  size_t size = n > doc->block_size / 4 ? n : doc->block_size;
  if (size == doc->block_size && doc->block_size < GV_BLOCK) doc->block_size *= 2;
  if (size > doc->bound - doc->allocated || doc->allocated > doc->bound) {
    doc->failed = true;
    return NULL;
  }
  gv_block *nb = malloc(ALIGN_UP(sizeof *nb) + size);
  if (nb == NULL) {
    doc->failed = true;
    return NULL;
  }
  doc->allocated += size;
  nb->data = (char *)nb + ALIGN_UP(sizeof *nb);
  nb->size = size;
  nb->used = n;
  if (b != NULL && n == size) {
    /* a block of its own: keep filling the current one */
    nb->next = b->next;
    b->next = nb;
  } else {
    nb->next = b;
    doc->blocks = nb;
  }
  return nb->data;
}

/* n bytes of the arena, aligned for the library's values; NULL past the bound or without
 * memory. */
static inline void *arena_alloc(gv_doc *doc, size_t n) {
  gv_block *b = doc->blocks;
  size_t aligned = ALIGN_UP(n);
  if (n != 0 && aligned >= n && b->size - b->used >= aligned) {
    void *p = b->data + b->used;
    b->used += aligned;
    return p;
  }
  return arena_block(doc, n);
}

bool gv_doc_failed(const gv_doc *doc) { return doc->failed; }
void gv_doc_set_failed(gv_doc *doc) { doc->failed = true; }

static gv_value *new_value(gv_doc *doc, gv_type type) {
  gv_value *v = arena_alloc(doc, sizeof *v);
  if (v == NULL) return NULL;
  memset(v, 0, sizeof *v);
  v->type = type;
  return v;
}

static char *arena_copy(gv_doc *doc, const char *bytes, size_t length) {
  char *p = arena_alloc(doc, length + 1);
  if (p == NULL) return NULL;
  if (length > 0) memcpy(p, bytes, length);
  p[length] = '\0';
  return p;
}

/* ---- output buffer ---- */

static bool out_reserve(gw_out *out, size_t more) {
  if (out->failed) return false;
  if (more > SIZE_MAX - out->length || (out->limit != 0 && out->length + more > out->limit)) {
    out->failed = true;
    return false;
  }
  size_t need = out->length + more;
  if (need <= out->capacity) return true;
  size_t cap = out->capacity < 256 ? 256 : out->capacity;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  char *p = realloc(out->ptr, cap);
  if (p == NULL) {
    out->failed = true;
    return false;
  }
  out->ptr = p;
  out->capacity = cap;
  return true;
}

/* room for `more` bytes: the common case inline, growth in out_reserve */
static inline bool out_room(gw_out *out, size_t more) {
  if (!out->failed && more <= out->capacity - out->length &&
      (out->limit == 0 || out->length + more <= out->limit))
    return true;
  return out_reserve(out, more);
}

static inline void append(gw_out *out, const char *bytes, size_t length) {
  if (length == 0 || !out_room(out, length)) return;
  memcpy(out->ptr + out->length, bytes, length);
  out->length += length;
}

void gw_out_append(gw_out *out, const char *bytes, size_t length) { append(out, bytes, length); }

bool gw_out_reserve(gw_out *out, size_t more) { return out_reserve(out, more); }

static inline void out_byte(gw_out *out, char c) {
  if (out_room(out, 1)) out->ptr[out->length++] = c;
}

void gw_out_free(gw_out *out) {
  free(out->ptr);
  out->ptr = NULL;
  out->length = out->capacity = 0;
}

/* ---- decoder ---- */

typedef struct {
  gv_doc *doc;
  const unsigned char *s;
  size_t n;
  const char *error;
  bool duplicate;
  bool array_nil; /* an array held a number LuaJIT reads as nil */
} reader;

/* the byte at pos, or -1 past the end (Lua's string.byte giving nil) */
static int at(const reader *r, size_t pos) { return pos < r->n ? r->s[pos] : -1; }

static size_t skip_ws(const reader *r, size_t pos) {
  while (pos < r->n) {
    unsigned char c = r->s[pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    pos++;
  }
  return pos;
}

static bool fail(reader *r, const char *message) {
  if (r->error == NULL) r->error = message;
  return false;
}

static const char NO_MEMORY[] = "the body takes more memory to decode than its bound";

static int hex_value(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* four hex digits at pos (all inside the input), or -1 */
static long hex4(const reader *r, size_t pos) {
  if (pos > r->n || r->n - pos < 4) return -1;
  long v = 0;
  for (size_t i = 0; i < 4; i++) {
    int h = hex_value(r->s[pos + i]);
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  return v;
}

static void put_utf8(gw_out *out, unsigned long cp) {
  char b[4];
  size_t n;
  if (cp < 0x80) {
    b[0] = (char)cp;
    n = 1;
  } else if (cp < 0x800) {
    b[0] = (char)(0xC0 | (cp >> 6));
    b[1] = (char)(0x80 | (cp & 0x3F));
    n = 2;
  } else if (cp < 0x10000) {
    b[0] = (char)(0xE0 | (cp >> 12));
    b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    b[2] = (char)(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    b[0] = (char)(0xF0 | (cp >> 18));
    b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    b[3] = (char)(0x80 | (cp & 0x3F));
    n = 4;
  }
  append(out, b, n);
}

/* a byte a string holds as it is: not a quote, a backslash or a control byte (0-31) */
static inline bool plain_byte(unsigned char c) { return c >= 0x20 && c != '"' && c != '\\'; }

/* Eight bytes at a time: whether a word holds a byte below n (n <= 128), or one equal to c
 * (exact answers: the borrows of the subtraction never reach a byte without such a byte
 * below it). */
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
static inline uint64_t word_at(const unsigned char *p) {
  uint64_t w;
  memcpy(&w, p, sizeof w);
  return w;
}
static inline uint64_t has_below(uint64_t w, unsigned n) { return (w - ONES * n) & ~w & HIGHS; }
static inline uint64_t has_byte(uint64_t w, unsigned c) { return has_below(w ^ (ONES * c), 1); }

/* The end of the run of plain bytes (plain_byte) in s[i..n); with `del`, 0x7F ends it too
 * (the encoder escapes it). */
static inline size_t plain_run(const unsigned char *s, size_t i, size_t n, bool del) {
  while (n - i >= 8) {
    uint64_t w = word_at(s + i);
    uint64_t stop =
        has_below(w, 0x20) | has_byte(w, '"') | has_byte(w, '\\') | (del ? has_byte(w, 0x7F) : 0);
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* the lowest flag is exact: the first stopping byte */
    if (stop != 0) return i + ((size_t)__builtin_ctzll(stop) >> 3);
#else
    if (stop != 0) break;
#endif
    i += 8;
  }
  while (i < n && plain_byte(s[i]) && !(del && s[i] == 0x7F)) i++;
  return i;
}

/* The string whose opening quote is at *pos: its decoded bytes in the arena (*out, *length);
 * *pos moves past the closing quote. */
static bool read_string(reader *r, size_t *pos, const char **out, size_t *length) {
  size_t i = plain_run(r->s, *pos + 1, r->n, false);
  if (at(r, i) == '"') {
    char *copy = arena_copy(r->doc, (const char *)r->s + *pos + 1, i - *pos - 1);
    if (copy == NULL) return fail(r, NO_MEMORY);
    *out = copy;
    *length = i - *pos - 1;
    *pos = i + 1;
    return true;
  }
  gw_out *text = &r->doc->text;
  text->length = 0;
  text->failed = false;
  append(text, (const char *)r->s + *pos + 1, i - *pos - 1);
  for (;;) {
    size_t start = i;
    i = plain_run(r->s, i, r->n, false);
    append(text, (const char *)r->s + start, i - start);
    int c = at(r, i);
    if (c < 0) return fail(r, "unterminated string");
    if (c == '"') break;
    if (c < 32) return fail(r, "control character in string");
    int esc = at(r, i + 1);
    if (esc == 'u') {
      long cp = hex4(r, i + 2);
      if (cp < 0) return fail(r, "bad \\u escape");
      size_t used = 6;
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        long lo = -1;
        if (at(r, i + 6) == '\\' && at(r, i + 7) == 'u') {
          int d = at(r, i + 8), e = at(r, i + 9);
          if ((d == 'd' || d == 'D') && ((e >= 'c' && e <= 'f') || (e >= 'C' && e <= 'F')))
            lo = hex4(r, i + 8);
        }
        if (lo >= 0) {
          cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00);
          used = 12;
        } else {
          cp = 0xFFFD;
        }
      } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        cp = 0xFFFD;
      }
      put_utf8(text, (unsigned long)cp);
      i += used;
      continue;
    }
    char rep;
    switch (esc) {
      case '"': rep = '"'; break;
      case '\\': rep = '\\'; break;
      case '/': rep = '/'; break;
      case 'b': rep = '\b'; break;
      case 'f': rep = '\f'; break;
      case 'n': rep = '\n'; break;
      case 'r': rep = '\r'; break;
      case 't': rep = '\t'; break;
      default: return fail(r, "bad escape");
    }
    out_byte(text, rep);
    i += 2;
  }
  if (text->failed) return fail(r, NO_MEMORY);
  char *copy = arena_copy(r->doc, text->ptr, text->length);
  if (copy == NULL) return fail(r, NO_MEMORY);
  *out = copy;
  *length = text->length;
  *pos = i + 1;
  return true;
}

static bool is_digit(int c) { return c >= '0' && c <= '9'; }

/* LuaJIT's tonumber gives nil for a number whose exponent is 2^20 or more (its string scanner
 * refuses it), and json.lua stores that nil: an object's member disappears. Such a value is
 * read as NIL; in an array (where the Lua leaves a hole, whose length is then undefined) the
 * body is refused. */
static gv_value NIL;
#define EXPONENT_LIMIT (1L << 20)

static bool read_number(reader *r, size_t *pos, gv_value *v, bool *nil) {
  size_t s = *pos, e = s;
  if (at(r, e) == '-') e++;
  size_t d = e;
  while (is_digit(at(r, e))) e++;
  if (e == d) return fail(r, "unexpected character");
  if (r->s[d] == '0' && e > d + 1) return fail(r, "leading zero");
  bool integer = true;
  if (at(r, e) == '.') {
    size_t f = e + 1;
    while (is_digit(at(r, f))) f++;
    if (f == e + 1) return fail(r, "bad number");
    e = f;
    integer = false;
  }
  int c = at(r, e);
  if (c == 'e' || c == 'E') {
    size_t x = e + 1;
    if (at(r, x) == '-' || at(r, x) == '+') x++;
    size_t xd = x;
    long exponent = 0;
    while (is_digit(at(r, x))) {
      exponent = exponent * 10 + (r->s[x] - '0');
      if (exponent >= EXPONENT_LIMIT) *nil = true, exponent = EXPONENT_LIMIT;
      x++;
    }
    if (x == xd) return fail(r, "bad number");
    e = x;
    integer = false;
  }
  if (*nil) {
    *pos = e;
    return true;
  }
  if (integer && e - d <= 15) {
    /* exact in a double: the value itself */
    int64_t n = 0;
    for (size_t i = d; i < e; i++) n = n * 10 + (r->s[i] - '0');
    v->number = d > s ? -(double)n : (double)n;
  } else {
    char small[64];
    size_t len = e - s;
    char *text = len < sizeof small ? small : malloc(len + 1);
    if (text == NULL) return fail(r, NO_MEMORY);
    memcpy(text, r->s + s, len);
    text[len] = '\0';
    v->number = strtod(text, NULL);
    if (text != small) free(text);
  }
  *pos = e;
  return true;
}

static bool push_item(reader *r, gv_value *v) {
  gv_doc *doc = r->doc;
  if (doc->item_count == doc->item_capacity &&
      !grow((void **)&doc->items, doc->inline_items, &doc->item_capacity, sizeof *doc->items))
    return fail(r, NO_MEMORY);
  doc->items[doc->item_count++] = v;
  return true;
}

static bool key_equal(const gv_member *m, const char *key, size_t length) {
  return m->key_length == length && memcmp(m->key, key, length) == 0;
}

/* Objects with more members than this find a repeated key through a hash table. */
#define GV_LINEAR_MEMBERS 16

typedef struct {
  size_t *slots; /* index + 1 into the member stack, 0 for empty */
  size_t mask;
} key_table;

static uint64_t key_hash(const char *key, size_t length) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < length; i++) h = (h ^ (unsigned char)key[i]) * 1099511628211ULL;
  return h;
}

static bool table_grow(reader *r, key_table *t, size_t base, size_t count) {
  size_t size = 64;
  while (size < count * 2) size *= 2;
  size_t *slots = calloc(size, sizeof *slots);
  if (slots == NULL) return fail(r, NO_MEMORY);
  free(t->slots);
  t->slots = slots;
  t->mask = size - 1;
  for (size_t i = 0; i < count; i++) {
    const gv_member *m = &r->doc->members[base + i];
    size_t j = key_hash(m->key, m->key_length) & t->mask;
    while (t->slots[j] != 0) j = (j + 1) & t->mask;
    t->slots[j] = i + 1;
  }
  return true;
}

/* Adds a member to the object whose members start at base on the stack: a repeated key takes
 * the new value in its first place. */
static bool add_member(reader *r, size_t base, key_table *t, const char *key, size_t length,
                       gv_value *v) {
  gv_doc *doc = r->doc;
  size_t count = doc->member_count - base;
  gv_member *found = NULL;
  if (t->slots == NULL) {
    for (size_t i = 0; i < count && found == NULL; i++) {
      if (key_equal(&doc->members[base + i], key, length)) found = &doc->members[base + i];
    }
  } else {
    size_t j = key_hash(key, length) & t->mask;
    while (t->slots[j] != 0 && found == NULL) {
      gv_member *m = &doc->members[base + t->slots[j] - 1];
      if (key_equal(m, key, length)) found = m;
      j = (j + 1) & t->mask;
    }
  }
  if (found != NULL) {
    /* a member whose value was NIL is absent in the Lua: taking a value again repeats none */
    if (found->value != NULL) r->duplicate = true;
    found->value = v;
    return true;
  }
  if (doc->member_count == doc->member_capacity &&
      !grow((void **)&doc->members, doc->inline_members, &doc->member_capacity,
            sizeof *doc->members))
    return fail(r, NO_MEMORY);
  doc->members[doc->member_count++] = (gv_member){key, length, v};
  count++;
  if (t->slots != NULL && count * 2 <= t->mask + 1) {
    size_t j = key_hash(key, length) & t->mask;
    while (t->slots[j] != 0) j = (j + 1) & t->mask;
    t->slots[j] = count;
  } else if (count > GV_LINEAR_MEMBERS) {
    return table_grow(r, t, base, count);
  }
  return true;
}

static bool finish_object(reader *r, gv_value *obj, size_t base) {
  gv_doc *doc = r->doc;
  size_t count = 0;
  for (size_t i = base; i < doc->member_count; i++) count += doc->members[i].value != NULL;
  if (count > 0) {
    gv_member *m = arena_alloc(doc, count * sizeof *m);
    if (m == NULL) return fail(r, NO_MEMORY);
    size_t n = 0;
    for (size_t i = base; i < doc->member_count; i++) {
      if (doc->members[i].value != NULL) m[n++] = doc->members[i];
    }
    obj->members = m;
    obj->member_count = count;
  }
  doc->member_count = base;
  return true;
}

static gv_value *read_value(reader *r, size_t *pos, int depth);

static gv_value *read_array(reader *r, size_t *pos, int depth) {
  gv_value *arr = new_value(r->doc, GV_ARRAY);
  if (arr == NULL) return fail(r, NO_MEMORY), NULL;
  size_t base = r->doc->item_count;
  size_t p = skip_ws(r, *pos + 1);
  if (at(r, p) != ']') {
    for (;;) {
      gv_value *v = read_value(r, &p, depth);
      if (v == &NIL) {
        /* refused once the rest reads as the Lua reads it (its errors come first) */
        r->array_nil = true;
        v = new_value(r->doc, GV_NULL);
        if (v == NULL) return fail(r, NO_MEMORY), NULL;
      }
      if (v == NULL || !push_item(r, v)) return NULL;
      p = skip_ws(r, p);
      int c = at(r, p);
      if (c == ']') break;
      if (c != ',') return fail(r, "expected ',' or ']'"), NULL;
      p = skip_ws(r, p + 1);
    }
  }
  size_t count = r->doc->item_count - base;
  if (count > 0) {
    gv_value **items = arena_alloc(r->doc, count * sizeof *items);
    if (items == NULL) return fail(r, NO_MEMORY), NULL;
    memcpy(items, r->doc->items + base, count * sizeof *items);
    arr->items = items;
    arr->item_count = count;
  }
  r->doc->item_count = base;
  *pos = p + 1;
  return arr;
}

/* The members of an object from the byte after `{` (or, for the top level, the first key);
 * with spans, every member's [first, last) is recorded. */
static gv_value *read_members(reader *r, size_t *pos, int depth, bool spans) {
  gv_doc *doc = r->doc;
  gv_value *obj = new_value(doc, GV_OBJECT);
  if (obj == NULL) return fail(r, NO_MEMORY), NULL;
  size_t base = doc->member_count;
  key_table table = {NULL, 0};
  size_t p = skip_ws(r, *pos);
  bool ok = true;
  if (at(r, p) != '}') {
    for (;;) {
      if (at(r, p) != '"') {
        ok = fail(r, "expected a string key");
        break;
      }
      size_t first = p;
      const char *key;
      size_t key_length;
      if (!(ok = read_string(r, &p, &key, &key_length))) break;
      p = skip_ws(r, p);
      if (at(r, p) != ':') {
        ok = fail(r, "expected ':'");
        break;
      }
      p = skip_ws(r, p + 1);
      gv_value *v = read_value(r, &p, depth);
      if (v == NULL) {
        ok = false;
        break;
      }
      if (!(ok = add_member(r, base, &table, key, key_length, v == &NIL ? NULL : v))) break;
      if (spans) {
        if (doc->span_count == doc->span_capacity &&
            !grow((void **)&doc->spans, doc->inline_spans, &doc->span_capacity,
                  sizeof *doc->spans)) {
          ok = fail(r, NO_MEMORY);
          break;
        }
        doc->spans[doc->span_count++] = (gv_span){key, key_length, first, p};
      }
      p = skip_ws(r, p);
      int c = at(r, p);
      if (c == '}') break;
      if (c != ',') {
        ok = fail(r, "expected ',' or '}'");
        break;
      }
      p = skip_ws(r, p + 1);
    }
  }
  free(table.slots);
  if (!ok || !finish_object(r, obj, base)) return NULL;
  *pos = p + 1;
  return obj;
}

static gv_value *read_value(reader *r, size_t *pos, int depth) {
  int c = at(r, *pos);
  size_t p = *pos;
  switch (c) {
    case '{':
      if (depth >= GV_MAX_DEPTH) return fail(r, "nested too deeply"), NULL;
      *pos = p + 1;
      return read_members(r, pos, depth + 1, false);
    case '[':
      if (depth >= GV_MAX_DEPTH) return fail(r, "nested too deeply"), NULL;
      return read_array(r, pos, depth + 1);
    case '"': {
      gv_value *v = new_value(r->doc, GV_STRING);
      if (v == NULL) return fail(r, NO_MEMORY), NULL;
      if (!read_string(r, pos, &v->string, &v->length)) return NULL;
      return v;
    }
    case 't':
      if (p + 4 <= r->n && memcmp(r->s + p, "true", 4) == 0) {
        *pos = p + 4;
        gv_value *v = new_value(r->doc, GV_TRUE);
        return v != NULL ? v : (fail(r, NO_MEMORY), NULL);
      }
      break;
    case 'f':
      if (p + 5 <= r->n && memcmp(r->s + p, "false", 5) == 0) {
        *pos = p + 5;
        gv_value *v = new_value(r->doc, GV_FALSE);
        return v != NULL ? v : (fail(r, NO_MEMORY), NULL);
      }
      break;
    case 'n':
      if (p + 4 <= r->n && memcmp(r->s + p, "null", 4) == 0) {
        *pos = p + 4;
        gv_value *v = new_value(r->doc, GV_NULL);
        return v != NULL ? v : (fail(r, NO_MEMORY), NULL);
      }
      break;
    case -1:
      return fail(r, "unexpected end of input"), NULL;
    default:
      break;
  }
  gv_value *v = new_value(r->doc, GV_NUMBER);
  if (v == NULL) return fail(r, NO_MEMORY), NULL;
  bool nil = false;
  if (!read_number(r, pos, v, &nil)) return NULL;
  return nil ? &NIL : v;
}

gv_value *gv_decode_members(gv_doc *doc, const char *body, size_t length, gv_span **spans,
                            size_t *span_count, bool *unique, const char **error) {
  reader r = {doc, (const unsigned char *)body, length, NULL, false, false};
  doc->item_count = doc->member_count = doc->span_count = 0;
  size_t pos = skip_ws(&r, 0);
  gv_value *root = NULL;
  if (at(&r, pos) != '{') {
    fail(&r, "expected an object");
  } else {
    pos++;
    root = read_members(&r, &pos, 1, true);
    if (root != NULL) {
      pos = skip_ws(&r, pos);
      if (pos < length) root = NULL, fail(&r, "trailing characters");
    }
    if (root != NULL && r.array_nil)
      root = NULL, fail(&r, "a number in an array with an exponent of 2^20 or more");
  }
  if (root != NULL && doc->span_count > 0) {
    gv_span *copy = arena_alloc(doc, doc->span_count * sizeof *copy);
    if (copy == NULL) {
      root = NULL;
      fail(&r, NO_MEMORY);
    } else {
      memcpy(copy, doc->spans, doc->span_count * sizeof *copy);
      *spans = copy;
    }
  } else {
    *spans = NULL;
  }
  if (root == NULL) {
    *spans = NULL;
    *span_count = 0;
    *unique = false;
    *error = r.error != NULL ? r.error : NO_MEMORY;
    return NULL;
  }
  *span_count = doc->span_count;
  *unique = !r.duplicate;
  *error = NULL;
  return root;
}

/* A value decoded from text[pos..] as json.lua's decode_value(str, pos, 1) reads it (no
 * trailing check), into doc; NULL if it is not valid there. *end: the byte after it. */
gv_value *gv_decode_value_at(gv_doc *doc, const char *text, size_t length, size_t pos,
                             size_t *end) {
  reader r = {doc, (const unsigned char *)text, length, NULL, false, false};
  doc->item_count = doc->member_count = 0;
  gv_value *v = read_value(&r, &pos, 1);
  if (v == &NIL || (v != NULL && r.array_nil)) v = new_value(doc, GV_NULL);
  if (v != NULL) *end = pos;
  return v;
}

/* ---- access and mutation ---- */

gv_value *gv_get(const gv_value *object, const char *key, size_t key_length) {
  if (object == NULL || object->type != GV_OBJECT) return NULL;
  for (size_t i = 0; i < object->member_count; i++) {
    if (key_equal(&object->members[i], key, key_length)) return object->members[i].value;
  }
  return NULL;
}

gv_value *gv_new_string(gv_doc *doc, const char *bytes, size_t length) {
  gv_value *v = new_value(doc, GV_STRING);
  if (v == NULL) return NULL;
  char *copy = arena_copy(doc, bytes, length);
  if (copy == NULL) return NULL;
  v->string = copy;
  v->length = length;
  return v;
}

gv_value *gv_new_object(gv_doc *doc) { return new_value(doc, GV_OBJECT); }
gv_value *gv_new_array(gv_doc *doc) { return new_value(doc, GV_ARRAY); }

bool gv_set(gv_doc *doc, gv_value *object, const char *key, size_t key_length, gv_value *v) {
  if (object == NULL || object->type != GV_OBJECT || v == NULL) return false;
  for (size_t i = 0; i < object->member_count; i++) {
    if (key_equal(&object->members[i], key, key_length)) {
      object->members[i].value = v;
      return true;
    }
  }
  gv_member *m = arena_alloc(doc, (object->member_count + 1) * sizeof *m);
  char *copy = arena_copy(doc, key, key_length);
  if (m == NULL || copy == NULL) return false;
  if (object->member_count > 0) memcpy(m, object->members, object->member_count * sizeof *m);
  m[object->member_count] = (gv_member){copy, key_length, v};
  object->members = m;
  object->member_count++;
  return true;
}

bool gv_remove(gv_value *object, const char *key, size_t key_length) {
  if (object == NULL || object->type != GV_OBJECT) return false;
  for (size_t i = 0; i < object->member_count; i++) {
    if (key_equal(&object->members[i], key, key_length)) {
      memmove(&object->members[i], &object->members[i + 1],
              (object->member_count - i - 1) * sizeof *object->members);
      object->member_count--;
      return true;
    }
  }
  return false;
}

bool gv_array_insert(gv_doc *doc, gv_value *array, size_t index, gv_value *v) {
  if (array == NULL || array->type != GV_ARRAY || v == NULL || index > array->item_count)
    return false;
  gv_value **items = arena_alloc(doc, (array->item_count + 1) * sizeof *items);
  if (items == NULL) return false;
  if (index > 0) memcpy(items, array->items, index * sizeof *items);
  items[index] = v;
  if (array->item_count > index)
    memcpy(items + index + 1, array->items + index,
           (array->item_count - index) * sizeof *items);
  array->items = items;
  array->item_count++;
  return true;
}

/* ---- encoder ---- */

/* jsonstring.lua's encoder: `"`, `\` and control bytes (0-31, 127) escaped, \b \f \n \r \t by
 * name and the others as \u00xx; every other byte as it is. */
void gv_encode_string(const char *bytes, size_t length, gw_out *out) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *s = (const unsigned char *)bytes;
  if (!out_room(out, length + 2)) return;
  out->ptr[out->length++] = '"';
  size_t from = 0;
  for (size_t i = 0; (i = plain_run(s, i, length, true)) < length; i++) {
    unsigned char c = s[i];
    append(out, bytes + from, i - from);
    char e[6] = {'\\', 0, 0, 0, 0, 0};
    size_t n = 2;
    switch (c) {
      case '"': e[1] = '"'; break;
      case '\\': e[1] = '\\'; break;
      case '\b': e[1] = 'b'; break;
      case '\f': e[1] = 'f'; break;
      case '\n': e[1] = 'n'; break;
      case '\r': e[1] = 'r'; break;
      case '\t': e[1] = 't'; break;
      default:
        e[1] = 'u';
        e[2] = '0';
        e[3] = '0';
        e[4] = hex[c >> 4];
        e[5] = hex[c & 15];
        n = 6;
    }
    append(out, e, n);
    from = i + 1;
  }
  append(out, bytes + from, length - from);
  out_byte(out, '"');
}

/* json.lua's encode_number: integers below 1e15 as integers, others with 14 significant
 * digits when those read back as the same number, else 17. */
static bool encode_number(double v, gw_out *out) {
  if (isnan(v) || isinf(v)) return false;
  char b[40];
  int n;
  if (v == floor(v) && v > -1e15 && v < 1e15) {
    /* Lua's format("%d", v): the integer's digits (-0 as 0) */
    long long k = (long long)v;
    unsigned long long u = k < 0 ? 0ULL - (unsigned long long)k : (unsigned long long)k;
    char *p = b + sizeof b;
    do {
      *--p = (char)('0' + u % 10);
      u /= 10;
    } while (u != 0);
    if (k < 0) *--p = '-';
    append(out, p, (size_t)(b + sizeof b - p));
    return true;
  } else {
    n = snprintf(b, sizeof b, "%.14g", v);
    if (strtod(b, NULL) != v) n = snprintf(b, sizeof b, "%.17g", v);
  }
  append(out, b, (size_t)n);
  return true;
}

static int key_order(const gv_member *a, const gv_member *b) {
  size_t n = a->key_length < b->key_length ? a->key_length : b->key_length;
  int c = n > 0 ? memcmp(a->key, b->key, n) : 0;
  if (c != 0) return c;
  return (a->key_length > b->key_length) - (a->key_length < b->key_length);
}

static int key_order_ptr(const void *a, const void *b) {
  return key_order(*(const gv_member *const *)a, *(const gv_member *const *)b);
}

static bool encode_value(const gv_value *v, const char *first, size_t first_length,
                         gw_out *out);

static bool encode_object(const gv_value *v, const char *first, size_t first_length,
                          gw_out *out) {
  size_t count = v->member_count;
  const gv_member *small[16];
  const gv_member **order = small;
  if (count > 16) {
    order = malloc(count * sizeof *order);
    if (order == NULL) {
      out->failed = true;
      return false;
    }
  }
  size_t n = 0;
  const gv_member *head = NULL;
  for (size_t i = 0; i < count; i++) {
    const gv_member *m = &v->members[i];
    if (first != NULL && key_equal(m, first, first_length))
      head = m;
    else
      order[n++] = m;
  }
  if (n > 16) {
    qsort(order, n, sizeof *order, key_order_ptr);
  } else {
    for (size_t i = 1; i < n; i++) {
      const gv_member *m = order[i];
      size_t j = i;
      while (j > 0 && key_order(order[j - 1], m) > 0) {
        order[j] = order[j - 1];
        j--;
      }
      order[j] = m;
    }
  }
  bool ok = true;
  out_byte(out, '{');
  for (size_t i = 0; i < n + (head != NULL) && ok; i++) {
    const gv_member *m = head != NULL ? (i == 0 ? head : order[i - 1]) : order[i];
    if (i > 0) out_byte(out, ',');
    gv_encode_string(m->key, m->key_length, out);
    out_byte(out, ':');
    ok = encode_value(m->value, NULL, 0, out);
  }
  out_byte(out, '}');
  if (order != small) free(order);
  return ok;
}

static bool encode_value(const gv_value *v, const char *first, size_t first_length,
                         gw_out *out) {
  switch (v->type) {
    case GV_NULL: append(out, "null", 4); return true;
    case GV_FALSE: append(out, "false", 5); return true;
    case GV_TRUE: append(out, "true", 4); return true;
    case GV_NUMBER: return encode_number(v->number, out);
    case GV_STRING: gv_encode_string(v->string, v->length, out); return true;
    case GV_ARRAY:
      out_byte(out, '[');
      for (size_t i = 0; i < v->item_count; i++) {
        if (i > 0) out_byte(out, ',');
        if (!encode_value(v->items[i], NULL, 0, out)) return false;
      }
      out_byte(out, ']');
      return true;
    case GV_OBJECT: return encode_object(v, first, first_length, out);
  }
  return false;
}

bool gv_encode(const gv_value *v, const char *first, gw_out *out) {
  bool ok = encode_value(v, first, first != NULL ? strlen(first) : 0, out);
  return ok && !out->failed;
}
